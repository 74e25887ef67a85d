"""C2SP tlog-checkpoint: the spec's example, strict parsing, signing as a note, vouchnet's origin convention."""

import base64
import hashlib

import nacl.signing
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.checkpoint import MAX_TREE_SIZE, Checkpoint, open_checkpoint, peek_origin
from ledger.names import cosigner_name, log_origin, parse_log_origin
from ledger.note import Ed25519Signer, NoteError

from .flip import flip_bit

# The example of c2sp.org/tlog-checkpoint.
SPEC_TEXT = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"

DID = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"
ORIGIN = log_origin("main", DID, "records")
LOG = Ed25519Signer(ORIGIN, nacl.signing.SigningKey(b"\x07" * 32))
ROOT = hashlib.sha256(b"a root").digest()

_CONTROLS = "".join(chr(i) for i in range(0x20))
lines = st.text(st.characters(codec="utf-8", exclude_characters=_CONTROLS), min_size=1, max_size=40)
checkpoints = st.builds(
    Checkpoint,
    origin=lines,
    size=st.integers(0, MAX_TREE_SIZE),
    root=st.binary(min_size=32, max_size=32),
    extensions=st.lists(lines, max_size=3).map(tuple),
)



def test_spec_example_parses_and_reformats_identically():
    c = Checkpoint.parse(SPEC_TEXT)
    assert (c.origin, c.size, c.extensions) == ("example.com/behind-the-sofa", 20852163, ())
    assert c.root == base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")
    assert c.to_text() == SPEC_TEXT


@given(checkpoints)
def test_parse_inverts_to_text(c):
    assert Checkpoint.parse(c.to_text()) == c


def test_extension_lines_are_kept_in_order():
    c = Checkpoint.parse(SPEC_TEXT + "ext one\next two\n")
    assert c.extensions == ("ext one", "ext two")


@pytest.mark.parametrize(
    "text, message",
    [
        (SPEC_TEXT[:-1], "must end with a newline"),
        ("example.com/log\n1\n", "must have an origin, a size and a root hash line"),
        ("\n1\n" + SPEC_TEXT.split("\n")[2] + "\n", "checkpoint origin: must be a non-empty line"),
        ("o\n01\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n", "size '01': must be decimal without leading"),
        ("o\n-1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n", "size '-1'"),
        ("o\n+1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n", "size '\\+1'"),
        ("o\n 1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n", "size ' 1'"),
        ("o\n\u0661\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n", "must be decimal"),  # Arabic-Indic one
        ("o\n\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n", "size '': must be decimal"),
        (f"o\n{2**64}\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n", "size: must be an integer from 0 to 2\\^64"),
        ("o\n1" + "0" * 5000 + "\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n", "size: must be at most 2\\^64 - 1"),
        ("o\n1\nnot base64!\n", "checkpoint root: not valid base64"),
        ("o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2J=\n", "checkpoint root: not canonical base64"),
        ("o\n1\n" + base64.b64encode(bytes(31)).decode() + "\n", "checkpoint root: must be a 32-byte hash"),
        (SPEC_TEXT + "\n", "extension line 1: must be a non-empty line"),
        ("o\tx\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n", r"origin: control character U\+0009"),
    ],
)
def test_malformed_checkpoints_are_rejected_with_the_rule(text, message):
    with pytest.raises(NoteError, match=message):
        Checkpoint.parse(text)


@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(origin="", size=1, root=ROOT), "origin: must be a non-empty line"),
        (dict(origin="o\nx", size=1, root=ROOT), "origin: control character U\\+000A"),
        (dict(origin="o", size=-1, root=ROOT), "size"),
        (dict(origin="o", size=True, root=ROOT), "size"),
        (dict(origin="o", size=1, root=ROOT[:31]), "root"),
        (dict(origin="o", size=1, root=ROOT, extensions=("",)), "extension line 1"),
        (dict(origin="o", size=1, root=ROOT, extensions=["x"]), "extensions: must be a tuple"),
    ],
)
def test_invalid_checkpoints_cannot_be_built(fields, message):
    with pytest.raises(NoteError, match=message):
        Checkpoint(**fields)


# --- Signed checkpoints ---------------------------------------------------------------------------------


def test_signed_checkpoint_opens_with_the_log_key():
    c = Checkpoint(ORIGIN, 42, ROOT)
    got, sigs = open_checkpoint(c.sign([LOG]), [LOG.verifier()])
    assert got == c
    assert [s.name for s in sigs] == [ORIGIN]


def test_checkpoint_signed_by_another_key_does_not_open():
    other = Ed25519Signer(ORIGIN, nacl.signing.SigningKey(b"\x08" * 32))
    with pytest.raises(NoteError, match="none of its 1 signatures is from a known key"):
        open_checkpoint(Checkpoint(ORIGIN, 42, ROOT).sign([other]), [LOG.verifier()])


@given(checkpoints, st.integers(min_value=0))
def test_any_flipped_bit_in_a_signed_checkpoint_is_rejected(c, bit):
    signer = Ed25519Signer("log.example", LOG.signing_key)
    with pytest.raises(NoteError):
        open_checkpoint(flip_bit(c.sign([signer]), bit), [signer.verifier()])


def test_peek_origin_reads_the_first_line_without_verifying():
    assert peek_origin(Checkpoint(ORIGIN, 1, ROOT).sign([LOG])) == ORIGIN


@pytest.mark.parametrize(
    "note, message",
    [(b"no newline", "must start with an origin line"), (b"\xff\n", "not valid UTF-8"), (b"\n", "non-empty")],
)
def test_peek_origin_rejects_notes_without_an_origin(note, message):
    with pytest.raises(NoteError, match=message):
        peek_origin(note)


# --- vouchnet's origins ---------------------------------------------------------------------------------


def test_origin_convention_round_trips():
    assert ORIGIN == f"vouchnet/main/{DID}/records"
    assert parse_log_origin(ORIGIN) == ("main", DID, "records")
    assert cosigner_name(DID) == f"vouchnet/{DID}"


@pytest.mark.parametrize(
    "origin, message",
    [
        (f"example.com/main/{DID}/records", "must be vouchnet/<network>/<org did>/<log>"),
        (f"vouchnet/main/{DID}", "must be vouchnet/<network>/<org did>/<log>"),
        (f"vouchnet/main/{DID}/records/x", "must be vouchnet/<network>/<org did>/<log>"),
        (f"vouchnet/ma in/{DID}/records", "network"),
        (f"vouchnet/main/{DID}/rec+ords", "log name"),
        ("vouchnet/main/did:key:/records", "org did"),
        ("vouchnet/main/z6Mk/records", "org did"),
    ],
)
def test_origins_off_the_convention_are_rejected(origin, message):
    with pytest.raises(NoteError, match=message):
        parse_log_origin(origin)
