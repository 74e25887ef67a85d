"""MCP servers (SDK 2.x) over streamable HTTP on loopback: the caller's access token is its agent credential;
the same tool call is refused (a tool error with the reason) for an untrusted caller and runs for a trusted one;
a token that is not a credential never gets in; what ran reaches the node."""

import logging
import time

import httpx2
import pytest
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError

from nacl.signing import SigningKey

from node.client import TelemetryCollector, TrustPolicy, Vouchnet
from node.client.adapters.mcp import DECISION_META, mcp_trust
from node.credentials import agent_credential

from . import stub_org
from .loopback import serving
from .running_node import GOOD_EVENTS, on_asyncio, vouchnet_for
from .test_a2a import untrusted_target

PATH = "/mcp"


def _server(vouchnet, ran: list[str]) -> MCPServer:
    server = MCPServer("files", **mcp_trust(vouchnet, f"http://127.0.0.1{PATH}", server="files"))

    @server.tool()
    def search(query: str) -> str:
        """Search the files."""
        ran.append(query)
        return f"results for {query}"

    return server


async def _call(url: str, credential: str):
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {credential}"}) as http:
        async with Client(streamable_http_client(url + PATH, http_client=http)) as client:
            return await client.call_tool("search", {"query": "vouchnet"})


@on_asyncio
async def test_a_tool_call_is_refused_for_an_untrusted_caller_and_runs_for_a_trusted_one(running):
    vouchnet = vouchnet_for(running)
    ran: list[str] = []
    stranger, stranger_credential = running.new_agent(trusted=False)
    known, known_credential = running.new_agent(trusted=True)
    async with serving(lambda _: _server(vouchnet, ran).streamable_http_app()) as url:
        refused = await _call(url, stranger_credential)
        assert refused.is_error and refused.content[0].text.startswith("Refused by vouchnet: tier untrusted")
        assert refused.meta[DECISION_META]["verdict"] == "block" and ran == []
        allowed = await _call(url, known_credential)
        assert not allowed.is_error and allowed.content[0].text == "results for vouchnet"
    assert ran == ["vouchnet"]
    await vouchnet.aclose()
    assert running.first_hand_events(known) == 11
    assert running.first_hand_events(stranger) == 0


@on_asyncio
async def test_a_tool_whose_delegation_is_refused_its_target_is_not_reported_as_the_caller_s_error(running):
    """Found by stop 45's adapter walk: mcp turns a tool's exception into an error result, so a tool whose A2A
    delegation TrustInterceptor refused (UntrustedTarget) was reported as its caller's error, the target's standing
    sinking the caller."""
    vouchnet = vouchnet_for(running)
    caller, credential = running.new_agent(trusted=True)
    async with untrusted_target(running, vouchnet, credential) as delegate:
        server = MCPServer("agents", **mcp_trust(vouchnet, f"http://127.0.0.1{PATH}"))

        @server.tool()
        async def ask_a_partner(task: str) -> str:
            """Delegate the task to a partner's agent."""
            return str(await delegate())

        async with serving(lambda _: server.streamable_http_app()) as url:
            async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {credential}"}) as http:
                async with Client(streamable_http_client(url + PATH, http_client=http)) as client:
                    result = await client.call_tool("ask_a_partner", {"task": "find it"})
    assert result.is_error and result.content[0].text == "Error executing tool ask_a_partner"
    await vouchnet.aclose()
    assert running.first_hand_events(caller) == GOOD_EVENTS


async def _status(url: str, token: str) -> int:
    """The HTTP status of a request bearing `token`."""
    async with httpx2.AsyncClient() as http:
        return (await http.post(url + PATH, headers={"Authorization": f"Bearer {token}"}, json={})).status_code


@on_asyncio
async def test_a_token_that_is_not_an_agent_credential_is_refused_at_the_door(running):
    ran: list[str] = []
    async with serving(lambda _: _server(vouchnet_for(running), ran).streamable_http_app()) as url:
        assert await _status(url, "not-a-credential") == 401
    assert ran == []


