"""The A2A SDK on loopback: a server rejects tasks from untrusted senders (TASK_STATE_REJECTED, with the reason)
and serves trusted ones; a client refuses to delegate to an untrusted target, or to a card whose credential is
not its own, and delegates to a trusted one; both report what ran to the node."""

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import httpx
import pytest
from a2a.client import ClientConfig, create_client
from a2a.helpers.proto_helpers import new_text_message
from a2a.server.agent_execution import AgentExecutor
from a2a.server.context import ServerCallContext
from a2a.server.request_handlers import DefaultRequestHandlerV2, RequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types.a2a_pb2 import (
    AgentCapabilities,
    AgentCard,
    AgentExtension,
    AgentCardSignature,
    AgentInterface,
    AgentSkill,
    GetTaskRequest,
    Message,
    Part,
    Role,
    SendMessageRequest,
    Task,
    TaskState,
    TaskStatus,
)
from a2a.utils.errors import InvalidRequestError
from a2a.utils.signing import create_agent_card_signer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nacl.signing import SigningKey
from pydantic_ai import Agent
from pydantic_ai.messages import ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from starlette.applications import Starlette

from node.client import TrustPolicy, UnverifiedAgent, Vouchnet
from node.client.adapters.a2a import (
    CREDENTIAL_EXTENSION,
    TrustedAgentExecutor,
    TrustedRequestHandler,
    TrustInterceptor,
    UntrustedTarget,
    check_card_signature,
    sign_card,
)
from node.client.adapters.pydantic_ai import trust_hooks
from node.credentials import did_url
from node.jwt import b64url
from vouching import did_key

from .loopback import serving
from .running_node import GOOD_EVENTS, on_asyncio, vouchnet_for


class Echo(AgentExecutor):
    def __init__(self) -> None:
        self.heard: list[str] = []

    async def execute(self, context, event_queue):
        self.heard.append(context.get_user_input())
        await event_queue.enqueue_event(new_text_message(f"echo {context.get_user_input()}", role=Role.ROLE_AGENT))

    async def cancel(self, context, event_queue):
        raise NotImplementedError


def _app(card: AgentCard, executor: AgentExecutor, vouchnet: Vouchnet | None = None) -> Starlette:
    handler = DefaultRequestHandlerV2(agent_executor=executor, task_store=InMemoryTaskStore(), agent_card=card)
    if vouchnet is not None:
        handler = TrustedRequestHandler(handler, vouchnet)
    return Starlette(routes=[*create_agent_card_routes(card), *create_jsonrpc_routes(handler, "/")])


def _card(url: str) -> AgentCard:
    return AgentCard(name="echo", description="Echoes", version="1.0",
                     supported_interfaces=[AgentInterface(url=url, protocol_binding="JSONRPC", protocol_version="1.0")],
                     capabilities=AgentCapabilities(streaming=False), default_input_modes=["text/plain"],
                     default_output_modes=["text/plain"],
                     skills=[AgentSkill(id="echo", name="echo", description="Echoes", tags=["echo"])])


async def _send(url: str, credential: str, interceptors=()):
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {credential}"}) as http:
        client = await create_client(url, ClientConfig(httpx_client=http, streaming=False),
                                     interceptors=list(interceptors))
        request = SendMessageRequest(message=Message(message_id="m-1", role=Role.ROLE_USER, parts=[Part(text="hi")]))
        return [event async for event in client.send_message(request)]


@asynccontextmanager
async def untrusted_target(running, vouchnet: Vouchnet,
                           caller_credential: str) -> AsyncIterator[Callable[[], Awaitable[object]]]:
    """An A2A agent the policy does not trust, served; yields what a tool delegating to it (through TrustInterceptor)
    runs: it raises UntrustedTarget."""
    _, credential, key = running.new_agent_with_key(trusted=False)
    async with serving(lambda url: _app(sign_card(_card(url), credential=credential, key=key), Echo())) as url:
        yield lambda: _send(url, caller_credential, [TrustInterceptor(vouchnet)])


