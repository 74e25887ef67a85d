"""C2SP tlog-checkpoint (c2sp.org/tlog-checkpoint): a log's tree head — origin, size, root hash, extension lines —
as the text of a C2SP signed note. vouchnet's logs sign with key name = origin (`ledger.names.log_origin`).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .merkle import HASH_SIZE
from .note import NoteError, NoteSigner, NoteVerifier, Signature, decode_base64, open_note, sign_note

MAX_TREE_SIZE = 2**64 - 1  # RFC 9162 tree sizes are uint64
_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_NOT_IN_LINE = re.compile(r"[\x00-\x1f]")  # a newline ends a line; other ASCII controls are barred from notes


def _check_line(what: str, value: str) -> None:
    if not isinstance(value, str) or not value:
        raise NoteError(f"checkpoint {what}: must be a non-empty line")
    if m := _NOT_IN_LINE.search(value):
        raise NoteError(f"checkpoint {what}: control character U+{ord(m.group()):04X} at position {m.start()}")


@dataclass(frozen=True)
class Checkpoint:
    """tlog-checkpoint §Note text: the tree head of `origin` at `size` leaves; extension lines are opaque."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_line("origin", self.origin)
        if type(self.size) is not int or not 0 <= self.size <= MAX_TREE_SIZE:
            raise NoteError("checkpoint size: must be an integer from 0 to 2^64 - 1")
        if not isinstance(self.root, bytes) or len(self.root) != HASH_SIZE:
            raise NoteError(f"checkpoint root: must be a {HASH_SIZE}-byte hash")
        if not isinstance(self.extensions, tuple):
            raise NoteError("checkpoint extensions: must be a tuple of lines")
        for i, line in enumerate(self.extensions, 1):
            _check_line(f"extension line {i}", line)

    def to_text(self) -> str:
        """The note text: origin, decimal size, base64 root hash, extension lines, each ending in a newline."""
        lines = (self.origin, str(self.size), base64.b64encode(self.root).decode(), *self.extensions)
        return "".join(f"{line}\n" for line in lines)

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        """Parse a checkpoint note text strictly; raise NoteError naming the line and the rule."""
        if not isinstance(text, str) or not text.endswith("\n"):
            raise NoteError("checkpoint: text must end with a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise NoteError("checkpoint: must have an origin, a size and a root hash line")
        origin, size, root, *extensions = lines
        if not _DECIMAL.fullmatch(size):
            raise NoteError(f"checkpoint size {size[:24]!r}: must be decimal without leading zeros")
        if len(size) > len(str(MAX_TREE_SIZE)):  # before int(), which a hostile length would make costly
            raise NoteError("checkpoint size: must be at most 2^64 - 1")
        return cls(origin, int(size), decode_base64(root, "checkpoint root"), tuple(extensions))

    def sign(self, signers: Sequence[NoteSigner]) -> bytes:
        """The checkpoint as a signed note."""
        return sign_note(self.to_text(), signers)


def open_checkpoint(note: bytes, verifiers: Iterable[NoteVerifier]) -> tuple[Checkpoint, tuple[Signature, ...]]:
    """Verify a checkpoint note (signed-note rules) and parse its text; raise NoteError."""
    text, signatures = open_note(note, verifiers)
    return Checkpoint.parse(text), signatures


def peek_origin(note: bytes) -> str:
    """The origin line of a checkpoint note, NOT verified: only for choosing the key to open the note with."""
    line, newline, _ = note.partition(b"\n")
    if not newline:
        raise NoteError("checkpoint: must start with an origin line")
    try:
        origin = line.decode()
    except UnicodeDecodeError as e:
        raise NoteError(f"checkpoint origin: not valid UTF-8 at byte {e.start}") from None
    _check_line("origin", origin)
    return origin
