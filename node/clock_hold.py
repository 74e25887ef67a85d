"""`clock.hold` in the data directory: how long the node's time (node.node_time) has held a clock stepped over a day
ahead, so that a restart goes on with the hold instead of starting a new day (a node stopped for days, then
restarted more often than daily, would otherwise never take its clock). One JSON object, written whole and durably
(ledger.files): {"version": 1, "held_seconds": monotonic seconds the clock has been held, "seen_ms": the node's time
then}, saved by node.hold_saver. It is there while a hold lasts, and removed at the first save after it ends. It is
not a store (node.store_manifest): a damaged one, or one of another version, is logged and removed (or replaced by a
new hold's): the hold starts anew, a day at most."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

from ledger.files import read_small, replace_file, sync_directory

CLOCK_HOLD_FILE = "clock.hold"
VERSION = 1
_MAX_BYTES = 1024  # the file is under 100 bytes: more is not one the node wrote
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Hold:
    """A hold as saved: `held_seconds` of monotonic time so far, while the node's time was `seen_ms` at the last."""

    held_seconds: float
    seen_ms: int


def read_hold(path: Path, longest: float) -> Hold | None:
    """The hold saved at `path`; None if there is none, or if it cannot be read as one of this version holding at
    most `longest` seconds (logged, naming the file: the caller starts a new hold)."""
    try:
        data = read_small(path, _MAX_BYTES)
    except OSError as error:
        log.warning("%s: cannot be read (%s): a clock held as a step ahead is held a day from now", path,
                    error.strerror or error)
        return None
    if data is None:
        return None
    hold = _decoded(data, longest)
    if hold is None:
        log.warning("%s: not a clock hold of version %d (damaged, or written by another vouchnet): a clock held as a "
                    "step ahead is held a day from now; the file is removed, or replaced by the hold's first save",
                    path, VERSION)
    return hold


def write_hold(path: Path, hold: Hold) -> None:
    """Save `hold` at `path`, whole and durably (ledger.files.replace_file); OSError if it cannot be written."""
    replace_file(path, json.dumps({"version": VERSION, "held_seconds": round(hold.held_seconds, 3),
                                   "seen_ms": hold.seen_ms}).encode() + b"\n")


def remove_hold(path: Path) -> None:
    """Remove the hold saved at `path` (the hold is over), durably; nothing if there is none; OSError."""
    try:
        path.unlink()
    except FileNotFoundError:
        return
    sync_directory(path.parent)


def _decoded(data: bytes, longest: float) -> Hold | None:
    if len(data) > _MAX_BYTES:
        return None
    try:
        fields = json.loads(data)
    except ValueError:  # (UnicodeDecodeError too)
        return None
    if not isinstance(fields, dict) or fields.keys() != {"version", "held_seconds", "seen_ms"} \
            or type(fields["version"]) is not int or fields["version"] != VERSION:
        return None
    held, seen = fields["held_seconds"], fields["seen_ms"]
    if type(held) not in (int, float) or not math.isfinite(held) or not 0 <= held <= longest \
            or type(seen) is not int or seen <= 0:
        return None
    return Hold(float(held), seen)
