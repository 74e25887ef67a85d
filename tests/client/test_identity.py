"""The one credential verifier every adapter uses: agent credentials of the accepted orgs verify; anything else
(another org's key, a score statement, an expired or altered token, nothing at all) is refused, naming why; a
credential's status list counts only if a key of the credential's issuer signed it (DESIGN §2 key rotation)."""

import gzip
import json
import random
import socket
import threading
import time
from types import SimpleNamespace

import anyio
import httpx
import pytest
from nacl.signing import SigningKey
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

from node.client import CredentialVerifier, UnverifiedAgent
from node.client.identity import JWKS_PATH, _origin
from node.credential_status import LIST_ENTRIES, MAX_ENCODED_BITS, encode_list, list_url, status_entry, vouch_list_url
from node.credentials import agent_credential, did_url, org_jwk, score_statement, status_list_credential
from node.jwt import b64url, decode_jwt, encode_jwt

from ..factories import new_did
from .loopback import serving_in_thread
from .running_node import on_asyncio
from .stub_org import StubOrg, did_of, resigned, serving


MAX_LIST_BYTES = MAX_ENCODED_BITS // 8


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


def test_a_credential_from_an_org_not_accepted_is_refused_naming_the_org(verifier):
    """The refusal named no org: the operator of a service could not tell a partner whose node's URL was left out of
    `issuers` from a stranger."""
    stranger = SigningKey.generate()
    with pytest.raises(UnverifiedAgent, match=r"^header.kid: not a key of an org this service accepts agents from "
                                              rf"\(a key of {did_of(stranger)}\)$") as refused:
        verifier.verify(agent_credential(stranger, new_did()))
    assert refused.value.public == str(refused.value)


def test_a_kid_that_is_no_org_key_s_did_url_is_not_repeated_in_the_refusal(verifier):
    token = agent_credential(SigningKey.generate(), new_did())
    header = b64url(json.dumps({"alg": "EdDSA", "typ": "vc+jwt", "kid": "did:key:zEvil#\u202ehidden"}).encode())
    with pytest.raises(UnverifiedAgent, match=r"^header.kid: not a key of an org this service accepts agents "
                                              r"from$"):
        verifier.verify(header + token[token.index("."):])


def test_a_score_statement_of_the_same_org_is_not_a_credential(running, verifier):
    statement = score_statement(running.node.key, agent=new_did(), score=900, tier="verified")
    with pytest.raises(UnverifiedAgent, match="header.typ"):
        verifier.verify(statement)


def test_an_expired_credential_is_refused(running, verifier):
    old = agent_credential(running.node.key, new_did(), now=int(time.time()) - 3 * 86400, days=1)
    with pytest.raises(UnverifiedAgent, match="payload.exp"):
        verifier.verify(old)


def test_a_verified_credential_is_refused_from_the_instant_it_expires(monkeypatch):
    """RFC 7519 §4.1.4: not accepted on or after exp (plus the leeway). The verifier's cache of credentials it
    verified kept one for that instant."""
    key = SigningKey.generate()
    org = StubOrg([key])
    with serving(org):
        verifier = CredentialVerifier([org.url])
        issued = int(time.time())
        token = agent_credential(key, new_did(), now=issued, days=1)
        assert verifier.verify(token).expires == issued + 86400
        monkeypatch.setattr(time, "time", lambda: issued + 86400 + verifier.leeway)
        with pytest.raises(UnverifiedAgent, match="payload.exp"):
            verifier.verify(token)


def test_an_altered_credential_is_refused(running, verifier):
    header, _, signature = running.credential(new_did()).split(".")
    _, other_claims, _ = running.credential(new_did()).split(".")
    with pytest.raises(UnverifiedAgent, match="signature"):
        verifier.verify(f"{header}.{other_claims}.{signature}")


@pytest.mark.parametrize("token", [None, "", "garbage", "a.b.c", 42, "e" * 20_000 + ".a.b"])
def test_no_credential_or_garbage_is_refused(verifier, token):
    with pytest.raises(UnverifiedAgent):
        verifier.verify(token)



@pytest.mark.parametrize(("form", "named"), [
    (lambda token: token + "\n", r"credential: ends in whitespace \(the newline of its file\?\): strip it"),
    (lambda token: token.encode(), r"credential: must be text \(str\), not bytes"),
], ids=["read from its file", "bytes"])
def test_a_credential_passed_in_the_wrong_form_is_refused_naming_the_form(running, verifier, form, named):
    """`Path("alice.vc.jwt").read_text()` was refused for its 'signature: not unpadded base64url', and bytes as if
    the caller presented no credential."""
    with pytest.raises(UnverifiedAgent, match=named):
        verifier.verify(form(running.credential(new_did())))