@on_asyncio
async def test_a_refused_token_is_logged_with_why_for_the_service_and_without_the_token(running, caplog):
    """A revoked credential got HTTP 401 and the MCP server's log said nothing of why (revoked, expired, an issuer
    not accepted, the node's keys not to be had), where every other adapter logs its refusal; the caller's token is
    a bearer secret and stays out of the log."""
    known, _ = running.new_agent(trusted=True)
    credential, index = running.revocable_credential(known)
    running.revoke(index)
    async with serving(lambda _: _server(vouchnet_for(running), []).streamable_http_app()) as url:
        with caplog.at_level(logging.WARNING, logger="vouchnet.client"):
            assert await _status(url, credential) == 401
    refused = [r.getMessage() for r in caplog.records if r.getMessage().startswith("mcp bearer token refused")]
    assert len(refused) == 1 and "credentialStatus: revoked by its issuer" in refused[0]
    assert credential not in caplog.text and credential.split(".")[2] not in caplog.text


@on_asyncio
async def test_a_credential_past_its_expiry_within_the_verifier_s_leeway_is_served_as_by_every_adapter(running):
    """mcp refused it (HTTP 401) at exp, while the CredentialVerifier, and so the other adapters, accept it until
    exp + leeway (60 s): the same caller was let in or not by which framework served it."""
    vouchnet = vouchnet_for(running)
    ran: list[str] = []
    known, _ = running.new_agent(trusted=True)
    day = 86_400
    async with serving(lambda _: _server(vouchnet, ran).streamable_http_app()) as url:
        for past, served in ((30, True), (vouchnet.verifier.leeway + 30, False)):
            credential = agent_credential(running.node.key, known, now=int(time.time()) - day - past, days=1)
            if served:
                assert not (await _call(url, credential)).is_error
            else:
                assert await _status(url, credential) == 401
    assert ran == ["vouchnet"]
    await vouchnet.aclose()


async def _read(url: str, credential: str, read):
    """What `read(client)` gives, or the MCPError it raised."""
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {credential}"}) as http:
        async with Client(streamable_http_client(url + PATH, http_client=http)) as client:
            try:
                return await read(client)
            except MCPError as error:
                return error


READS = {
    "resources/read": lambda client: client.read_resource("files://secret"),
    "prompts/get": lambda client: client.get_prompt("secret_prompt"),
}


@on_asyncio
@pytest.mark.parametrize("method", READS)
async def test_an_untrusted_caller_reads_no_resource_and_gets_no_prompt(running, method):
    vouchnet = vouchnet_for(running)
    read: list[str] = []
    _, stranger_credential = running.new_agent(trusted=False)
    _, known_credential = running.new_agent(trusted=True)

    def app(_: str):
        server = _server(vouchnet, [])

        @server.resource("files://secret")
        def secret() -> str:
            read.append("resource")
            return "the secret"

        @server.prompt()
        def secret_prompt() -> str:
            read.append("prompt")
            return "the secret prompt"

        return server.streamable_http_app()

    async with serving(app) as url:
        refused = await _read(url, stranger_credential, READS[method])
        assert isinstance(refused, MCPError) and str(refused).startswith("Refused by vouchnet: tier untrusted")
        assert read == []
        assert "secret" in str(await _read(url, known_credential, READS[method]))
    assert len(read) == 1
    await vouchnet.aclose()


def _files(vouchnet, read: list[str]):
    """A server whose template `files://{folder}/{name}` serves any file (its name, as the server decoded it, goes
    to `read`)."""

    def app(_: str):
        server = _server(vouchnet, [])

        @server.resource("files://{folder}/{name}")
        def file(folder: str, name: str) -> str:
            read.append(name)
            return f"the {name}"

        return server.streamable_http_app()

    return app