@on_asyncio
async def test_the_server_rejects_an_untrusted_sender_and_serves_a_trusted_one(running):
    vouchnet = vouchnet_for(running)
    stranger, stranger_credential = running.new_agent(trusted=False)
    known, known_credential = running.new_agent(trusted=True)
    echo = Echo()
    async with serving(lambda url: _app(_card(url), TrustedAgentExecutor(echo, vouchnet))) as url:
        (rejected,) = await _send(url, stranger_credential)
        assert rejected.task.status.state == TaskState.TASK_STATE_REJECTED
        assert rejected.task.status.message.parts[0].text.startswith("Refused by vouchnet: tier untrusted")
        assert echo.heard == []
        (answer,) = await _send(url, known_credential)
        assert answer.message.parts[0].text == "echo hi" and echo.heard == ["hi"]
        (unsigned,) = await _send(url, "not-a-credential")
        assert unsigned.task.status.state == TaskState.TASK_STATE_REJECTED
        assert "unverified caller" in unsigned.task.status.message.parts[0].text
    await vouchnet.aclose()
    assert running.first_hand_events(known) == GOOD_EVENTS + 1 and running.first_hand_events(stranger) == 0


def _two_searches(messages, info: AgentInfo) -> ModelResponse:
    """A model that calls the search tool twice, then answers with what the tools returned."""
    returned = [part.content for part in messages[-1].parts if isinstance(part, ToolReturnPart)]
    if returned:
        return ModelResponse(parts=[TextPart("; ".join(returned))])
    return ModelResponse(parts=[ToolCallPart("search", {"query": query}) for query in ("a2a", "vouchnet")])


class RunsItsAgent(AgentExecutor):
    """An executor whose agent (a Pydantic AI agent, its tool calls gated by trust_hooks) works the task with the
    executing agent's own credential, as a service runs its agent."""

    def __init__(self, vouchnet: Vouchnet, credential: str) -> None:
        self.credential = credential
        self.agent = Agent(FunctionModel(_two_searches), deps_type=str, capabilities=[trust_hooks(vouchnet)])
        self.agent.tool_plain(lambda query: f"results for {query}", name="search")

    async def execute(self, context, event_queue):
        result = await self.agent.run(context.get_user_input(), deps=self.credential)
        await event_queue.enqueue_event(new_text_message(result.output, role=Role.ROLE_AGENT))

    async def cancel(self, context, event_queue):
        raise NotImplementedError


@on_asyncio
async def test_a_task_is_its_sender_s_one_event_and_the_tool_calls_run_for_it_the_executing_agent_s(running):
    """Found by stop 45's adapter walk, checking for a task counted besides the tool calls run inside it (N+1 events,
    as Agent Framework's runs were): they are different agents' events. TrustedAgentExecutor reports the task once,
    as the sender's (it chose to delegate it); the executor's two tool calls, gated by another adapter with the
    executing agent's credential, are the executing agent's two events, and the task adds none to them."""
    vouchnet = vouchnet_for(running)
    sender, sender_credential = running.new_agent(trusted=True)
    executing, executing_credential, key = running.new_agent_with_key(trusted=True)
    executor = TrustedAgentExecutor(RunsItsAgent(vouchnet, executing_credential), vouchnet)
    async with serving(lambda url: _app(sign_card(_card(url), credential=executing_credential, key=key), executor,
                                        vouchnet)) as url:
        (answer,) = await _send(url, sender_credential)
        assert answer.message.parts[0].text == "results for a2a; results for vouchnet"
    await vouchnet.aclose()
    assert running.first_hand_events(sender) == GOOD_EVENTS + 1
    assert running.first_hand_events(executing) == GOOD_EVENTS + 2


@on_asyncio
async def test_the_client_delegates_only_to_a_trusted_target(running):
    vouchnet = vouchnet_for(running)
    _, caller_credential = running.new_agent(trusted=True)
    for trusted in (False, True):
        agent, credential, key = running.new_agent_with_key(trusted=trusted)
        echo = Echo()
        async with serving(lambda url: _app(sign_card(_card(url), credential=credential, key=key), echo)) as url:
            if trusted:
                (answer,) = await _send(url, caller_credential, [TrustInterceptor(vouchnet)])
                assert answer.message.parts[0].text == "echo hi" and echo.heard == ["hi"]
            else:
                with pytest.raises(UntrustedTarget, match="tier untrusted"):
                    await _send(url, caller_credential, [TrustInterceptor(vouchnet)])
                assert echo.heard == []
    await vouchnet.aclose()
    assert running.first_hand_events(agent) == GOOD_EVENTS + 1  # the delegation to the trusted target