def test_an_issuer_that_does_not_answer_verifies_nothing():
    verifier = CredentialVerifier(["http://127.0.0.1:9"])
    with pytest.raises(UnverifiedAgent, match="cannot fetch the keys"):
        verifier.verify(agent_credential(SigningKey.generate(), new_did()))


def test_until_the_keys_are_fetched_again_a_refusal_says_they_could_not_be_not_that_the_org_is_not_accepted():
    """The first credential after a failed fetch was refused for it, and every one after it, until the next fetch
    (REFRESH_BACKOFF_S later), as 'not a key of an org this service accepts': a service started before its node, or
    during its outage, told its operator (and its callers) to look at `issuers`."""
    key, stranger = SigningKey.generate(), SigningKey.generate()
    alone = CredentialVerifier(["http://127.0.0.1:9"])
    for _ in range(2):
        with pytest.raises(UnverifiedAgent, match=r"^cannot fetch the keys of any trusted issuer \(.*127\.0\.0\.1:9"
                           ) as refused:
            alone.verify(agent_credential(key, new_did()))
        assert refused.value.public == "cannot fetch the keys of any trusted issuer (the service's log says why)"
    org = StubOrg([key])
    with serving(org):
        beside = CredentialVerifier([org.url, "http://127.0.0.1:9"])
        assert beside.verify(agent_credential(key, new_did())).org == did_of(key)
        for _ in range(2):  # the key may be the unanswering issuer's
            with pytest.raises(UnverifiedAgent, match=r"not a key of an org this service accepts agents from, as far "
                                                      r"as their keys could be fetched: 1 of 2 could not be \(http://"
                                                      r"127\.0\.0\.1:9/\.well-known/jwks\.json: "):
                beside.verify(agent_credential(stranger, new_did()))


def test_partners_that_hang_cost_the_org_s_own_agents_one_timeout_not_one_each():
    """The issuers' keys were fetched one after another, at first use and every jwks_ttl: each partner node that
    took a connection and never answered held the check of the org's own agents its whole timeout, in turn. They are
    fetched at once: both hung partners are asked before either has answered."""
    key = SigningKey.generate()
    org = StubOrg([key])
    with serving(org), socket.create_server(("127.0.0.1", 0)) as first, \
            socket.create_server(("127.0.0.1", 0)) as second:
        hung = [f"http://127.0.0.1:{server.getsockname()[1]}" for server in (first, second)]
        verifier = CredentialVerifier([*hung, org.url], timeout=60)
        verified: list[str] = []
        checking = threading.Thread(
            target=lambda: verified.append(verifier.verify(agent_credential(key, new_did())).org), daemon=True)
        checking.start()
        asked = []
        for server in (first, second):
            server.settimeout(10)  # one at a time, the second would be asked only after the first's 60 s
            asked.append(server.accept()[0])
        for connection in asked:  # both hang up unanswered
            connection.close()
        checking.join(10)
    assert verified == [did_of(key)]


# --- revocation: the issuer's W3C Bitstring Status List --------------------------------------------------------


def test_a_revoked_credential_is_refused_even_if_it_verified_before(running):
    verifier = CredentialVerifier([running.url], status_ttl=0)  # refetch the list at every check
    agent, other = new_did(), new_did()
    (token, index), (kept, _) = running.revocable_credential(agent), running.revocable_credential(other)
    assert verifier.verify(token).did == agent
    running.revoke(index)
    with pytest.raises(UnverifiedAgent, match="credentialStatus: revoked by its issuer"):
        verifier.verify(token)
    assert verifier.verify(kept).did == other


