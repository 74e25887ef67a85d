"""A2A SDK adapter (`pip install vouchnet[a2a]`, a2a-sdk 1.x). Server: `TrustedRequestHandler` wraps your
RequestHandler and gates every request a caller can make (send, get, list, cancel, subscribe, push configs, the
extended card): a message from a sender that may not delegate to us is answered with a task in
TASK_STATE_REJECTED, the reason as its status message, any other refused request with an InvalidRequestError
naming the reason. `TrustedAgentExecutor` wraps your AgentExecutor: it gates and reports each task it runs.
Client: `TrustInterceptor`, a ClientCallInterceptor that refuses to send a message to an agent that may not be
delegated to (raising `UntrustedTarget`). Both report what ran (the client, not a task its target rejected).

Who the sender is: the bearer token of the request, its agent credential. Who the target is: its agent card
carries its credential (extension CREDENTIAL_EXTENSION) and a JWS signature by the agent's own key over the
card (A2A §agent-card signing, RFC 8785 canonical form), which binds the credential to the card's endpoints: a
credential copied into another card does not verify. Make such a card with `sign_card`.
"""

from __future__ import annotations

import contextvars
import json
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncGenerator
from typing import Any

from a2a.auth.user import User
from a2a.client import A2AClientError, ClientCallInterceptor
from a2a.client.interceptors import AfterArgs, BeforeArgs
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.context import ServerCallContext
from a2a.server.events import Event, EventQueue
from a2a.server.request_handlers import RequestHandler
from a2a.types.a2a_pb2 import (
    AgentCard,
    AgentCardSignature,
    AgentExtension,
    CancelTaskRequest,
    DeleteTaskPushNotificationConfigRequest,
    GetExtendedAgentCardRequest,
    GetTaskPushNotificationConfigRequest,
    GetTaskRequest,
    ListTaskPushNotificationConfigsRequest,
    ListTaskPushNotificationConfigsResponse,
    ListTasksRequest,
    ListTasksResponse,
    Message,
    Part,
    Role,
    SendMessageRequest,
    SendMessageResponse,
    StreamResponse,
    SubscribeToTaskRequest,
    Task,
    TaskPushNotificationConfig,
    TaskState,
    TaskStatus,
)
from a2a.utils.errors import InvalidRequestError
from a2a.utils.signing import _canonicalize_agent_card  # the canonical form A2A card signatures cover
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from vouching import did_key, public_key_from_did

from ...credentials import did_url
from ...jwt import JwtError, b64url, b64url_decode
from ..a2a_trust import ACCEPT_TASK, DELEGATE, A2ATrust
from ..guard import TrustRefusal, Vouchnet, refusal_text, refused
from ..identity import AgentIdentity, UnverifiedAgent
from ..policy import TrustDecision

CREDENTIAL_EXTENSION = "urn:vouchnet:a2a:agent-credential:v1"
STREAMING_METHOD = "send_message_streaming"
DELEGATING_METHODS = frozenset({"send_message", STREAMING_METHOD})
DELEGATION_END_STATES = frozenset({  # a task's terminal and interrupted states, at which A2A ends a message's stream
    TaskState.TASK_STATE_COMPLETED, TaskState.TASK_STATE_FAILED, TaskState.TASK_STATE_CANCELED,
    TaskState.TASK_STATE_REJECTED, TaskState.TASK_STATE_INPUT_REQUIRED, TaskState.TASK_STATE_AUTH_REQUIRED})
FOLLOWING_METHODS = frozenset({"get_task", "cancel_task", "subscribe"})  # a client's answers about a task it sent
AWAITING_LIMIT = 1024  # delegations a TrustInterceptor keeps awaiting their task's end, at most
MAX_TASK_ID = 256  # characters of a task id kept for that
REQUEST_ACTION_PREFIX = "a2a:"  # the policy's action for a request other than a message: a2a:<A2A method name>
_DECIDED = "vouchnet_decision"  # where a message's call context carries TrustedRequestHandler's decision (_decided)
_delegation: contextvars.ContextVar[tuple[TrustDecision, float] | None] = contextvars.ContextVar(
    "vouchnet_delegation", default=None)


# --- cards ------------------------------------------------------------------------------------------------------