@on_asyncio
async def test_a_resource_uri_padded_past_the_checked_length_does_not_hide_a_high_risk_word(running):
    """`secrets` is high-risk: a caller not trusted enough for it may not read it by padding the URI before it, so
    that the first 256 characters, all a check takes, leave it out."""
    vouchnet = vouchnet_for(running, high_risk_tier="verified")
    read: list[str] = []
    _, credential = running.new_agent(trusted=True)
    async with serving(_files(vouchnet, read)) as url:
        for folder in ("docs", "a" * 256):
            refused = await _read(url, credential, lambda client: client.read_resource(f"files://{folder}/secrets"))
            assert isinstance(refused, MCPError) and str(refused).startswith("Refused by vouchnet:"), refused
        assert "the readme" in str(await _read(url, credential, lambda client: client.read_resource(
            "files://docs/readme")))
    assert read == ["readme"]
    await vouchnet.aclose()


@on_asyncio
async def test_a_percent_encoded_resource_uri_does_not_hide_a_high_risk_word(running):
    """The server decodes `%73ecrets` to `secrets` before it looks the file up: the check sees the word too."""
    vouchnet = vouchnet_for(running, high_risk_tier="verified")
    read: list[str] = []
    _, credential = running.new_agent(trusted=True)
    async with serving(_files(vouchnet, read)) as url:
        for uri in ("files://docs/%73ecrets", "files://docs/SECR%45TS"):
            refused = await _read(url, credential, lambda client: client.read_resource(uri))
            assert isinstance(refused, MCPError) and "high-risk" in str(refused), refused
        assert "the read me" in str(await _read(url, credential, lambda client: client.read_resource(
            "files://docs/read%20me")))
    assert read == ["read me"]
    await vouchnet.aclose()


@on_asyncio
async def test_a_call_run_under_a_credential_of_an_org_not_operating_the_agent_is_not_reported_as_it(running):
    """Another accepted org mints a credential naming this org's agent; in observe mode (nothing blocked) its call
    runs, but the agent's first-hand score must not be built, or sunk, by another org's callers."""
    known, known_credential = running.new_agent(trusted=True)
    partner_key = SigningKey.generate()
    with running.client() as client:
        client.vouch(stub_org.did_of(partner_key), 0.5, "org-peer")
    partner = stub_org.StubOrg([partner_key])
    ran: list[str] = []
    with stub_org.serving(partner):  # where it serves is known once it does
        vouchnet = Vouchnet(running.url, policy=TrustPolicy(running.url, listen=False, observe=True), observe=True,
                            issuers=[running.url, partner.url],
                            telemetry=TelemetryCollector(running.url, running.token, flush_interval=3600))
        async with serving(lambda _: _server(vouchnet, ran).streamable_http_app()) as url:
            borrowed = await _call(url, agent_credential(partner_key, known))
            own = await _call(url, known_credential)
    await vouchnet.aclose()
    assert not borrowed.is_error and not own.is_error and len(ran) == 2
    assert running.first_hand_events(known) == GOOD_EVENTS + 1  # the own org's call only


@on_asyncio
async def test_a_call_the_cache_does_not_serve_is_decided_and_logged_once(running, caplog):
    """The telemetry middleware decided again each call whose decision the policy did not keep (a scoped tool's,
    failing open, or expired while it ran) to learn whether to report it: two `trust decision` lines for each
    audited call, the per-call-site log limit used twice as fast, and one more request to the node."""
    vouchnet = vouchnet_for(running, observe=True, cache_ttl=0)  # (nothing kept)
    stranger, credential = running.new_agent(trusted=False)
    asked = []
    check = vouchnet.policy.acheck
    vouchnet.policy.acheck = lambda *args, **kwargs: asked.append(args) or check(*args, **kwargs)
    ran: list[str] = []
    with caplog.at_level(logging.WARNING, logger="vouchnet.client"):
        async with serving(lambda _: _server(vouchnet, ran).streamable_http_app()) as url:
            assert not (await _call(url, credential)).is_error  # observing: it ran
    await vouchnet.aclose()
    assert ran == ["vouchnet"] and asked == [(stranger, "tool_call", "search")]
    said = [r for r in caplog.records if r.getMessage().startswith("trust decision") and stranger in r.getMessage()]
    assert len(said) == 1 and "verdict=block enforced=False" in said[0].getMessage()
    assert running.first_hand_events(stranger) == 1  # reported, as the org's own agent