def test_a_partner_s_hung_status_list_does_not_hold_the_check_of_the_org_s_own_agents():
    """One lock held every status list's fetch: while a partner's node took the request for its list and never
    answered, the check of the org's own agents, whose list was due, waited the partner's whole timeout."""
    own_key, partner_key = SigningKey.generate(), SigningKey.generate()
    own, partner = StubOrg([own_key]), StubOrg([partner_key])
    asked, answer = threading.Event(), threading.Event()

    def partner_app(url: str) -> Starlette:
        async def hung_list(_: object) -> Response:
            asked.set()
            await anyio.to_thread.run_sync(answer.wait)
            return Response(status_code=503)

        return Starlette(routes=[Route(list_url("", 0), hung_list), *partner.app(url).routes])

    verified: list[str] = []
    with serving(own), serving_in_thread(partner_app):
        verifier = CredentialVerifier([own.url, partner.url], timeout=60)
        try:
            threading.Thread(target=_refused, args=(verifier, partner.credential(partner_key, 1)), daemon=True).start()
            assert asked.wait(10)
            checking = threading.Thread(
                target=lambda: verified.append(verifier.verify(own.credential(own_key, 1)).org), daemon=True)
            checking.start()
            checking.join(10)
            assert verified == [did_of(own_key)]  # while the partner's list still hangs
        finally:
            answer.set()


def _refused(verifier: CredentialVerifier, credential: str) -> None:
    with pytest.raises(UnverifiedAgent):
        verifier.verify(credential)


def test_a_revocation_takes_effect_when_the_cached_list_expires(running, monkeypatch):
    verifier = CredentialVerifier([running.url], status_ttl=60)
    token, index = running.revocable_credential(new_did())
    verifier.verify(token)
    running.revoke(index)
    verifier.verify(token)  # the list fetched a moment ago still serves
    later = time.monotonic() + 61
    monkeypatch.setattr(time, "monotonic", lambda: later)
    with pytest.raises(UnverifiedAgent, match="revoked by its issuer"):
        verifier.verify(token)


@on_asyncio
async def test_averify_checks_revocation_too(running):
    verifier = CredentialVerifier([running.url], status_ttl=0)
    token, index = running.revocable_credential(new_did())
    await verifier.averify(token)
    running.revoke(index)
    with pytest.raises(UnverifiedAgent, match="revoked by its issuer"):
        await verifier.averify(token)


def credential_with_status(running, **entry):
    """A credential of the running org whose revocation entry is changed by `entry`."""
    now = int(time.time())
    status = {**status_entry(running.url, 0), **entry}
    return agent_credential(running.node.key, new_did(), now=now, status=status)


def test_revocation_fails_closed_when_the_list_cannot_be_fetched(running, verifier):
    token = credential_with_status(running, statusListCredential=f"{running.url}/v1/credentials/status/999")
    with pytest.raises(UnverifiedAgent, match="cannot check revocation, the issuer's status list is unavailable "
                                              r"\(Client error '404"):
        verifier.verify(token)


def test_a_list_that_is_not_a_revocation_list_of_the_issuer_does_not_count(running, verifier):
    with running.client() as client:
        vouch = client.vouch(new_did(), 0.5, "operator")["id"]
    token = credential_with_status(running, statusListCredential=f"{running.url}/v1/records/{vouch}/vc")
    with pytest.raises(UnverifiedAgent, match="payload.type must include BitstringStatusListCredential"):
        verifier.verify(token)


def test_a_position_beyond_the_list_is_refused(running, verifier):
    token = credential_with_status(running, statusListIndex=str(LIST_ENTRIES))
    with pytest.raises(UnverifiedAgent, match="beyond the list's 131072 entries"):
        verifier.verify(token)


def test_a_malformed_status_entry_is_refused(running, verifier):
    with pytest.raises(UnverifiedAgent, match="statusListIndex: must be a string of decimal digits"):
        verifier.verify(credential_with_status(running, statusListIndex=-1))


def test_an_unreachable_issuer_s_last_list_serves_until_the_list_expires(running, monkeypatch):
    verifier = CredentialVerifier([running.url], status_ttl=60)
    token, _ = running.revocable_credential(new_did())
    verifier.verify(token)
    _serves_while_unreachable_until(verifier, token, 300, monkeypatch)


def _serves_while_unreachable_until(verifier: CredentialVerifier, token: str, expires_s: float, monkeypatch) -> None:
    """With the issuer unreachable from now on, `verifier` (status_ttl 60) serves the list it holds for `token` past
    status_ttl, and refuses once the list's exp, `expires_s` from now, and the leeway have passed."""
    start = time.monotonic()

    def unreachable(*args, **kwargs):
        raise httpx.ConnectError("connection refused")

    monkeypatch.setattr(httpx.Client, "stream", unreachable)
    monkeypatch.setattr(time, "monotonic", lambda: start + 61)  # the copy is stale: refetched, in vain
    assert verifier.verify(token).did
    monkeypatch.setattr(time, "monotonic", lambda: start + expires_s + 60 + 1)  # its exp, and the leeway, passed
    with pytest.raises(UnverifiedAgent, match="status list is unavailable .*connection refused"):
        verifier.verify(token)


