"""A testnet node's log file (testnet.node_log): rotated by size keeping a bound number of files, whatever the node
writes, and followed across rotations."""

from __future__ import annotations

import io
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from testnet import node_log, processes


def _kept(path: Path) -> list[Path]:
    """node.log's files, oldest first."""
    return sorted(path.parent.glob(path.name + ".*"), key=lambda each: -int(each.suffix[1:])) + [path]


@given(st.lists(st.binary(max_size=40).map(lambda line: line.replace(b"\n", b"") + b"\n"), max_size=60),
       st.integers(1, 200), st.integers(1, 3))
def test_what_is_kept_is_the_newest_whole_lines_in_at_most_backups_and_one_files_each_under_max_bytes(
        lines, max_bytes, backups):
    """Any bytes (not UTF-8 too) are written as read; no file passes `max_bytes` but for one line alone."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "node.log"
        node_log.copy(io.BytesIO(b"".join(lines)), path, max_bytes, backups)
        kept = _kept(path)
        assert len(kept) <= backups + 1
        for file in kept:
            data = file.read_bytes()
            assert len(data) < max_bytes or data in lines
        text = b"".join(file.read_bytes() for file in kept)
    written = b"".join(lines)
    assert written.endswith(text)
    assert any(text == b"".join(lines[start:]) for start in range(len(lines) + 1))  # whole lines
    if lines:
        assert text.endswith(lines[-1])


def test_a_logged_command_s_output_is_rotated_keeping_backups(tmp_path):
    """What a node writes to stdout and stderr for as long as it runs (here 2,000 lines, 200 KB): the last
    MAX_BYTES x (1 + backups) of it, in whole lines; it all went to one growing file."""
    path = tmp_path / "node.log"
    code = ("import sys\nfor n in range(2000):\n"
            "    print(f'line {n:05d} ' + 'x' * 88, file=sys.stderr if n % 2 else sys.stdout, flush=True)")
    process, writer = processes.spawn_logged([sys.executable, "-c", code], path, max_bytes=20_000, backups=3)
    assert process.wait(timeout=60) == 0
    assert writer.wait(timeout=60) == 0  # it ends with the command
    kept = _kept(path)
    assert [file.name for file in kept] == ["node.log.3", "node.log.2", "node.log.1", "node.log"]
    assert all(file.stat().st_size < 20_000 for file in kept)
    numbers = [int(line.split()[1]) for file in kept for line in file.read_text().splitlines()]
    assert numbers == list(range(numbers[0], 2000)) and numbers[0] > 1000


def test_limits_that_bound_nothing_are_refused_before_anything_starts(tmp_path):
    with pytest.raises(ValueError, match="max_bytes >= 1 and backups >= 1"):
        processes.spawn_logged([sys.executable, "-c", "pass"], tmp_path / "node.log", backups=0)


def test_following_goes_on_in_the_new_file_after_the_old_one_s_last_lines(tmp_path):
    """`testnet logs -f` across a rotation: what was written to the old file after the last read, then the new
    one's lines (before, it read the renamed file for ever); a moment without node.log is waited out."""
    path = tmp_path / "node.log"
    path.write_text("a\n")

    def append(text: str) -> None:
        with open(path, "a") as log:
            log.write(text)

    steps = iter([lambda: append("b\n"),
                  lambda: (append("c\n"), path.rename(tmp_path / "node.log.1")),
                  lambda: path.write_text("d\n"),
                  lambda: append("e\n")])
    with open(path) as log:
        followed = node_log.follow(path, log, wait=lambda: next(steps)())
        assert [next(followed) for _ in range(5)] == ["a\n", "b\n", "c\n", "d\n", "e\n"]
        followed.close()


def test_the_last_lines_come_from_node_log_then_the_rotated_files_and_one_rotated_meanwhile_is_not_read_twice(
        tmp_path):
    path = tmp_path / "node.log"
    for name, lines in [("node.log.2", "a\nb\n"), ("node.log.1", "c\nd\n"), ("node.log", "e\n")]:
        (tmp_path / name).write_text(lines)
    with open(path) as log:
        assert node_log.last_lines(path, log, 3) == ["c\n", "d\n", "e\n"]
    with open(path) as log:
        assert node_log.last_lines(path, log, 1) == ["e\n"]
    with open(path) as log:
        assert node_log.last_lines(path, log, 100) == ["a\n", "b\n", "c\n", "d\n", "e\n"]
    with open(path) as log:  # rotated after it was opened: node.log.1 is the file read already
        (tmp_path / "node.log.2").rename(tmp_path / "node.log.3")
        (tmp_path / "node.log.1").rename(tmp_path / "node.log.2")
        path.rename(tmp_path / "node.log.1")
        path.write_text("f\n")
        assert node_log.last_lines(path, log, 4) == ["b\n", "c\n", "d\n", "e\n"]