def sign_card(card: AgentCard, *, credential: str, key: SigningKey) -> AgentCard:
    """`card` with the agent's credential as an extension and signed by the agent's key (the credential's
    subject); sign last, after every other change to the card. Raises ValueError for a key of another agent: a
    client would refuse the card ("card.signatures: none by the agent")."""
    signer, subject = did_key(bytes(key.verify_key)), _credential_subject(credential)
    if signer != subject:
        raise ValueError(f"key: {signer} is not the agent the credential names, {subject}: sign the card with the "
                         "key of the agent the credential was issued to")
    extension = AgentExtension(uri=CREDENTIAL_EXTENSION, description="vouchnet agent credential (vc+jwt)")
    extension.params.update({"credential": credential})
    card.capabilities.extensions.append(extension)
    header = {"alg": "EdDSA", "kid": did_url(signer), "typ": "JOSE"}
    protected = b64url(json.dumps(header, separators=(",", ":")).encode())
    payload = b64url(_canonicalize_agent_card(card).encode())
    signature = key.sign(f"{protected}.{payload}".encode()).signature
    card.signatures.append(AgentCardSignature(protected=protected, signature=b64url(signature)))
    return card


def _credential_subject(credential: str) -> str:
    """The agent a credential names (its `sub`), read without verifying it: the client verifies."""
    parts = credential.split(".") if isinstance(credential, str) else []
    try:
        claims = json.loads(b64url_decode(parts[1], "payload")) if len(parts) == 3 else None
    except (ValueError, RecursionError):  # JwtError is a ValueError; RecursionError: JSON nested too deep
        claims = None
    if not isinstance(claims, dict) or not isinstance(claims.get("sub"), str):
        raise ValueError("credential: not an agent credential (a JWT whose payload names the agent as its sub)")
    return claims["sub"]


def card_credential(card: AgentCard) -> str | None:
    for extension in card.capabilities.extensions:
        if extension.uri == CREDENTIAL_EXTENSION:
            credential = extension.params.fields.get("credential")
            return credential.string_value if credential is not None else None
    return None


def check_card_signature(card: AgentCard, agent: str) -> None:
    """Raise UnverifiedAgent unless one of the card's signatures is `agent`'s, over the card as it is."""
    key = VerifyKey(public_key_from_did(agent))
    payload = b64url(_canonicalize_agent_card(card).encode())
    for signature in card.signatures:
        try:
            header = json.loads(b64url_decode(signature.protected, "protected"))
            if not isinstance(header, dict) or header.get("kid") != did_url(agent) or header.get("alg") != "EdDSA":
                continue
            key.verify(f"{signature.protected}.{payload}".encode(), b64url_decode(signature.signature, "signature"))
            return
        except (JwtError, ValueError, RecursionError, BadSignatureError):  # RecursionError: JSON nested too deep
            continue
    raise UnverifiedAgent("card.signatures: none by the agent the card's credential names, over this card")


# --- server -------------------------------------------------------------------------------------------------------

def _bearer(call_context: ServerCallContext | None) -> str | None:
    """The request's bearer token, from the headers the HTTP transports put in the call's state (gRPC puts none:
    its callers are unverified, so refused)."""
    headers = call_context.state.get("headers", {}) if call_context else {}
    scheme, _, token = str(headers.get("authorization", "")).partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


class TrustedAgentExecutor(AgentExecutor):
    """Your `executor`, behind vouchnet: tasks from senders the policy blocks are rejected, never executed; each
    task that ran is reported as one event of its sender's (the tool calls run for it are the executing agent's,
    reported by the adapter gating them). It sees only what reaches execute and cancel: put `TrustedRequestHandler`
    in front of the request handler too, or reading, listing and cancelling tasks stay open to anyone."""

    def __init__(self, executor: AgentExecutor, vouchnet: Vouchnet) -> None:
        self.executor, self.vouchnet = executor, vouchnet

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        """Run the task if its sender may `accept_task`: decided here, or taken as TrustedRequestHandler decided it
        for the message (once per message: one decision, one log line)."""
        async def run() -> None:
            await self.executor.execute(context, event_queue)

        decided = context.call_context.state.get(_DECIDED) if context.call_context is not None else None
        refused = await self.vouchnet.guard(_bearer(context.call_context), run, lambda decision: decision,
                                            action=ACCEPT_TASK, category="a2a",
                                            decided=decided if isinstance(decided, TrustDecision) else None)
        if isinstance(refused, TrustDecision):
            await event_queue.enqueue_event(_rejected(context.task_id, context.context_id, context.message, refused))

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        await self.executor.cancel(context, event_queue)