def test_a_list_whose_exp_is_not_a_whole_second_serves_no_longer_than_it(monkeypatch):
    """decode_jwt honours an exp with a fraction (RFC 7519 NumericDate); the copy kept took it for no exp at all,
    and served for ever while the issuer could not be reached."""
    key = SigningKey.generate()
    org = StubOrg([key], list_claims={"exp": time.time() + 300.5})
    with serving(org):
        verifier = CredentialVerifier([org.url], status_ttl=60)
        token = org.credential(key, 1)
        verifier.verify(token)
    _serves_while_unreachable_until(verifier, token, 300.5, monkeypatch)


def test_a_list_that_never_expires_does_not_count():
    """Its copy would serve for ever while the issuer cannot be reached (an older list served again, too: an older
    one is refused only while the copy held is valid), where a revocation must fail closed: as an agent credential,
    a status list must expire. vouchnet's every list does, STATUS_TTL_S after it is signed."""
    key = SigningKey.generate()
    org = StubOrg([key])
    with serving(org):
        token = status_list_credential(key, list_url(org.url, 0), set())
        claims = decode_jwt(token, bytes(key.verify_key))[1]
        del claims["exp"], claims["validUntil"]
        org.list_token = encode_jwt(claims, key, kid=did_url(did_of(key)), typ="vc+jwt")
        with pytest.raises(UnverifiedAgent, match="cannot check revocation, .*payload.exp: a status list must "
                                                  "expire"):
            CredentialVerifier([org.url]).verify(org.credential(key, 1))


def test_the_verifier_keeps_a_bounded_number_of_status_lists(running, monkeypatch):
    import node.client.identity as identity

    monkeypatch.setattr(identity, "STATUS_LISTS_CACHE", 2)
    verifier = CredentialVerifier([running.url], status_ttl=3600)
    never_minted = str(LIST_ENTRIES - 1)  # a position no other test revokes
    # four URLs of the one list, its path spelt four ways (the node refuses a query parameter the route does not take)
    urls = [f"{running.url}/v1/{credentials}/status/0"
            for credentials in ("credentials", "%63redentials", "c%72edentials", "cr%65dentials")]
    tokens = [credential_with_status(running, statusListIndex=never_minted, statusListCredential=url) for url in urls]
    for token in tokens:
        verifier.verify(token)
    assert [url for _, url in verifier._status_lists] == urls[2:]  # the two fetched last
    assert verifier.verify(tokens[0]).did  # fetched again when needed


def test_the_status_lists_kept_hold_a_bounded_number_of_bytes(monkeypatch):
    import node.client.identity as identity

    monkeypatch.setattr(identity, "STATUS_LISTS_BYTES", 2 * MAX_LIST_BYTES)
    key = SigningKey.generate()
    bomb = "u" + b64url(gzip.compress(bytes(MAX_LIST_BYTES), 9))  # a list's most: 16 MiB of bits, in 22 KB
    org = StubOrg([key], list_claims={"credentialSubject": {"id": "list", "type": "BitstringStatusList",
                                                            "statusPurpose": "revocation", "encodedList": bomb}})
    with serving(org):
        verifier = CredentialVerifier([org.url], status_ttl=3600)
        for copy in range(3):  # each credential names the list at a URL of its own: three lists of 16 MiB
            status = status_entry(org.url, 1) | {"statusListCredential": f"{list_url(org.url, 0)}?copy={copy}"}
            assert verifier.verify(agent_credential(key, new_did(), status=status)).org == did_of(key)
        assert [url.rpartition("=")[2] for _, url in verifier._status_lists] == ["1", "2"]  # the two fetched last


# --- after the issuer rotated its key (DESIGN §2): lists signed with its new key, never with another org's ------


def test_a_credential_minted_before_a_rotation_is_revoked_by_a_list_signed_with_the_new_key():
    old, new = SigningKey.generate(), SigningKey.generate()
    org = StubOrg([new, old])
    with serving(org):
        verifier = CredentialVerifier([org.url], status_ttl=0)
        token = org.credential(old, 5)
        assert verifier.verify(token).org == did_of(old)
        org.revoked.add(5)
        with pytest.raises(UnverifiedAgent, match="credentialStatus: revoked by its issuer"):
            verifier.verify(token)


