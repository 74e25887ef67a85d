"""C2SP signed-note: published vectors, the rules on unknown and failing signatures, malformed notes, limits."""

import base64

import nacl.signing
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.note import (
    MAX_NOTE_SIZE,
    MAX_SIGNATURES,
    SIG_ED25519,
    Ed25519Signer,
    Ed25519Verifier,
    NoteError,
    Signature,
    encode_vkey,
    format_note,
    key_id,
    open_note,
    parse_vkey,
    sign_note,
)

from .flip import flip_bit

# The worked example of golang.org/x/mod/sumdb/note (package documentation and example_test.go): the signer
# key's data is 0x01 || the 32-byte Ed25519 seed.
GO_SKEY_DATA = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
GO_SIGNATURE = "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="
GO_NOTE = f"{GO_TEXT}\n— PeterNeumann {GO_SIGNATURE}\n".encode()

# A type-0x01 vkey from transparency-dev/formats note/note_cosigv1_test.go (TestCoSigV1NewVerifier).
FORMATS_ED25519_VKEY = "TEST+7997405c+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6"

_CONTROLS = "".join(chr(i) for i in range(0x20) if i != 0x0A)
note_texts = st.text(st.characters(codec="utf-8", exclude_characters=_CONTROLS), max_size=200).map(lambda t: t + "\n")


def _signer(name: str, seed: int = 1) -> Ed25519Signer:
    return Ed25519Signer(name, nacl.signing.SigningKey(bytes([seed]) * 32))



ALICE = _signer("alice.example/log", 1)
BOB = _signer("bob.example/log", 2)


# --- Published vectors ----------------------------------------------------------------------------------


def test_go_example_signer_reproduces_the_published_note_byte_for_byte():
    seed = base64.b64decode(GO_SKEY_DATA)
    assert seed[0] == SIG_ED25519
    signer = Ed25519Signer("PeterNeumann", nacl.signing.SigningKey(seed[1:]))
    assert signer.key_id == 0xC74F20A3
    assert signer.verifier().vkey() == GO_VKEY
    assert sign_note(GO_TEXT, [signer]) == GO_NOTE


def test_go_example_note_opens_with_its_vkey():
    verifier = Ed25519Verifier.from_vkey(GO_VKEY)
    text, sigs = open_note(GO_NOTE, [verifier])
    assert text == GO_TEXT
    assert [(s.name, s.key_id) for s in sigs] == [("PeterNeumann", 0xC74F20A3)]


def test_published_vkey_key_id_is_reproduced():
    name, sig_type, public_key = parse_vkey(FORMATS_ED25519_VKEY)
    assert (name, sig_type) == ("TEST", SIG_ED25519)
    assert key_id(name, sig_type, public_key) == 0x7997405C
    assert encode_vkey(name, sig_type, public_key) == FORMATS_ED25519_VKEY


def test_key_id_depends_on_name_type_and_key():
    key = bytes(ALICE.signing_key.verify_key)
    ids = {key_id("a", 1, key), key_id("b", 1, key), key_id("a", 4, key), key_id("a", 1, bytes(32))}
    assert len(ids) == 4


# --- vkeys ----------------------------------------------------------------------------------------------


def test_vkey_round_trip():
    verifier = ALICE.verifier()
    assert Ed25519Verifier.from_vkey(verifier.vkey()) == verifier


@pytest.mark.parametrize(
    "vkey, message",
    [
        ("bananas.example+12344556", r"must be <name>\+<key ID>\+<key>"),
        ("a b+7997405c+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6", "must not contain spaces"),
        ("TEST+7997405+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6", "key ID must be 8 hex digits"),
        ("TEST+0x997405+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6", "key ID must be 8 hex digits"),
        ("TEST+00000000+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6", "does not match the name and key"),
        ("TEST+7997405c+NOT_BASE64!", "key: not valid base64"),
        ("TEST+7997405c+AR==", "not canonical base64"),
        ("TEST+7997405c+AQ==", "a type byte and a public key"),
    ],
)
def test_malformed_vkeys_are_rejected_with_the_rule(vkey, message):
    with pytest.raises(NoteError, match=message):
        Ed25519Verifier.from_vkey(vkey)


