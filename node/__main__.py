"""`python -m node`: the `vouchnet` command, for a checkout or an environment whose scripts are not on PATH."""

import sys

from node.cli import main

sys.exit(main())