def test_a_rotation_after_the_keys_were_fetched_fetches_them_again_for_the_list(monkeypatch):
    import node.client.identity as identity

    monkeypatch.setattr(identity, "REFRESH_BACKOFF_S", 0)  # an unknown kid refetches the keys at once
    old, new = SigningKey.generate(), SigningKey.generate()
    org = StubOrg([old])
    with serving(org):
        verifier = CredentialVerifier([org.url], status_ttl=0)
        token = org.credential(old, 7)
        verifier.verify(token)
        org.keys, org.revoked = [new, old], {7}  # rotated, then revoked: the list is signed with a key not seen yet
        with pytest.raises(UnverifiedAgent, match="revoked by its issuer"):  # not the last list, signed by `old`
            verifier.verify(token)


@pytest.mark.parametrize("claims_the_key", [False, True], ids=["own key", "also serving the other's key"])
def test_an_accepted_org_cannot_sign_the_status_list_of_another(claims_the_key):
    x_key, y_key = SigningKey.generate(), SigningKey.generate()
    x, y = StubOrg([x_key]), StubOrg([y_key, x_key] if claims_the_key else [y_key])
    with serving(x, y):
        verifier = CredentialVerifier([x.url, y.url])
        if claims_the_key:  # X's credential, pointed at Y's list: Y's origin serves X's key too
            token = x.credential(x_key, 3, status_of=y)
        else:  # at Y's origin it would not be fetched (the origin rule): Y's list, served at X's
            x.list_token = status_list_credential(y_key, list_url(x.url, 0), {3})
            token = x.credential(x_key, 3)
        with pytest.raises(UnverifiedAgent, match="status list: header.kid: a key of another issuer than the "
                                                  "credential's"):
            verifier.verify(token)


@pytest.mark.parametrize("issuer", ["credential's key", "another org"])
def test_a_list_whose_iss_is_not_the_did_of_its_signer_is_refused(issuer):
    old, new = SigningKey.generate(), SigningKey.generate()
    org = StubOrg([new, old], list_claims={"iss": did_of(old) if issuer == "credential's key" else new_did()})
    with serving(org):
        verifier = CredentialVerifier([org.url])
        with pytest.raises(UnverifiedAgent, match=r"credentialStatus: .*/status/0: status list: payload.iss: must be "
                                                  "the did of the key that signed it"):
            verifier.verify(org.credential(old, 1))


def test_an_accepted_org_cannot_serve_another_org_s_kid_for_its_own_key():
    x_key, y_key = SigningKey.generate(), SigningKey.generate()
    x_kid = did_url(did_of(x_key))
    x, y = StubOrg([x_key]), StubOrg([y_key], extra_jwks=[{**org_jwk(y_key.verify_key), "kid": x_kid}])
    agent = new_did()
    forged = resigned(agent_credential(y_key, agent), y_key, kid=x_kid, iss=did_of(x_key), issuer=did_of(x_key),
                      credentialSubject={"id": agent, "operator": did_of(x_key)})
    with serving(x, y):
        verifier = CredentialVerifier([x.url, y.url])  # Y's keys are read last
        with pytest.raises(UnverifiedAgent, match="signature: does not verify"):
            verifier.verify(forged)


def test_a_credential_that_verified_before_is_refused_once_its_issuer_stops_serving_the_key():
    old, new = SigningKey.generate(), SigningKey.generate()
    org = StubOrg([old])
    with serving(org):
        verifier = CredentialVerifier([org.url], jwks_ttl=0)  # the keys are fetched again at every check
        token = agent_credential(old, new_did())
        assert verifier.verify(token).org == did_of(old)
        org.keys = [new]  # the org dropped a key it found compromised
        with pytest.raises(UnverifiedAgent, match="header.kid: not a key of an org this service accepts"):
            verifier.verify(token)


def _nested(depth: int = 5_000) -> str:
    return "[" * depth + "]" * depth


def test_a_header_nested_past_the_parser_s_depth_is_refused_as_not_a_jwt(verifier):
    header = b64url(('{"alg":"EdDSA","kid":' + _nested() + "}").encode())
    with pytest.raises(UnverifiedAgent, match="header"):
        verifier.verify(f"{header}.e30.AA")


def test_a_jwks_nested_past_the_parser_s_depth_verifies_nothing():
    nested = Response(_nested(100_000), media_type="application/json")
    with serving_in_thread(lambda _: Starlette(routes=[Route(JWKS_PATH, lambda _: nested)])) as url:
        verifier = CredentialVerifier([url])
        with pytest.raises(UnverifiedAgent, match="cannot fetch the keys"):
            verifier.verify(agent_credential(SigningKey.generate(), new_did()))