@on_asyncio
async def test_a_guarded_call_that_delegates_to_an_untrusted_target_is_not_reported_as_its_caller_s_failure(running):
    """Found by stop 45's adapter walk: a tool that delegates, refused by TrustInterceptor (UntrustedTarget), was
    reported as its caller's error, so callers sank for the standing of an agent this service chose to delegate to;
    nor is it when the call turns the refusal into an error result, as MCP and LangGraph's ToolNode do."""
    vouchnet = vouchnet_for(running)
    caller, caller_credential = running.new_agent(trusted=True)
    async with untrusted_target(running, vouchnet, caller_credential) as delegate:
        with pytest.raises(UntrustedTarget, match="tier untrusted"):
            await vouchnet.guard(caller_credential, delegate, lambda decision: [], tool="delegate")

        async def delegate_as_a_result() -> str:
            try:
                await delegate()
            except UntrustedTarget as error:
                return f"error: {error}"
            return "done"

        assert (await vouchnet.guard(caller_credential, delegate_as_a_result, lambda decision: "", tool="delegate",
                                     outcome=lambda result: "error" if result.startswith("error") else "ok")
                ).startswith("error: vouchnet refused to delegate")
    await vouchnet.aclose()
    assert running.first_hand_events(caller) == GOOD_EVENTS


@on_asyncio
async def test_a_task_the_target_rejected_is_not_reported_as_its_error(running):
    """The target's vouchnet server declined a caller it did not trust yet (TASK_STATE_REJECTED): the client reported
    that as the target's error, so a target sank at the delegating org for refusing callers it did not know, and two
    new partners' agents, each refused by the other's server, dragged each other down. A decline is not reported; a
    task that ran is, as before."""
    vouchnet = vouchnet_for(running)
    _, stranger_credential = running.new_agent(trusted=False)
    _, known_credential = running.new_agent(trusted=True)
    target, credential, key = running.new_agent_with_key(trusted=True)
    async with serving(lambda url: _app(sign_card(_card(url), credential=credential, key=key),
                                        TrustedAgentExecutor(Echo(), vouchnet))) as url:
        (rejected,) = await _send(url, stranger_credential, [TrustInterceptor(vouchnet)])
        assert rejected.task.status.state == TaskState.TASK_STATE_REJECTED
        vouchnet.telemetry.flush()
        assert running.first_hand_events(target) == GOOD_EVENTS
        (answer,) = await _send(url, known_credential, [TrustInterceptor(vouchnet)])
        assert answer.message.parts[0].text == "echo hi"
    await vouchnet.aclose()
    assert running.first_hand_events(target) == GOOD_EVENTS + 1


class Failing(AgentExecutor):
    """Submits the task, works on it, and fails it, as an executor reports a task it could not do."""

    async def execute(self, context, event_queue):
        await event_queue.enqueue_event(Task(id=context.task_id, context_id=context.context_id,
                                             status=TaskStatus(state=TaskState.TASK_STATE_SUBMITTED)))
        updater = TaskUpdater(event_queue, context.task_id, context.context_id)
        await updater.start_work()
        await updater.failed(new_text_message("could not", role=Role.ROLE_AGENT))

    async def cancel(self, context, event_queue):
        raise NotImplementedError


@on_asyncio
async def test_a_streamed_delegation_whose_task_fails_is_reported_as_the_target_s_error(running):
    """Found by stop 45's adapter walk: a client streaming (ClientConfig's default, as the README's example does, to a
    card that streams) reported the delegation on the stream's first event, the task just submitted, as `ok`, and
    nothing of the task failing after it; sent without streaming, the same task is reported as an error."""
    vouchnet = vouchnet_for(running)
    _, caller_credential = running.new_agent(trusted=True)
    target, credential, key = running.new_agent_with_key(trusted=True)
    card = _card("")
    card.capabilities.streaming = True

    def app(url: str) -> Starlette:
        card.supported_interfaces[0].url = url
        return _app(sign_card(card, credential=credential, key=key), Failing())

    async with serving(app) as url:
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {caller_credential}"}) as http:
            client = await create_client(url, ClientConfig(httpx_client=http),
                                         interceptors=[TrustInterceptor(vouchnet)])
            message = Message(message_id="m-1", role=Role.ROLE_USER, parts=[Part(text="hi")])
            events = [event async for event in client.send_message(SendMessageRequest(message=message))]
    assert [event.WhichOneof("payload") for event in events] == ["task", "status_update", "status_update"]
    assert events[-1].status_update.status.state == TaskState.TASK_STATE_FAILED
    await vouchnet.aclose()
    with running.client() as node:
        (first_hand,) = [part for part in node.score(target)["explanation"]["orgs"] if part["first_hand"]]
    assert first_hand["events"] == GOOD_EVENTS + 1 and first_hand["bad"] > 0


