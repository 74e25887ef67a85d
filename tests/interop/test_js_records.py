"""Records a node written in JavaScript signs (js/sign_vouch.mjs: cborg and @libp2p/crypto) verify here, and score as
ours do: cborg writes the number 1.0 as the integer 1, which a vouch's weight admits (README "Nodes in other
languages")."""

import subprocess

import pytest
from nacl.signing import SigningKey

from vouching import did_key, sign_record, verify_record, vouch_body
from vouching.feed import feed_record
from vouching.scoring import TrustEngine
from vouching.succession import Succession

from ..factories import new_did
from .js_peer import JS_DIR, require_js_peer

SEED = bytes(range(32))
TS = 1_700_000_000_000


def _signed_in_javascript(subject: str, weight: float) -> bytes:
    require_js_peer()
    run = subprocess.run(["node", "sign_vouch.mjs", SEED.hex(), subject, str(TS), repr(weight)], cwd=JS_DIR,
                         capture_output=True, text=True, timeout=60, check=True)
    return bytes.fromhex(run.stdout.strip())


@pytest.mark.parametrize("weight", [1.0, 0.5])
def test_a_javascript_node_s_vouch_verifies_and_scores_as_ours(weight: float) -> None:
    agent = new_did()
    raw = _signed_in_javascript(agent, weight)
    record = verify_record(raw)
    assert (record.iss, record.body.subject, record.body.weight) == (did_key(SigningKey(SEED).verify_key.encode()),
                                                                    agent, weight)
    if weight == 1.0:
        assert bytes.fromhex("6677656967687401") in raw  # weight: the integer 1
    ours = verify_record(sign_record(SigningKey(SEED), "vouch", vouch_body(agent, weight, "operator"), seq=1, prev=None,
                                     ts=TS))
    assert ours.raw == raw if weight != 1.0 else ours.raw != raw  # we write 1.0 as a float
    scores = []
    for vouch in (record, ours):
        engine = TrustEngine(record.iss)
        feed_record(engine, vouch, Succession().identity)
        scores.append(engine.score(agent, now=TS + 1))
    assert scores[0] == scores[1] and scores[0].score > TrustEngine(record.iss).score(agent, now=TS + 1).score