def test_a_status_list_nested_past_the_parser_s_depth_fails_closed():
    key = SigningKey.generate()
    nested_header = b64url(('{"alg":"EdDSA","typ":"vc+jwt","x":' + _nested() + "}").encode())
    org = StubOrg([key], list_token=f"{nested_header}.e30.AA")
    with serving(org):
        verifier = CredentialVerifier([org.url])
        with pytest.raises(UnverifiedAgent, match="credentialStatus: cannot check revocation"):
            verifier.verify(org.credential(key, 1))


def test_a_list_with_many_revocations_still_verifies_the_others():
    key = SigningKey.generate()
    revoked = set(random.Random(7).sample(range(1, LIST_ENTRIES), 12_000))  # its token is over 16 KiB
    org = StubOrg([key], revoked=revoked)
    with serving(org):
        verifier = CredentialVerifier([org.url])
        assert verifier.verify(org.credential(key, 0)).org == did_of(key)
        with pytest.raises(UnverifiedAgent, match="revoked by its issuer"):
            verifier.verify(org.credential(key, min(revoked)))


@pytest.mark.parametrize("replayed", ["list 1", "its vouches' list 0"])
def test_another_list_of_the_issuer_served_at_the_list_s_url_does_not_count(replayed):
    """The lists of an org's vouches (node.credential_status) are numbered from 0 too, and signed with the same key."""
    key = SigningKey.generate()
    org = StubOrg([key], revoked={3})
    with serving(org):
        verifier = CredentialVerifier([org.url])
        token = org.credential(key, 3)
        org.revoked = set()  # another list, where position 3 is not revoked, replayed at list 0's URL
        other = list_url(org.url, 1) if replayed == "list 1" else vouch_list_url(org.url, did_of(key), 0)
        org.list_claims = {"id": other, "jti": other}
        with pytest.raises(UnverifiedAgent, match="status list: payload.id: must be the list the credential names"):
            verifier.verify(token)


def test_an_older_list_served_again_does_not_undo_a_revocation_seen_in_a_newer_one():
    """Whoever sits between the verifier and the issuer (its lists are served over plain http too) keeps the list
    of a minute ago, before the revocation, valid for four minutes more, and serves it again."""
    key = SigningKey.generate()
    org = StubOrg([key])
    with serving(org):
        verifier = CredentialVerifier([org.url], status_ttl=0)  # the list is fetched again at every check
        token = org.credential(key, 3)
        before = status_list_credential(key, list_url(org.url, 0), set(), now=int(time.time()) - 60)
        org.revoked = {3}
        with pytest.raises(UnverifiedAgent, match="revoked by its issuer"):
            verifier.verify(token)
        org.list_token = before
        with pytest.raises(UnverifiedAgent, match="revoked by its issuer"):  # the newer list, kept, still serves
            verifier.verify(token)


@pytest.mark.parametrize("served", [
    [({3}, 0), (set(), 0)],  # the list of just before the revocation, of the same second (iat), served again
    [(set(), 0), ({3}, -60)],  # the issuer's clock went back a minute (a restart, NTP) before it revoked
])
def test_a_revocation_is_kept_and_counts_at_once_whatever_the_lists_iat_say(served):
    """iat is in whole seconds and from the issuer's clock: the list of just before a revocation, of the same
    second as the one after it, served again, replaced it; and after the issuer's clock went back, its list of after
    the revocation was refused as older than the copy held until that copy expired, six minutes of a revoked
    credential verifying. A revocation is not reversible (Bitstring Status List v1.0, statusPurpose revocation):
    the bits tell which list is newer."""
    key = SigningKey.generate()
    org = StubOrg([key])
    with serving(org):
        verifier = CredentialVerifier([org.url], status_ttl=0)  # the list is fetched again at every check
        token = org.credential(key, 3)
        second = int(time.time())
        for revoked, offset in served:
            org.list_token = status_list_credential(key, list_url(org.url, 0), revoked, now=second + offset)
            try:
                verifier.verify(token)
            except UnverifiedAgent as error:
                assert "revoked by its issuer" in str(error)
        with pytest.raises(UnverifiedAgent, match="revoked by its issuer"):
            verifier.verify(token)