class FailingWhenReleased(AgentExecutor):
    """Submits the task and works on it, then fails it once `release` is set: a task that is still working when a
    client sent with return_immediately gets its answer."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def execute(self, context, event_queue):
        await event_queue.enqueue_event(Task(id=context.task_id, context_id=context.context_id,
                                             status=TaskStatus(state=TaskState.TASK_STATE_SUBMITTED)))
        updater = TaskUpdater(event_queue, context.task_id, context.context_id)
        await updater.start_work()
        await self.release.wait()
        await updater.failed(new_text_message("could not", role=Role.ROLE_AGENT))

    async def cancel(self, context, event_queue):
        raise NotImplementedError


@on_asyncio
async def test_a_polled_delegation_is_reported_when_its_task_ends_not_when_it_is_sent(running):
    """Found by stop 45's adapter walk: a client sending with return_immediately (ClientConfig's polling) got the task
    back submitted or working and reported the delegation `ok` at once, so a task that failed later was the
    target's good event; it is reported when an answer about the task (here get_task, as a polling client asks)
    gives it a final state."""
    vouchnet = vouchnet_for(running)
    _, caller_credential = running.new_agent(trusted=True)
    target, credential, key = running.new_agent_with_key(trusted=True)
    executor = FailingWhenReleased()
    async with serving(lambda url: _app(sign_card(_card(url), credential=credential, key=key), executor)) as url:
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {caller_credential}"}) as http:
            client = await create_client(url, ClientConfig(httpx_client=http, streaming=False, polling=True),
                                         interceptors=[TrustInterceptor(vouchnet)])
            message = Message(message_id="m-1", role=Role.ROLE_USER, parts=[Part(text="hi")])
            (sent,) = [event async for event in client.send_message(SendMessageRequest(message=message))]
            assert sent.task.status.state in (TaskState.TASK_STATE_SUBMITTED, TaskState.TASK_STATE_WORKING)
            vouchnet.telemetry.flush()
            assert running.first_hand_events(target) == GOOD_EVENTS  # nothing yet: the task has not ended
            executor.release.set()
            async with asyncio.timeout(10):
                while (task := await client.get_task(GetTaskRequest(id=sent.task.id))).status.state != (
                        TaskState.TASK_STATE_FAILED):
                    await asyncio.sleep(0.01)  # a polling client's interval
            await client.get_task(GetTaskRequest(id=task.id))  # asked again: reported once
    await vouchnet.aclose()
    with running.client() as node:
        (first_hand,) = [part for part in node.score(target)["explanation"]["orgs"] if part["first_hand"]]
    assert first_hand["events"] == GOOD_EVENTS + 1 and first_hand["bad"] > 0


@on_asyncio
async def test_a_card_carrying_another_agents_credential_is_refused(running):
    """An impostor copies a trusted agent's credential into its own card: it cannot sign as that agent."""
    vouchnet = vouchnet_for(running)
    _, caller_credential = running.new_agent(trusted=True)
    _, stolen_credential = running.new_agent(trusted=True)
    echo = Echo()
    async with serving(lambda url: _app(_impostor_card(_card(url), stolen_credential), echo)) as url:
        with pytest.raises(UntrustedTarget, match="card.signatures"):
            await _send(url, caller_credential, [TrustInterceptor(vouchnet)])
    unsigned = Echo()
    async with serving(lambda url: _app(_card(url), unsigned)) as url:
        with pytest.raises(UntrustedTarget, match="unverified target: credential"):
            await _send(url, caller_credential, [TrustInterceptor(vouchnet)])
    assert echo.heard == unsigned.heard == []