class TrustedRequestHandler(RequestHandler):
    """Your request `handler` (e.g. DefaultRequestHandlerV2), every method behind vouchnet, on every transport.

    A message (send or stream) needs the caller may `accept_task`; it is answered, when refused, with a task in
    TASK_STATE_REJECTED as TrustedAgentExecutor does. Any other request needs the caller may do `a2a:<method>`
    (e.g. `a2a:GetTask`, `a2a:CancelTask`: name one in high_risk_tools to ask more of it); a refusal is an
    InvalidRequestError whose message is the reason, the verdict and reason in its data. Fails closed: a caller
    whose credential does not verify is refused everything. The verified caller is the request's user (its did),
    so each agent reads, lists and cancels its own tasks only. The wrapped handler is `.handler` (to close it)."""

    def __init__(self, handler: RequestHandler, vouchnet: Vouchnet) -> None:
        self.handler, self.vouchnet = handler, vouchnet

    async def on_message_send(self, params: SendMessageRequest, context: ServerCallContext) -> Task | Message:
        decision = await self.vouchnet.authorize(_bearer(context), ACCEPT_TASK)
        if not decision.allowed:
            return _refused_message(params.message, decision)
        return await self.handler.on_message_send(params, _decided(_as_caller(context, decision), decision))

    async def on_message_send_stream(self, params: SendMessageRequest,
                                     context: ServerCallContext) -> AsyncGenerator[Event]:
        decision = await self.vouchnet.authorize(_bearer(context), ACCEPT_TASK)
        if not decision.allowed:
            yield _refused_message(params.message, decision)
            return
        async for event in self.handler.on_message_send_stream(params,
                                                               _decided(_as_caller(context, decision), decision)):
            yield event

    async def on_subscribe_to_task(self, params: SubscribeToTaskRequest,
                                   context: ServerCallContext) -> AsyncGenerator[Event]:
        context = await self._gate("SubscribeToTask", context)
        async for event in self.handler.on_subscribe_to_task(params, context):
            yield event

    async def on_get_task(self, params: GetTaskRequest, context: ServerCallContext) -> Task | None:
        context = await self._gate("GetTask", context)
        return await self.handler.on_get_task(params, context)

    async def on_list_tasks(self, params: ListTasksRequest, context: ServerCallContext) -> ListTasksResponse:
        context = await self._gate("ListTasks", context)
        return await self.handler.on_list_tasks(params, context)

    async def on_cancel_task(self, params: CancelTaskRequest, context: ServerCallContext) -> Task | None:
        context = await self._gate("CancelTask", context)
        return await self.handler.on_cancel_task(params, context)

    async def on_create_task_push_notification_config(self, params: TaskPushNotificationConfig,
                                                      context: ServerCallContext) -> TaskPushNotificationConfig:
        context = await self._gate("CreateTaskPushNotificationConfig", context)
        return await self.handler.on_create_task_push_notification_config(params, context)

    async def on_get_task_push_notification_config(self, params: GetTaskPushNotificationConfigRequest,
                                                   context: ServerCallContext) -> TaskPushNotificationConfig:
        context = await self._gate("GetTaskPushNotificationConfig", context)
        return await self.handler.on_get_task_push_notification_config(params, context)

    async def on_list_task_push_notification_configs(
            self, params: ListTaskPushNotificationConfigsRequest,
            context: ServerCallContext) -> ListTaskPushNotificationConfigsResponse:
        context = await self._gate("ListTaskPushNotificationConfigs", context)
        return await self.handler.on_list_task_push_notification_configs(params, context)

    async def on_delete_task_push_notification_config(self, params: DeleteTaskPushNotificationConfigRequest,
                                                      context: ServerCallContext) -> None:
        context = await self._gate("DeleteTaskPushNotificationConfig", context)
        await self.handler.on_delete_task_push_notification_config(params, context)

    async def on_get_extended_agent_card(self, params: GetExtendedAgentCardRequest,
                                         context: ServerCallContext) -> AgentCard:
        context = await self._gate("GetExtendedAgentCard", context)
        return await self.handler.on_get_extended_agent_card(params, context)

    async def _gate(self, method: str, context: ServerCallContext) -> ServerCallContext:
        """The context to serve the request in (`_as_caller`) if the caller may make it; else raise the refusal
        (InvalidRequestError)."""
        decision = await self.vouchnet.authorize(_bearer(context), f"{REQUEST_ACTION_PREFIX}{method}")
        if not decision.allowed:
            raise InvalidRequestError(refusal_text(decision),
                                      data={"verdict": decision.verdict, "reason": decision.reason})
        return _as_caller(context, decision)


