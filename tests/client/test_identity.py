"""The one credential verifier every adapter uses: agent credentials of the accepted orgs verify; anything else
(another org's key, a score statement, an expired or altered token, nothing at all) is refused, naming why."""

import time

import pytest
from nacl.signing import SigningKey

from node.client import CredentialVerifier, UnverifiedAgent
from node.credentials import agent_credential, score_statement

from ..factories import new_did
from .running_node import on_asyncio


@pytest.fixture
def verifier(running):
    return CredentialVerifier([running.url])


def test_an_agent_credential_of_the_org_verifies(running, verifier):
    agent = new_did()
    identity = verifier.verify(running.credential(agent))
    assert (identity.did, identity.org, identity.name) == (agent, running.node.did, "test agent")
    assert identity.expires > time.time()


@on_asyncio
async def test_averify_fetches_the_keys_without_blocking_the_loop(running, verifier):
    agent = new_did()
    assert (await verifier.averify(running.credential(agent))).did == agent


def test_a_credential_from_an_org_not_accepted_is_refused(verifier):
    forged = agent_credential(SigningKey.generate(), new_did())
    with pytest.raises(UnverifiedAgent, match="header.kid: not a key of an org this service accepts"):
        verifier.verify(forged)


def test_a_score_statement_of_the_same_org_is_not_a_credential(running, verifier):
    statement = score_statement(running.node.key, agent=new_did(), score=900, tier="verified")
    with pytest.raises(UnverifiedAgent, match="header.typ"):
        verifier.verify(statement)


def test_an_expired_credential_is_refused(running, verifier):
    old = agent_credential(running.node.key, new_did(), now=int(time.time()) - 3 * 86400, days=1)
    with pytest.raises(UnverifiedAgent, match="payload.exp"):
        verifier.verify(old)


def test_an_altered_credential_is_refused(running, verifier):
    header, _, signature = running.credential(new_did()).split(".")
    _, other_claims, _ = running.credential(new_did()).split(".")
    with pytest.raises(UnverifiedAgent, match="signature"):
        verifier.verify(f"{header}.{other_claims}.{signature}")


@pytest.mark.parametrize("token", [None, "", "garbage", "a.b.c", 42, "e" * 20_000 + ".a.b"])
def test_no_credential_or_garbage_is_refused(verifier, token):
    with pytest.raises(UnverifiedAgent):
        verifier.verify(token)


def test_an_issuer_that_does_not_answer_verifies_nothing():
    verifier = CredentialVerifier(["http://127.0.0.1:9"])
    with pytest.raises(UnverifiedAgent, match="cannot fetch the keys"):
        verifier.verify(agent_credential(SigningKey.generate(), new_did()))