def test_vkey_of_another_signature_type_is_not_an_ed25519_verifier():
    vkey = encode_vkey("x.example", 0x04, bytes(ALICE.signing_key.verify_key))
    with pytest.raises(NoteError, match="signature type must be 0x01, got 0x04"):
        Ed25519Verifier.from_vkey(vkey)


def test_vkey_with_a_short_key_is_rejected():
    with pytest.raises(NoteError, match="Ed25519 key is 32 bytes"):
        Ed25519Verifier.from_vkey(encode_vkey("x.example", SIG_ED25519, bytes(31)))


# --- Signing --------------------------------------------------------------------------------------------


@given(note_texts)
def test_signed_text_round_trips(text):
    note = sign_note(text, [ALICE, BOB])
    assert open_note(note, [ALICE.verifier(), BOB.verifier()])[0] == text


def test_text_may_contain_blank_lines_the_last_one_separates_signatures():
    text = "first\n\nafter a blank line\n\n"
    assert open_note(sign_note(text, [ALICE]), [ALICE.verifier()])[0] == text


@pytest.mark.parametrize(
    "text, message",
    [
        ("no final newline", "text: must end with a newline"),
        ("tab\there\n", r"text: control character U\+0009"),
        ("carriage\r\n", r"text: control character U\+000D"),
        ("lone \ud800 surrogate\n", "not encodable as UTF-8"),
    ],
)
def test_invalid_texts_are_not_signed(text, message):
    with pytest.raises(NoteError, match=message):
        sign_note(text, [ALICE])


def test_a_note_needs_a_signature():
    with pytest.raises(NoteError, match="must have 1 to"):
        sign_note("text\n", [])


@pytest.mark.parametrize("name", ["", "a b", "a+b", "a\u00a0b", "a\u3000b", "a\tb"])
def test_invalid_key_names_are_rejected(name):
    with pytest.raises(NoteError, match="key name"):
        _signer(name)


# --- Opening: which signatures count --------------------------------------------------------------------


def test_signatures_of_unknown_keys_are_ignored():
    note = sign_note("text\n", [BOB, ALICE])
    _, sigs = open_note(note, [ALICE.verifier()])
    assert [s.name for s in sigs] == [ALICE.name]


def test_a_key_sharing_only_the_name_or_only_the_key_id_is_unknown():
    impostor = _signer(ALICE.name, 3)  # same name, different key, so a different key ID
    same_id = Signature("carol.example/log", ALICE.key_id, bytes(64))  # ALICE's key ID under another name
    text = "text\n"
    real = sign_note(text, [ALICE])
    note = real + Signature(ALICE.name, impostor.key_id, bytes(64)).line.encode() + same_id.line.encode()
    _, sigs = open_note(note, [ALICE.verifier()])
    assert [(s.name, s.key_id) for s in sigs] == [(ALICE.name, ALICE.key_id)]


def test_a_failing_signature_of_a_known_key_rejects_the_whole_note():
    text = "text\n"
    forged = Signature(BOB.name, BOB.key_id, ALICE.sign(text.encode()))
    note = format_note(text, [Signature(ALICE.name, ALICE.key_id, ALICE.sign(text.encode())), forged])
    with pytest.raises(NoteError, match=r"signature line 2: bob.example/log\+[0-9a-f]{8} does not verify"):
        open_note(note, [ALICE.verifier(), BOB.verifier()])


def test_a_note_with_no_known_signature_is_rejected():
    with pytest.raises(NoteError, match="none of its 1 signatures is from a known key"):
        open_note(sign_note("text\n", [BOB]), [ALICE.verifier()])


def test_ambiguous_verifiers_are_a_configuration_error():
    with pytest.raises(ValueError, match="share key ID"):
        open_note(sign_note("text\n", [ALICE]), [ALICE.verifier(), ALICE.verifier()])