class VerifiedAgent(User):
    """The user of a request whose bearer credential verified: the agent (`user_name`, its did)."""

    def __init__(self, did: str) -> None:
        self.did = did

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def user_name(self) -> str:
        return self.did


def _as_caller(context: ServerCallContext, decision: TrustDecision) -> ServerCallContext:
    """`context` with the verified caller as its user, so that the task store, which keeps tasks by user (a2a's
    resolve_user_scope), keeps each agent's tasks its own: unauthenticated, every caller was the same user '', and
    any agent allowed `a2a:GetTask` read (or cancelled, or listed) every other agent's tasks. A user the service's
    own authentication set is kept, as is the context of a caller that did not verify (observe mode)."""
    if not decision.agent or context.user.is_authenticated:
        return context
    return context.model_copy(update={"user": VerifiedAgent(decision.agent)})


def _decided(context: ServerCallContext, decision: TrustDecision) -> ServerCallContext:
    """`context` carrying the decision made for its message, for TrustedAgentExecutor to run the task on rather than
    decide it again: each audited or blocked (observe mode) message was decided and logged twice, and used the
    per-call-site log limit (node.client._log) twice as fast. A new state dict: the request's own is left as it was."""
    return context.model_copy(update={"state": {**context.state, _DECIDED: decision}})


def _refused_message(message: Message, decision: TrustDecision) -> Task:
    """The answer to a refused message: a rejected task (the message's, or a new one: the request made none)."""
    return _rejected(message.task_id or str(uuid.uuid4()), message.context_id or str(uuid.uuid4()), message,
                     decision)


def _rejected(task_id: str | None, context_id: str | None, message: Message | None,
              decision: TrustDecision) -> Task:
    reason = Message(message_id=f"vouchnet-{task_id}", context_id=context_id, task_id=task_id,
                     role=Role.ROLE_AGENT, parts=[Part(text=refusal_text(decision))])
    history = [message] if message is not None else []
    return Task(id=task_id, context_id=context_id, history=history,
                status=TaskStatus(state=TaskState.TASK_STATE_REJECTED, message=reason))


# --- client -------------------------------------------------------------------------------------------------------

class UntrustedTarget(A2AClientError, TrustRefusal):
    """The interceptor refused to delegate to the target agent; `decision` says why. A guarded call it ends (a tool
    that delegates) is not reported as its caller's failure: the target's standing is no fault of the caller's."""

    def __init__(self, decision: TrustDecision) -> None:
        super().__init__(f"vouchnet refused to delegate to {decision.agent or 'the target'}: {decision.reason}")
        self.decision = decision


