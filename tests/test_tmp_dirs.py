"""The suite's files are in memory, but those of the tests that kill a process writing them (tests/conftest.py)."""

import os
import tempfile

from .conftest import DISK, IN_MEMORY, MEMORY


def test_tmp_path_and_tempfile_are_in_memory_where_there_is_room_and_disk_path_is_on_the_disk(tmp_path, disk_path,
                                                                                              request):
    chosen = os.stat(MEMORY if IN_MEMORY else DISK).st_dev
    assert os.stat(tempfile.gettempdir()).st_dev == chosen
    assert request.config.option.basetemp or tmp_path.stat().st_dev == chosen
    assert disk_path.parent == DISK and disk_path.stat().st_dev == os.stat(DISK).st_dev