@given(note_texts, st.integers(min_value=0))
def test_any_flipped_bit_is_rejected(text, bit):
    note = sign_note(text, [ALICE])
    with pytest.raises(NoteError):
        open_note(flip_bit(note, bit), [ALICE.verifier()])


# --- Malformed notes ------------------------------------------------------------------------------------

_GOOD = sign_note("text\n", [ALICE])
_LINE = _GOOD[len(b"text\n\n") :]


@pytest.mark.parametrize(
    "note, message",
    [
        (b"text\n\n\xff" + _LINE, "note: not valid UTF-8 at byte 6"),
        (b"te\x00xt\n\n" + _LINE, r"note: control character U\+0000"),
        (b"text\n" + _LINE, "must be a text, a blank line and signature lines"),
        (_GOOD[:-1], "must end with a signature line and a newline"),
        (b"text\n\n", "must end with a signature line and a newline"),
        (b"text\n\n" + _LINE + b"\n", "must end with a signature line and a newline"),
        (b"text\n\n" + _LINE[len("— ".encode()) :], "signature line 1: must start with an em dash"),
        (b"text\n\n- " + _LINE[len("— ".encode()) :], "signature line 1: must start with an em dash"),
        ("text\n\n— nameonly\n".encode(), "signature line 1: must be '— <key name> <base64 signature>'"),
        ("text\n\n— a+b AAAAAAA=\n".encode(), "signature line 1: key name 'a\\+b'"),
        ("text\n\n— a AAAA AAAA\n".encode(), "signature line 1: signature of a: not valid base64"),
        ("text\n\n— a AAAAAAB=\n".encode(), "signature line 1: signature of a: not canonical base64"),
        ("text\n\n— a AAAAAAA\n".encode(), "signature line 1: signature of a: not valid base64"),
        ("text\n\n— a AAAAAA==\n".encode(), "a 4-byte key ID and a non-empty signature"),
        (_GOOD + "— a\u00a0b AAAAAAA=\n".encode(), "signature line 2: key name"),
    ],
)
def test_malformed_notes_are_rejected_with_the_rule(note, message):
    with pytest.raises(NoteError, match=message):
        open_note(note, [ALICE.verifier()])


def test_malformed_lines_reject_the_note_even_beside_a_valid_signature():
    with pytest.raises(NoteError, match="signature line 2"):
        open_note(_GOOD + b"garbage\n", [ALICE.verifier()])


# --- Limits ---------------------------------------------------------------------------------------------


def test_sixteen_post_quantum_sized_signatures_are_accepted():
    # signed-note: verifiers MUST accept at least 16 signatures; ML-DSA-44 cosignatures carry 2420+8 bytes.
    others = [Signature(f"w{i}.example", i, bytes(2428)) for i in range(16)]
    note = _GOOD + "".join(s.line for s in others).encode()
    assert open_note(note, [ALICE.verifier()])[0] == "text\n"


def test_too_many_signatures_are_rejected():
    others = [Signature(f"w{i}.example", i, bytes(64)) for i in range(MAX_SIGNATURES)]
    note = _GOOD + "".join(s.line for s in others).encode()
    with pytest.raises(NoteError, match=f"is more than {MAX_SIGNATURES}"):
        open_note(note, [ALICE.verifier()])


def test_oversized_notes_are_rejected_before_parsing():
    note = b"x" * MAX_NOTE_SIZE + b"\n\n" + _LINE
    with pytest.raises(NoteError, match=f"is more than {MAX_NOTE_SIZE}"):
        open_note(note, [ALICE.verifier()])


def test_oversized_notes_are_not_signed():
    with pytest.raises(NoteError, match=f"is more than {MAX_NOTE_SIZE}"):
        sign_note("x" * MAX_NOTE_SIZE + "\n", [ALICE])


def test_signature_line_round_trip():
    sig = Signature("w.example/1", 0xDEADBEEF, b"\x01" * 64)
    assert Signature.from_line(sig.line.rstrip("\n")) == sig
