"""The process the crash-safety harness kills: appends batches to a ledger until killed.

`python -m tests.ledger.crash_writer PATH SEED` prints "ready" once the ledger is open, then "FIRST COUNT" after
each append returns (so that batch is acknowledged as durable). Imports nothing but the standard library and
ledger, to start fast.
"""

import hashlib
import os
import random
import sys

from ledger import Ledger

# Mostly small batches (many commits per run), some that span many entry rows and tiles.
BATCH_SIZES = (1, 1, 2, 3, 16, 17, 40, 100, 600)


def expected_entry(index: int) -> bytes:
    """Entry `index` of every crash-test ledger: it depends on the index alone, so any reader can check it."""
    return str(index).encode() + hashlib.sha256(index.to_bytes(8, "big")).digest() * (index % 4)


def main() -> None:
    path, seed = sys.argv[1], int(sys.argv[2])
    rng = random.Random(seed)
    with Ledger.open(path) as ledger:
        os.write(1, b"ready\n")
        while True:
            n = rng.choice(BATCH_SIZES)
            first = ledger.append([expected_entry(i) for i in range(ledger.size, ledger.size + n)])
            os.write(1, f"{first} {n}\n".encode())


if __name__ == "__main__":
    main()