# --- an issuer whose JWKS cannot be fetched again: its keys serve for jwks_max_stale, then fail closed ------------


def test_keys_that_cannot_be_fetched_again_stop_verifying_past_jwks_max_stale(monkeypatch):
    import node.client.identity as identity

    key = SigningKey.generate()
    org = StubOrg([key])
    with serving(org):
        verifier = CredentialVerifier([org.url], jwks_max_stale=3600)
        remembered = agent_credential(key, new_did())
        assert verifier.verify(remembered).org == did_of(key)
        start, org.jwks_down = time.monotonic(), True
        later = SimpleNamespace(time=time.time)  # the verifier's clock only: the stub org's loop keeps real time
        monkeypatch.setattr(identity, "time", later)
        later.monotonic = lambda: start + 3000  # past jwks_ttl: fetched again, in vain
        assert verifier.verify(remembered).org == did_of(key)  # the last keys serve
        later.monotonic = lambda: start + 3601
        for token in (remembered, agent_credential(key, new_did())):  # verified before, and never seen
            with pytest.raises(UnverifiedAgent, match=r"header.kid: the keys of its issuer could not be fetched for "
                                                      r"over 3600 s \(jwks_max_stale\); failing closed \(.*503"):
                verifier.verify(token)
        org.jwks_down = False
        later.monotonic = lambda: start + 3601 + identity.REFRESH_BACKOFF_S + 1
        assert verifier.verify(remembered).org == did_of(key)  # it answers again: its keys serve again


@pytest.mark.parametrize("keys", ["never fetched", "past jwks_max_stale"])
def test_a_refusal_does_not_show_the_password_of_an_issuer_s_url(monkeypatch, keys):
    """A refusal's reason goes back to the caller (refusal_text) and into the service's log, and named the JWKS URL
    as given, password included (an org whose JWKS asks for basic auth), to anyone presenting a token of a kid no
    issuer serves; RFC 3986 §3.2.1: the part of a userinfo after ':' should not be shown."""
    import node.client.identity as identity

    key = SigningKey.generate()
    org = StubOrg([key], jwks_down=keys == "never fetched")
    with serving(org):
        verifier = CredentialVerifier([org.url.replace("http://", "http://svc:s3cret@")], jwks_max_stale=3600)
        if keys == "past jwks_max_stale":
            assert verifier.verify(agent_credential(key, new_did())).org == did_of(key)
            start, org.jwks_down = time.monotonic(), True
            monkeypatch.setattr(identity, "time", SimpleNamespace(time=time.time, monotonic=lambda: start + 3601))
        shown = r"http://svc@127\.0\.0\.1:\d+/\.well-known/jwks\.json.*503"
        with pytest.raises(UnverifiedAgent, match=shown) as refused:
            verifier.verify(agent_credential(key, new_did()))
    assert "s3cret" not in str(refused.value)


def test_the_default_staleness_is_a_day():
    assert CredentialVerifier(["http://127.0.0.1:9"]).jwks_max_stale == 86_400


# --- a status list URL or id its issuer signed but nothing can fetch or parse: refused, never an exception ------


@pytest.mark.parametrize("url", ["http://[::1/v1/credentials/status/0", "http://xn--/v1/credentials/status/0"],
                         ids=["bad IPv6 host", "bad IDNA label"])
def test_a_status_list_url_that_cannot_be_fetched_fails_closed(running, verifier, url):
    token = credential_with_status(running, statusListCredential=url)
    with pytest.raises(UnverifiedAgent, match="cannot check revocation, the issuer's status list is unavailable"):
        verifier.verify(token)


def test_a_status_list_whose_id_is_not_a_url_fails_closed():
    key = SigningKey.generate()
    org = StubOrg([key], list_claims={"id": "http://[/v1/credentials/status/0"})
    with serving(org):
        verifier = CredentialVerifier([org.url])
        with pytest.raises(UnverifiedAgent, match="cannot check revocation, the issuer's status list is unavailable"):
            verifier.verify(org.credential(key, 1))


def test_a_status_list_whose_exp_is_past_a_float_s_range_is_refused_not_raised():
    """Its issuer signed it, but the check of a credential must end in an identity or UnverifiedAgent: an exp of
    10^400 raised OverflowError out of verify (a float made of it)."""
    key = SigningKey.generate()
    org = StubOrg([key], list_claims={"exp": 10**400})
    with serving(org):
        verifier = CredentialVerifier([org.url])
        with pytest.raises(UnverifiedAgent, match="cannot check revocation, .*payload.exp: must be a NumericDate"):
            verifier.verify(org.credential(key, 1))