def _impostor_card(card: AgentCard, credential: str) -> AgentCard:
    """`card` carrying another agent's `credential`, signed by a fresh key with the A2A SDK's own signer (sign_card
    refuses a key that is not the credential's agent)."""
    impostor = SigningKey.generate()
    extension = AgentExtension(uri=CREDENTIAL_EXTENSION)
    extension.params.update({"credential": credential})
    card.capabilities.extensions.append(extension)
    header = {"alg": "EdDSA", "kid": did_url(did_key(bytes(impostor.verify_key))), "typ": "JOSE"}
    return create_agent_card_signer(Ed25519PrivateKey.from_private_bytes(bytes(impostor)), header)(card)


def test_a_card_is_signed_only_by_the_agent_its_credential_names(running):
    """A client refused the card later ("card.signatures: none by the agent"); sign_card accepted it."""
    agent, credential, key = running.new_agent_with_key(trusted=False)
    other = SigningKey.generate()
    with pytest.raises(ValueError, match=f"key: {did_key(bytes(other.verify_key))} is not the agent the credential "
                                         f"names, {agent}: sign the card with the key of the agent"):
        sign_card(_card("http://127.0.0.1:9/"), credential=credential, key=other)
    with pytest.raises(ValueError, match="credential: not an agent credential"):
        sign_card(_card("http://127.0.0.1:9/"), credential="not.a.jwt", key=key)
    check_card_signature(sign_card(_card("http://127.0.0.1:9/"), credential=credential, key=key), agent)


def test_a_card_signature_header_nested_past_the_parser_s_depth_is_not_a_signature():
    key = SigningKey.generate()
    agent = did_key(bytes(key.verify_key))
    card = _card("http://127.0.0.1:9/")
    nested = "[" * 5_000 + "]" * 5_000
    card.signatures.append(AgentCardSignature(protected=b64url(nested.encode()), signature=b64url(b"x" * 64)))
    with pytest.raises(UnverifiedAgent, match="card.signatures: none by the agent"):
        check_card_signature(card, agent)


# --- every request a caller can make is gated, not only the message that runs the executor ----------------------


class _Reached:
    """A request handler that records each method vouchnet let through."""

    def __init__(self) -> None:
        self.reached: list[str] = []

    def __getattr__(self, name: str):
        async def method(params, context):
            self.reached.append(name)

        return method


GATED = sorted(name for name, member in inspect.getmembers(RequestHandler)
               if getattr(member, "__isabstractmethod__", False))


@pytest.mark.parametrize("credential", [None, "not-a-credential"], ids=["no credential", "garbage"])
@on_asyncio
async def test_every_request_handler_method_refuses_an_unverified_caller(credential):
    dead = "http://127.0.0.1:9"  # never asked: an unverified caller is refused before the node is
    vouchnet = Vouchnet(dead, policy=TrustPolicy(dead, listen=False))
    inner = _Reached()
    handler = TrustedRequestHandler(inner, vouchnet)
    headers = {"authorization": f"Bearer {credential}"} if credential else {}
    context = ServerCallContext(state={"headers": headers})
    assert len(GATED) == 11
    for name in GATED:
        sends = name.startswith("on_message_send")
        params = SendMessageRequest(message=Message(message_id="m-1", role=Role.ROLE_USER)) if sends else None
        call = getattr(handler, name)(params, context)
        if sends:  # a message is answered as the executor answers it: a rejected task with the reason
            answer = await anext(call) if inspect.isasyncgen(call) else await call
            assert answer.status.state == TaskState.TASK_STATE_REJECTED, name
            assert "unverified caller" in answer.status.message.parts[0].text
        else:
            with pytest.raises(InvalidRequestError, match="Refused by vouchnet: unverified caller") as refused:
                await (anext(call) if inspect.isasyncgen(call) else call)
            assert refused.value.data["verdict"] == "block"
    assert inner.reached == []