class TrustInterceptor(ClientCallInterceptor):
    """Checks the target of every message sent (its card's credential and signature, then the policy)."""

    def __init__(self, vouchnet: Vouchnet) -> None:
        self.vouchnet, self.trust = vouchnet, A2ATrust(vouchnet.policy)
        self._awaiting: OrderedDict[tuple[str | None, str], tuple[TrustDecision, float]] = OrderedDict()

    async def before(self, args: BeforeArgs) -> None:
        if args.method not in DELEGATING_METHODS:
            return
        try:
            target = await self._target(args.agent_card)
        except UnverifiedAgent as error:
            decision = self.vouchnet.policy.unverified(DELEGATE, None, error.public, who="target", detail=str(error))
        else:
            decision = await self.trust.verify_outgoing(target.did, target.org)
        if not decision.allowed:
            raise refused(UntrustedTarget(decision))
        _delegation.set((decision, time.perf_counter()))

    async def after(self, args: AfterArgs) -> None:
        """Report the delegation once an answer says how it went: a send's answer, or the stream's event that ends it
        (a message, or a task or status update in a state a stream ends at). A send answered with its task still
        submitted or working (`return_immediately`, ClientConfig's `polling`) is reported when a later answer about
        that task (get_task, cancel_task, subscribe) gives it such a state; one left before then, or a stream left
        before its last event, is not reported."""
        if args.method in FOLLOWING_METHODS:
            self._followed(args.agent_card, args.result)
            return
        delegation = _delegation.get()
        if delegation is None or args.method not in DELEGATING_METHODS:
            return
        if not _ends_delegation(args.result):
            if args.method == STREAMING_METHOD:
                return
            _delegation.set(None)
            if (task_id := _task_id(args.result)) is not None:
                self._awaiting_end(args.agent_card, task_id, delegation)
            return
        _delegation.set(None)
        self._report(delegation, _state(args.result))

    def _awaiting_end(self, card: AgentCard, task_id: str, delegation: tuple[TrustDecision, float]) -> None:
        """Keep a delegation whose task has not ended for the answer that ends it, the oldest of more than
        AWAITING_LIMIT let go unreported."""
        self._awaiting[(_card_agent(card), task_id)] = delegation
        while len(self._awaiting) > AWAITING_LIMIT:
            self._awaiting.popitem(last=False)

    def _followed(self, card: AgentCard, result: Any) -> None:
        """An answer about a task: report the delegation awaiting it if it says the task has ended."""
        task_id, state = _task_id(result), _state(result)
        if task_id is None or state not in DELEGATION_END_STATES:
            return
        if (delegation := self._awaiting.pop((_card_agent(card), task_id), None)) is not None:
            self._report(delegation, state)

    def _report(self, delegation: tuple[TrustDecision, float], state: int | None) -> None:
        decision, started = delegation
        if (outcome := _outcome(state)) is not None:
            self.vouchnet.report(decision, "a2a", DELEGATE, outcome, started)

    async def _target(self, card: AgentCard) -> AgentIdentity:
        identity = await self.vouchnet.identify(card_credential(card))
        check_card_signature(card, identity.did)
        return identity


def _card_agent(card: AgentCard) -> str | None:
    """The agent a card's credential names (verified with the card when a message was sent to it), keying the
    delegations awaiting their tasks' end by their target as well as the task's id its target chose."""
    try:
        return _credential_subject(card_credential(card) or "")
    except ValueError:
        return None


def _outcome(state: int | None) -> str | None:
    """How a delegation went, as the target's event, by the state its last answer gave its task: `error` for a
    task that failed; None, not reported, for one the target rejected (A2A TASK_STATE_REJECTED: it declined the
    task, as a vouchnet server declines a sender it does not trust yet), which says nothing of how it works:
    reported as an error, it sank the target at the delegating org for refusing a caller it did not know; `ok`
    otherwise."""
    if state == TaskState.TASK_STATE_REJECTED:
        return None
    return "error" if state == TaskState.TASK_STATE_FAILED else "ok"


def _payload(result: Any) -> str | None:
    """Which of task, message, status_update and artifact_update a send's answer or a stream's event is."""
    return result.WhichOneof("payload") if isinstance(result, (SendMessageResponse, StreamResponse)) else None


def _task_id(result: Any) -> str | None:
    """The id of the task an answer is about (a task, or a stream's status update), if it is one to keep: at most
    MAX_TASK_ID characters."""
    payload = _payload(result)
    task_id = (result.id if isinstance(result, Task) else result.task.id if payload == "task"
               else result.status_update.task_id if payload == "status_update" else None)
    return task_id if task_id and len(task_id) <= MAX_TASK_ID else None


def _state(result: Any) -> int | None:
    """The task state an answer carries (a task's, or a stream's status update's), else None."""
    if isinstance(result, Task):
        return result.status.state
    payload = _payload(result)
    if payload == "task":
        return result.task.status.state
    return result.status_update.status.state if payload == "status_update" else None


def _ends_delegation(result: Any) -> bool:
    """Whether an answer to a message says how the delegation went (a message, or a task in a terminal or
    interrupted state); before it, the task was submitted or is working, which says nothing yet of how it went."""
    return _payload(result) == "message" or _state(result) in DELEGATION_END_STATES