def test_a_status_list_whose_ttl_is_past_a_float_s_range_serves_for_status_ttl():
    """A ttl of 10^400 ms raised OverflowError out of verify (divided into a float); it is a ttl longer than
    status_ttl, which bounds it."""
    key = SigningKey.generate()
    org = StubOrg([key], list_claims={"credentialSubject": {"id": "list", "type": "BitstringStatusList",
                                                            "statusPurpose": "revocation",
                                                            "encodedList": encode_list(set()), "ttl": 10**400}})
    with serving(org):
        verifier = CredentialVerifier([org.url], status_ttl=0)  # the list is fetched again at every check
        token = org.credential(key, 1)
        assert verifier.verify(token).org == did_of(key)
        org.list_claims = {}
        org.revoked.add(1)
        with pytest.raises(UnverifiedAgent, match="credentialStatus: revoked by its issuer"):
            verifier.verify(token)


def test_a_status_list_named_at_another_origin_than_its_issuer_s_is_not_fetched():
    """An accepted org signs what its credentials name, and the verifier GETs it from inside the service's network
    (an internal admin URL, a cloud metadata address), telling the caller in the refusal how it went (refused,
    timed out, its status code): a port scan and blind GETs, for any org the service accepts agents from."""
    key, asked = SigningKey.generate(), []

    def internal(_: str) -> Starlette:
        async def admin(request) -> Response:
            asked.append(request.url.path)
            return Response("ok")
        return Starlette(routes=[Route("/{path:path}", admin)])

    org = StubOrg([key])
    with serving(org), serving_in_thread(internal) as inside:
        token = agent_credential(key, new_did(), status=status_entry(org.url, 1)
                                 | {"statusListCredential": f"{inside}/admin/v1/credentials/status/0"})
        with pytest.raises(UnverifiedAgent, match="credentialStatus"):
            CredentialVerifier([org.url]).verify(token)
    assert asked == []


def test_issuers_given_as_one_string_is_refused_not_taken_as_its_characters():
    """`CredentialVerifier("http://node")` fetched a JWKS from http://h/, http://t/, ... one host a character."""
    with pytest.raises(ValueError, match=r"issuers: a list of org node or JWKS URLs, not one string: "
                                         r"\['http://127.0.0.1:8700'\]"):
        CredentialVerifier("http://127.0.0.1:8700")



def test_a_status_list_at_another_port_of_the_issuer_s_host_is_refused_naming_the_rule_and_the_fix():
    """The origin is scheme, host and port: another port of the issuer's own host is another service. The refusal
    says which rule, and that the fix is to configure the issuer by the URL its node's public_url names."""
    key = SigningKey.generate()
    org, elsewhere = StubOrg([key]), StubOrg([key])
    with serving(org, elsewhere):
        token = org.credential(key, 1, status_of=elsewhere)
        with pytest.raises(UnverifiedAgent) as refused:
            CredentialVerifier([org.url]).verify(token)
    assert "statusListCredential: not at the origin (scheme, host, port) of the issuer URL" in refused.value.public
    assert "configure the issuer by the URL its node's [api] public_url names" in refused.value.public
    assert elsewhere.url not in refused.value.public and elsewhere.url in str(refused.value)  # the service's log


@pytest.mark.parametrize("spelled", ["its node URL", "its JWKS URL"])
def test_a_status_list_at_the_origin_of_the_issuer_url_counts_however_the_issuer_is_given(spelled):
    key = SigningKey.generate()
    org = StubOrg([key], revoked={1})
    with serving(org):
        issuer = org.url if spelled == "its node URL" else org.url + JWKS_PATH
        with pytest.raises(UnverifiedAgent, match="credentialStatus: revoked by its issuer"):
            CredentialVerifier([issuer]).verify(org.credential(key, 1))


def test_an_origin_is_scheme_host_and_port_with_the_default_port_made_explicit():
    """RFC 6454 §4, as httpx would fetch the URL: http://Host:80 is http://host; another port or scheme is not."""
    assert _origin("http://Example.org:80/v1/credentials/status/0") == _origin("http://example.org/.well-known/x")
    assert _origin("http://example.org@10.0.0.1/") == ("http", "10.0.0.1", 80)  # the host, not the userinfo
    assert _origin("https://example.org:8443/") != _origin("https://example.org/") != _origin("http://example.org/")
