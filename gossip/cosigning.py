"""Cosigning over `/vouchnet/sync/1` (DESIGN.md §4): a C2SP tlog-witness add-checkpoint request carried in a sync
message. The log's side is a sans-I/O exchange (retries after a Conflict, from the size the witness reports);
the witness's side maps `ledger.Witness` outcomes to replies and hands back equivocation evidence.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ledger import (
    AddCheckpointRequest,
    Checkpoint,
    Conflict,
    CosignatureVerifier,
    Equivocation,
    NoteError,
    Signature,
    Witness,
    WitnessError,
    peek_origin,
)

from .sync import Send
from .sync_messages import (
    MAX_REASON,
    CosignRequest,
    Cosigned,
    ErrorReply,
    LocalProtocolError,
    Refused,
    RemoteProtocolError,
    Reply,
    decode_reply,
    encode_message,
)

_CONFLICT = 409
_RETRIES = 4  # a witness checking our log against earlier keys' logs asks for a proof from each size


@dataclass(frozen=True)
class Witnessed:
    """The witness cosigned: its signature line, verified against its key."""

    signature: Signature


class CosignClient:
    """Asks one witness to cosign one checkpoint of our log.

    `old_size` is the size we believe the witness last cosigned (0 if we do not know); on a Conflict we retry
    from the size it reports, a few times at most: once to correct our belief, and once more for each earlier key's
    log that a witness which cosigned ours before it knew of our rotations wants a proof from (ledger.witness).
    `proof(old, new)` gives the RFC 9162 consistency proof from our ledger.
    """

    def __init__(
        self,
        note: bytes,
        checkpoint: Checkpoint,
        old_size: int,
        proof: Callable[[int, int], Sequence[bytes]],
        witness: CosignatureVerifier,
    ) -> None:
        if not 0 <= old_size <= checkpoint.size:
            raise LocalProtocolError("unexpected", f"old size {old_size}: outside 0..{checkpoint.size}")
        self._note = note
        self._checkpoint = checkpoint
        self._old_size = old_size
        self._proof = proof
        self._witness = witness
        self._retries = 0
        self._started = False

    def start(self) -> Send:
        if self._started:
            raise LocalProtocolError("unexpected", "start() twice")
        self._started = True
        return self._request(self._old_size)

    def receive(self, payload: bytes) -> Send | Witnessed | Refused:
        """The witness's reply: a retry to send, its verified cosignature, or its final refusal (whose `size`, on
        a 409 Conflict, is what it last cosigned of our log). Raises RemoteProtocolError if it breaks the protocol."""
        if not self._started:
            raise LocalProtocolError("unexpected", "receive() before start()")
        reply = decode_reply(payload)
        if isinstance(reply, Cosigned):
            return Witnessed(self._check(reply.line))
        if isinstance(reply, ErrorReply):
            raise RemoteProtocolError("refused", f"the witness refused our request: {reply.reason}")
        if not isinstance(reply, Refused):
            raise RemoteProtocolError("unexpected", f"a {type(reply).__name__} reply to a cosign request")
        if (
            reply.status == _CONFLICT
            and self._retries < _RETRIES
            and reply.size is not None
            and reply.size <= self._checkpoint.size
        ):
            self._retries += 1
            return self._request(reply.size)
        return reply

    def _request(self, old_size: int) -> Send:
        proof = tuple(self._proof(old_size, self._checkpoint.size)) if 0 < old_size < self._checkpoint.size else ()
        body = AddCheckpointRequest(old_size, proof, self._note).to_bytes()
        return Send(encode_message(CosignRequest(body)))

    def _check(self, line: str) -> Signature:
        if not line.endswith("\n"):
            raise RemoteProtocolError("bad_cosignature", "sig: must be one signature line ending in a newline")
        try:
            signature = Signature.from_line(line[:-1])
        except NoteError as e:
            raise RemoteProtocolError("bad_cosignature", f"sig: {e}") from None
        witness = self._witness
        if (signature.name, signature.key_id) != (witness.name, witness.key_id):
            raise RemoteProtocolError("bad_cosignature",
                                      f"sig: from {signature.name:.100}, not the witness {witness.name}")
        if not witness.verify(self._checkpoint.to_text().encode(), signature.signature):
            raise RemoteProtocolError("bad_cosignature", "sig: does not verify over our checkpoint")
        return signature


def answer(witness: Witness, request: CosignRequest, *, origin: str) -> tuple[Reply, Equivocation | None]:
    """The witness's reply to a cosign request from the org whose log is `origin` (a peer may only ask for its
    own log), and the evidence if that log signed two roots at one size."""
    try:
        parsed = AddCheckpointRequest.parse(request.body)
        if peek_origin(parsed.checkpoint) != origin:
            return Refused(403, f"a peer may only ask to cosign its own log {origin}"[:MAX_REASON]), None
        signature = witness.add_checkpoint(parsed)
    except Conflict as e:
        return Refused(e.http_status, str(e)[:MAX_REASON], e.size), None
    except Equivocation as e:
        return Refused(e.http_status, str(e)[:MAX_REASON]), e
    except WitnessError as e:
        return Refused(e.http_status, str(e)[:MAX_REASON]), None
    except NoteError as e:
        return Refused(403, f"checkpoint: {e}"[:MAX_REASON]), None
    return Cosigned(signature.line), None