async def _rpc(url: str, credential: str, method: str, params: dict) -> dict:
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {credential}", "A2A-Version": "1.0"}) as http:
        answer = await http.post(url + "/", json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
    return answer.json()


class Working(AgentExecutor):
    """Leaves each task it is given working."""

    async def execute(self, context, event_queue):
        await event_queue.enqueue_event(Task(id=context.task_id, context_id=context.context_id,
                                             status=TaskStatus(state=TaskState.TASK_STATE_WORKING)))

    async def cancel(self, context, event_queue):
        raise NotImplementedError


TASK_NOT_FOUND = -32001  # A2A TaskNotFoundError
MESSAGE = {"messageId": "m-1", "role": "ROLE_USER", "parts": [{"text": "work"}]}


def _serving_trusted(vouchnet: Vouchnet) -> AbstractAsyncContextManager[str]:
    """A server of a working agent behind TrustedAgentExecutor and TrustedRequestHandler; its URL."""
    return serving(lambda url: _app(_card(url), TrustedAgentExecutor(Working(), vouchnet), vouchnet))


async def _task(url: str, credential: str) -> str:
    """The id of a task `credential`'s agent hands the server at `url`."""
    sent = await _rpc(url, credential, "SendMessage",
                      {"message": MESSAGE, "configuration": {"returnImmediately": True}})
    return sent["result"]["task"]["id"]


@on_asyncio
async def test_a_message_is_decided_and_logged_once_behind_both_the_handler_and_the_executor(running, caplog):
    """TrustedRequestHandler decided each message, then TrustedAgentExecutor decided its task again: two `trust
    decision` lines for each audited or (observing) blocked message, the per-call-site log limit used twice as fast."""
    vouchnet = vouchnet_for(running, observe=True)
    stranger, credential = running.new_agent(trusted=False)
    asked = []
    check = vouchnet.policy.acheck
    vouchnet.policy.acheck = lambda *args, **kwargs: asked.append(args) or check(*args, **kwargs)
    with caplog.at_level(logging.WARNING, logger="vouchnet.client"):
        async with _serving_trusted(vouchnet) as url:
            sent = await _rpc(url, credential, "SendMessage", {"message": MESSAGE})
    assert sent["result"]["task"]["status"]["state"] == "TASK_STATE_WORKING"  # observing: it ran
    assert asked == [(stranger, "accept_task", None)]
    said = [r for r in caplog.records if r.getMessage().startswith("trust decision") and stranger in r.getMessage()]
    assert len(said) == 1 and "verdict=block enforced=False" in said[0].getMessage()
    await vouchnet.aclose()


@on_asyncio
async def test_a_stranger_can_neither_read_list_nor_cancel_a_trusted_agent_s_task(running):
    vouchnet = vouchnet_for(running)
    _, stranger = running.new_agent(trusted=False)
    _, known = running.new_agent(trusted=True)
    async with _serving_trusted(vouchnet) as url:
        task = await _task(url, known)
        for method, params in [("GetTask", {"id": task}), ("CancelTask", {"id": task}), ("ListTasks", {}),
                               ("SubscribeToTask", {"id": task})]:
            refused = await _rpc(url, stranger, method, params)
            assert refused["error"]["code"] == -32600, method
            assert refused["error"]["message"].startswith("Refused by vouchnet: tier untrusted"), method
        assert (await _rpc(url, known, "GetTask", {"id": task}))["result"]["id"] == task
        rejected = await _rpc(url, stranger, "SendMessage", {"message": MESSAGE})
        assert rejected["result"]["task"]["status"]["state"] == "TASK_STATE_REJECTED"
    await vouchnet.aclose()


@on_asyncio
async def test_a_trusted_agent_can_neither_read_list_nor_cancel_another_agent_s_task(running):
    """Each task is its sender's: the verified caller is the request's user, whom the task store scopes by."""
    vouchnet = vouchnet_for(running)
    _, owner = running.new_agent(trusted=True)
    _, other = running.new_agent(trusted=True)
    async with _serving_trusted(vouchnet) as url:
        task = await _task(url, owner)
        # (SubscribeToTask is refused to everyone here: this server does not stream)
        for method, params in [("GetTask", {"id": task}), ("CancelTask", {"id": task}),
                               ("SendMessage", {"message": {**MESSAGE, "taskId": task}})]:
            assert (await _rpc(url, other, method, params))["error"]["code"] == TASK_NOT_FOUND, method
        assert (await _rpc(url, other, "ListTasks", {}))["result"].get("tasks", []) == []
        assert (await _rpc(url, owner, "GetTask", {"id": task}))["result"]["id"] == task
        assert [found["id"] for found in (await _rpc(url, owner, "ListTasks", {}))["result"]["tasks"]] == [task]
    await vouchnet.aclose()
