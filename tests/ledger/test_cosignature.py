"""C2SP tlog-cosignature: the spec's signed message and example, published vkeys, type separation, tampering."""

import hashlib

import nacl.signing
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.checkpoint import Checkpoint, open_checkpoint
from ledger.cosignature import (
    COSIGNATURE_V1,
    CosignatureSigner,
    CosignatureVerifier,
    cosignature_message,
    cosignature_timestamp,
)
from ledger.names import cosigner_name, log_origin
from ledger.note import Ed25519Signer, Ed25519Verifier, NoteError, Signature, note_signature, open_note

from .flip import flip_bit

# c2sp.org/tlog-cosignature: its example checkpoint, the example cosignature line, and the signed message.
SPEC_CHECKPOINT = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
SPEC_COSIGNATURE_LINE = (
    "— witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0x"
    "Ue+mbIUBkBIfZ+qnA=="
)
SPEC_MESSAGE = (
    "cosignature/v1\ntime 1679315147\nexample.com/behind-the-sofa\n20852163\n"
    "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
)

# transparency-dev/formats note/note_cosigv1_test.go: a deployed witness's type-0x04 vkey (TestCoSigV1NewVerifier)
# and a cosignature whose timestamp is 1727964367 (TestCosignatureTimestamp).
REMORA_VKEY = "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2"
FORMATS_COSIGNATURE = (
    "ZGhGuQAAAABm/qTPeyKXD+R2rzyQsxPiP8mXum7qq/iF0u4vanlqJyocWODBt97w9uL+8qT7S5gxEHWWOworDcFiEBYJXORmnFBOBA=="
)

DID = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"
LOG = Ed25519Signer(log_origin("main", DID, "records"), nacl.signing.SigningKey(b"\x07" * 32))
WITNESS_KEY = nacl.signing.SigningKey(b"\x09" * 32)
WITNESS = CosignatureSigner(cosigner_name("did:key:z6MkWitness"), WITNESS_KEY, clock=lambda: 1_700_000_000.9)
CHECKPOINT = Checkpoint(LOG.name, 7, hashlib.sha256(b"root").digest())



# --- The spec's example and published keys ---------------------------------------------------------------


def test_signed_message_is_the_spec_example():
    assert cosignature_message(1679315147, SPEC_CHECKPOINT.encode()) == SPEC_MESSAGE.encode()


def test_spec_example_cosignature_states_the_time_of_the_spec_message():
    sig = Signature.from_line(SPEC_COSIGNATURE_LINE)
    assert (sig.name, sig.key_id) == ("witness.example.com/w1", 0x8D66CF3F)
    assert cosignature_timestamp(sig) == 1679315147


def test_published_cosignature_timestamp():
    sig = Signature.from_line(f"— w {FORMATS_COSIGNATURE}")
    assert cosignature_timestamp(sig) == 1727964367


def test_published_witness_vkey_key_id_is_reproduced():
    verifier = CosignatureVerifier.from_vkey(REMORA_VKEY)
    assert (verifier.name, verifier.key_id) == ("remora.n621.de", 0xDA77ADE7)
    assert verifier.vkey() == REMORA_VKEY


def test_vkeys_of_the_two_types_are_not_interchangeable():
    with pytest.raises(NoteError, match="signature type must be 0x01, got 0x04"):
        Ed25519Verifier.from_vkey(REMORA_VKEY)
    with pytest.raises(NoteError, match="signature type must be 0x04, got 0x01"):
        CosignatureVerifier.from_vkey(LOG.verifier().vkey())


# --- Cosigning checkpoints ------------------------------------------------------------------------------


def test_cosigned_checkpoint_opens_with_the_log_and_witness_keys():
    note = CHECKPOINT.sign([LOG])
    cosig = note_signature(CHECKPOINT.to_text(), WITNESS)
    got, sigs = open_checkpoint(note + cosig.line.encode(), [LOG.verifier(), WITNESS.verifier()])
    assert got == CHECKPOINT
    assert [s.name for s in sigs] == [LOG.name, WITNESS.name]
    assert cosignature_timestamp(sigs[1]) == 1_700_000_000


def test_a_witness_response_appended_to_the_checkpoint_opens_with_the_witness_key_alone():
    # tlog-witness: the client MAY concatenate the response to the checkpoint and open it with witness keys.
    response = note_signature(CHECKPOINT.to_text(), WITNESS).line.encode()
    _, sigs = open_note(CHECKPOINT.sign([LOG]) + response, [WITNESS.verifier()])
    assert [s.name for s in sigs] == [WITNESS.name]


def test_one_key_has_different_key_ids_as_log_key_and_as_cosigner():
    plain = Ed25519Signer(WITNESS.name, WITNESS_KEY)
    assert plain.key_id != WITNESS.key_id
    assert WITNESS.verifier().SIG_TYPE == COSIGNATURE_V1


def test_a_plain_signature_is_not_a_cosignature():
    text = CHECKPOINT.to_text()
    plain = Ed25519Signer(WITNESS.name, WITNESS_KEY).sign(text.encode())
    relabelled = Signature(WITNESS.name, WITNESS.key_id, bytes(8) + plain)
    with pytest.raises(NoteError, match="does not verify"):
        open_note(CHECKPOINT.sign([LOG]) + relabelled.line.encode(), [WITNESS.verifier()])


def test_a_cosignature_covers_extension_lines():
    extended = Checkpoint(CHECKPOINT.origin, CHECKPOINT.size, CHECKPOINT.root, ("ext",))
    cosig = note_signature(extended.to_text(), WITNESS)
    assert WITNESS.verifier().verify(extended.to_text().encode(), cosig.signature)
    assert not WITNESS.verifier().verify(CHECKPOINT.to_text().encode(), cosig.signature)


def test_timestamps_beyond_2_63_are_rejected_even_when_correctly_signed():
    timestamp = 2**63
    message = b"cosignature/v1\ntime %d\n" % timestamp + CHECKPOINT.to_text().encode()
    sig = timestamp.to_bytes(8, "big") + WITNESS_KEY.sign(message).signature
    assert not WITNESS.verifier().verify(CHECKPOINT.to_text().encode(), sig)
    with pytest.raises(NoteError, match="must not exceed 2\\^63 - 1"):
        cosignature_timestamp(Signature(WITNESS.name, WITNESS.key_id, sig))
    with pytest.raises(NoteError, match="from 0 to 2\\^63 - 1"):
        cosignature_message(timestamp, b"")


def test_a_signature_of_the_wrong_size_has_no_timestamp():
    with pytest.raises(NoteError, match="must be 72 bytes"):
        cosignature_timestamp(Signature(LOG.name, LOG.key_id, bytes(64)))


@given(st.integers(min_value=0))
def test_any_flipped_bit_in_a_cosignature_is_rejected(bit):
    text = CHECKPOINT.to_text().encode()
    signature = WITNESS.sign(text)
    assert not WITNESS.verifier().verify(text, flip_bit(signature, bit))
