"""`vouchnet run`: one trio root nursery holding the libp2p host, gossip, sync, witnessing, peers, telemetry, the
trust engine and the local API (DESIGN.md §1, §8).

Shutdown is cancelling that nursery (SIGINT or SIGTERM does it): every service is a task of it, so nothing is
left behind, and every ledger append is one transaction, so nothing is left half-written.

The host listens from the start of _opened, and peers connect at once (a peer redialling a node that restarts), but
the sync service sets its handler only once the trust engine has replayed the store (_caught_up): 0.04 s for 500
records, 0.25 s for 10^5 from engine.snapshot and 4.5 s without one (measured on a 2-CPU machine). A sync stream
opened meanwhile was refused, and the peer's host remembered the refusal for the connection (gossip.host quirk 23),
so the peer left the node out of its rounds, gap fetches and start-up catch-up until the connection closed; the host
is told the node serves /vouchnet/sync/1 and /2 (HostConfig.served_protocols), so such a stream waits for the handler.
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import logging
import math
import signal
import urllib.parse
from collections.abc import AsyncIterator, Callable, Collection, Iterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, Literal

import trio
from nacl.signing import SigningKey, VerifyKey

from gossip.host import (GOSSIPSUB_PROTOCOLS, KEEPALIVE_TIMEOUT_S, MAX_PING_ANSWERS_PER_S, WRITE_TIMEOUT_S, Host,
                         HostConfig, HostError, ListenError, open_host, peer_org)
from gossip.peers import KnownPeer, PeerManager, split_peer_addr
from gossip.own_records import (MAX_CONFLICT_ROWS, MAX_CONFLICTS, MAX_UNLISTED_SEEN, OWN_RECORDS_FILE,
                                OwnRecords)
from gossip.replica import Replica, RotationTakenBack
from gossip.service import GossipService
from gossip.store import INDEX_FILE, RecordStore, StoreError
from gossip.sync_messages import SYNC_PROTOCOL, SYNC_PROTOCOLS
from gossip.sync_service import SyncService
from gossip.witnessing import SavedCheckpointMismatch, SavedCheckpointUnusable, Witnessing
from ledger import Checkpoint, LedgerError, StoredHashError
from ledger.witness import WitnessStoreError
from ledger.writes_under_way import close_named
from vouching import OrgBody, did_key
from vouching.policy import DEFAULT_HIGH_RISK_TOOLS, Policy

from .address_file import published_api_url
from .api import NodeView, create_app
from .api.errors import count_storage_refusals
from .api.hosts import FORBIDDEN_HOST, HostGuard
from .api.origins import FORBIDDEN_ORIGIN, OriginGuard
from .api.refusals import Refused, count_answers, refusals_counter
from .api.http_server import DROPS, MAX_CONNECTIONS, serve_on
from .api.scores import CHECK_PATH, ScoreFastPath, scores_router
from .config import CONFIG_FILE, NodeConfig, is_loopback
from .credential_registry import RegistryError
from .data_formats import DataFormatError, check_formats
from .data_lock import DataDirBusy, locked_data_dir
from .digests import DigestStateError
from .health import add_health_gauges
from .idempotency import IdempotencyStore, IdempotencyStoreError
from .ingest_api import BODY_LIMITS, OPEN_WRITE_PATHS
from .keys import TokenFile, load_signing_key
from .audit_log import wall_clock_ms
from .metrics import LATENCY_BUCKETS, Registry, record_latency_listener
from .rotation import NEXT_KEY_FILE, finish_interrupted_rotation, unpublished_link
from .stop_deadline import StopDeadline, armed_by_signals
from .store_manifest import STORES, StoreLost, check_listed, list_present
from .taken_back_rotation import TakenBackError, keep, kept, refusal
from .telemetry import Telemetry
from .trust import TrustService

log = logging.getLogger("vouchnet.node")
SHUTDOWN_SECONDS = 2.0
_WILDCARDS = ("/ip4/0.0.0.0/", "/ip6/::/")
# How the start's catch-up sync went (_caught_up); "pending" until it has; "timed_out" (no peer it dials completed a
# round), "unreachable" (none could be connected for a sync, those connected having refused the sync protocol:
# PeerManager.out_of_reach) and "unheld" (those that did hold none of the org's records) turn "done" once a later
# round ends it as it would have ended the start's, and "timed_out" and "unreachable" turn "unheld" at a later round
# that proves nothing (_catch_up_late)
StartupSync = Literal["pending", "no_peers", "done", "timed_out", "unreachable", "unheld"]
# The outcomes of a start's catch-up that no round with a peer it dials answered: slow, or none could be connected
NO_ROUND_ANSWERED = ("timed_out", "unreachable")
# The peers an "unreachable" catch-up's WARNING names, at most (GET /v1/peers lists them all)
NAMED_UNREACHABLE = 5
# py-libp2p 0.8.1 sends an IDONTWANT per message to every /meshsub/1.2.0 peer: 15-60% more CPU per record for
# batched gossip (measured in benchmarks/gossip_service.py), and go, js and rust peers negotiate 1.1 anyway.
GOSSIP_PROTOCOLS = ("/meshsub/1.1.0",)
assert set(GOSSIP_PROTOCOLS) <= set(GOSSIPSUB_PROTOCOLS)


def _two_figures(seconds: float) -> str:
    """`seconds` to two significant figures, whole seconds kept and no exponent: 0.027, 4.5, 12, 123; 9.96 as 10 (its
    figures counted once rounded), 0 as 0."""
    rounded = float(f"{seconds:.2g}")
    decimals = max(0, 1 - math.floor(math.log10(rounded))) if rounded > 0 else 0
    return f"{seconds:.{decimals}f}"


@dataclass(frozen=True)
class CatchUp:
    """How a catch-up sync went (`state`), and how many of the peers the node dials completed a round that proved
    nothing (`unproven`, for "unheld"): their heads named none of the org's keys, as they hold none of its records (the
    org is outside their horizons, DESIGN §5), or named a head of one that they then did not serve."""

    state: StartupSync
    unproven: int = 0
    new_org: bool = False  # the data directory held none of the org's records as it began (_dialled_rounds)
    unreachable: tuple[KnownPeer, ...] = ()  # for "unreachable": the peers it dials, each with its last dial's error
    # (or gossip.peers.NO_SYNC, for one connected that refused the sync protocol)
    waited: float = 0.0  # seconds it took (for "unreachable", less than [p2p] startup_sync_seconds)

    @property
    def signs_unchecked(self) -> bool:
        """Whether the node signs (or would) without a peer having shown what the org signed elsewhere."""
        return self.state in (*NO_ROUND_ANSWERED, "unheld")

    def why(self, seconds: float) -> str:
        """Why a catch-up that `signs_unchecked` did not end (`seconds`: how long it could wait, [p2p]
        startup_sync_seconds): what the operator reads first. An "unreachable" one says how long it waited."""
        if self.state == "unreachable":
            named = "; ".join(f"{p.peer_id} ({p.source}): {p.last_error}" for p in self.unreachable[:NAMED_UNREACHABLE])
            more = len(self.unreachable) - NAMED_UNREACHABLE
            return (f"no peer it dials could be connected for a catch-up sync: it stopped waiting after "
                    f"{_two_figures(self.waited)} s of the {seconds:g} s it may wait ([p2p] startup_sync_seconds), as "
                    "each one's last dial failed or found it on another network, or it is connected but refused "
                    f"{SYNC_PROTOCOL}, and none is dialled again before then ({named}"
                    + (f"; and {more} more: GET /v1/peers" if more > 0 else "") + ")")
        if not self.unproven:
            return f"no peer it dials completed a catch-up sync within {seconds:g} s ([p2p] startup_sync_seconds)"
        many = self.unproven > 1
        return (f"{self.unproven} peer{'s' if many else ''} it dials completed a catch-up sync within {seconds:g} s "
                f"([p2p] startup_sync_seconds) but {'hold' if many else 'holds'} none of this org's records (a node "
                "stores only the records of orgs inside its horizon: within its max_hops of its trust roots by "
                f"vouches) or did not serve those {'they' if many else 'it'} named, so none could show what the org "
                "signed elsewhere")


# How an operator gets a catch-up that can end: what CatchUp.why says next when peers hold none of the org's records.
HOLDER_HINT = "a node whose org vouches for this one holds its records: add one to [p2p] bootstrap"
# Seconds a catch-up, once a round proved the org's records in (_dialled_rounds), waits at most for the rounds of the
# other peers it dials that are connected: a stale or hostile holder answering first with an older head would
# otherwise have the node sign at a seq the org used since, which a holder answering a second later shows.
SETTLE_SECONDS = 5.0


class StartupError(Exception):
    """The node cannot start: an address it must listen on is taken or not allowed, or a file in its data directory
    is not what it should be; the message names which."""


@dataclass
class Node:
    """A running node: what the API (node.api.NodeView) and tests see of it."""

    config: NodeConfig
    key: SigningKey
    token_file: TokenFile
    replica: Replica
    host: Host
    gossip: GossipService
    sync: SyncService
    witnessing: Witnessing
    peer_manager: PeerManager
    telemetry: Telemetry
    trust: TrustService
    metrics: Registry
    api_url: str = ""
    startup_sync: StartupSync = "pending"

    @property
    def did(self) -> str:
        return self.replica.did

    @property
    def token(self) -> str | None:
        return self.token_file.current()

    @property
    def network(self) -> str:
        return self.config.network

    @property
    def idempotency(self) -> IdempotencyStore:
        return self.telemetry.idempotency

    def info(self) -> dict[str, Any]:
        store = self.replica.store
        return {
            "name": self.config.name,
            "peer_id": self.host.peer_id,
            "listen": self.host.listen_addrs,
            "api": self.api_url,
            "ledger": {"size": store.size, "root": store.ledger.root().hex()},
            "log": self.witnessing.log_state(),
            "startup_sync": self.startup_sync,
            "roots": sorted(self.config.roots),
            "rejected": dict(self.gossip.stats().gate.rejected),
        }

    def peers(self) -> list[dict[str, Any]]:
        """`serves_sync` turns false once a peer refuses /vouchnet/sync/1 (a gossip-only peer): it is then neither
        synced with nor asked to cosign until it reconnects."""
        return [
            {"peer_id": p, "org": peer_org(p), "score": self.host.peer_score(p),
             "serves_sync": not self.host.refused(p, SYNC_PROTOCOL)}
            for p in self.host.connected_peers()
        ]

    def known_peers(self, *, after: str | None, limit: int) -> list[KnownPeer]:
        return self.peer_manager.known(after=after, limit=limit)

    def checkpoint(self) -> bytes | None:
        return self.witnessing.checkpoint_note()

    def published_checkpoint(self) -> Checkpoint | None:
        return self.witnessing.published_checkpoint()

    def blocked_peers(self) -> list[str]:
        return self.host.blocked

    async def set_blocked_peers(self, peer_ids: list[str]) -> None:
        """Refuse exactly these peers from now on; the ones no longer blocked are dialled again at once."""
        await self.peer_manager.set_blocked(peer_ids)


def announce_addrs(config: NodeConfig, host: Host) -> list[str]:
    """Where other orgs should dial us: the configured announce list, else our non-wildcard listen addresses."""
    if config.announce:
        return list(config.announce)
    bound = [split_peer_addr(a)[0] for a in host.listen_addrs]
    return [a for a in bound if not a.startswith(_WILDCARDS)]


def publish_org_record(replica: Replica, *, name: str, network: str, addrs: list[str]) -> None:
    """Issue our `org` record if we have none or it no longer says where and who we are (peer exchange)."""
    ours = replica.store.latest_org(replica.did)
    wanted = OrgBody(name, network, tuple(addrs), None)
    if ours is None or dataclasses.replace(ours, prior=None) != wanted:  # (a rotated key's first names its prior)
        replica.issue("org", wanted.to_wire())


def _policy(config: NodeConfig) -> Policy:
    tools = DEFAULT_HIGH_RISK_TOOLS if config.high_risk_tools is None else frozenset(config.high_risk_tools)
    return Policy(min_score=config.min_score, high_risk_tools=tools)


@asynccontextmanager
async def _opened(config: NodeConfig) -> AsyncIterator[Node]:
    """Open the node's files and host and build its services (not yet running); close all on exit."""
    limits = config.limits
    metrics = Registry()
    async with AsyncExitStack() as stack:
        try:
            stack.enter_context(locked_data_dir(config.data_dir))
        except DataDirBusy as error:
            raise StartupError(str(error)) from None
        try:
            check_listed(config.data_dir)
        except StoreLost as error:
            raise StartupError(str(error)) from None
        try:
            rotation = finish_interrupted_rotation(config)
        except DataDirBusy as error:
            raise StartupError(f"key: {error}") from None
        if rotation is not None:
            log.info("finished an interrupted key rotation",
                     extra={"fields": {"old": rotation.old, "new": rotation.new}})
        key = load_signing_key(config)
        try:
            rotation_kept = kept(config, did_key(bytes(key.verify_key)))
        except TakenBackError as error:
            raise StartupError(f"key: {error}") from None
        if rotation_kept is not None:  # taken back at an earlier start, and not yet adopted or contested
            raise StartupError(refusal(config, rotation_kept))
        token_file = TokenFile(config.token_path)
        try:
            check_formats(config.data_dir)
        except DataFormatError as error:
            raise StartupError(str(error)) from None
        try:
            store = RecordStore.open(config.data_dir)
        except StoredHashError as error:
            raise StartupError(f"records: {error}: {_repair_hint(config)}") from None
        except (LedgerError, StoreError) as error:
            raise StartupError(f"records: {error}") from None
        stack.callback(close_named, INDEX_FILE, store.close)  # (its index committed, then records.ledger closed)
        try:
            own_records = OwnRecords.open(config.data_dir, wall_clock_ms, store)
        except StoreError as error:
            raise StartupError(f"records: {error}") from None
        stack.callback(close_named, OWN_RECORDS_FILE, own_records.close)
        replica = Replica(key, store, roots=config.roots, max_hops=config.max_hops, held_limit=limits.held_records,
                          own_records=own_records, track_stored=False)
        for _ in replica.tracking():
            await trio.lowlevel.checkpoint()  # a signal stops a long take-in of the stored vouches
        if (successor := replica.succession.named_next(replica.did)) is not None:
            raise StartupError(f"{config.key_path}: this key was retired by a rotation to {successor}, whose key "
                               f"should be in {NEXT_KEY_FILE}; restore it there and start again")
        host_config = HostConfig(gossip_protocols=GOSSIP_PROTOCOLS, close_timeout=SHUTDOWN_SECONDS / 4,
                                 max_connections=max(limits.max_peers * 2, 8), served_protocols=SYNC_PROTOCOLS)
        try:
            host = await stack.enter_async_context(open_host(bytes(key), list(config.listen), config=host_config))
        except ListenError as error:
            raise StartupError(f"p2p: {error}: {_free_it('[p2p] listen', config)}") from None
        except HostError as error:
            raise StartupError(f"p2p: {error}") from None
        # Before the stores open (marking one from before formats): a saved checkpoint it refuses changes nothing.
        try:
            witnessing = Witnessing(host, replica, network=config.network, state_dir=config.data_dir,
                                    interval=config.checkpoint_interval,
                                    gossip_interval=config.checkpoint_gossip_interval, witnesses=config.witnesses,
                                    reannounce_interval=config.sync_interval, fork_window=config.fork_window,
                                    peer_checkpoints_per_second=limits.peer_checkpoints_per_second)
        except SavedCheckpointMismatch as error:
            raise StartupError(f"records: {error}: {_repair_hint(config)}") from None
        except SavedCheckpointUnusable as error:
            raise StartupError(f"records: {error}") from None
        try:
            telemetry = Telemetry.open(config, key=key, replica=replica, metrics=metrics, rebuild=False)
            stack.callback(telemetry.close)
            for _ in telemetry.digester.rebuilding():
                await trio.lowlevel.checkpoint()  # a signal stops a long read of the undigested entries
        except RegistryError as error:
            raise StartupError(f"credentials: {error}") from None
        except (LedgerError, DigestStateError, IdempotencyStoreError) as error:
            raise StartupError(f"telemetry: {error}") from None
        trust = TrustService(replica, roots=config.roots, policy=_policy(config), broadcaster=telemetry.broadcaster,
                             metrics=metrics, recompute_interval=config.recompute_seconds,
                             epoch_ms=telemetry.digester.epoch_ms, snapshot_dir=config.data_dir)
        await trust.load_snapshot()
        try:
            for capturing in trust.replaying(telemetry.digester.undigested(), telemetry.digester.state.raw_reader(),
                                             reread=telemetry.digester.reread,
                                             ingest_lock=telemetry.ingestor.write_lock):
                if capturing is None:
                    await trio.lowlevel.checkpoint()  # a signal stops a long replay (run_until_signalled)
                else:  # nothing else uses the engine until the replay is done
                    await trio.to_thread.run_sync(capturing.run, abandon_on_cancel=True)
        except (DigestStateError, LedgerError) as error:  # (a damaged raw_counts row; a read that fails)
            raise StartupError(f"telemetry: {error}") from None
        await trust.recompute_replayed()  # in a worker thread: a signal need not wait for it
        replica.listeners.append(trust.on_records)
        replica.returned_listeners.append(telemetry.digester.on_returned)  # (keeping raw counts trust may read)
        replica.returned_listeners.append(functools.partial(trust.on_returned, raw=telemetry.digester.state.raw,
                                                            counts_entries=telemetry.digester.counts_entries))
        replica.listeners.append(record_latency_listener(
            metrics.histogram("record_latency_seconds", "Seconds from a record's issue to its acceptance here",
                              LATENCY_BUCKETS), replica.did, wall_clock_ms))
        telemetry.ingestor.listeners.append(trust.on_events)
        telemetry.ingestor.org_not_agent = trust.org_not_agent
        sync = SyncService(host, replica, network=config.network, limits=limits, interval=config.sync_interval,
                           round_peers=config.sync_peers, cosigner=witnessing.cosign,
                           checkpoints=witnessing.held_checkpoint,
                           verify_processes=config.verify_processes)
        witnessing.log_listeners.append(sync.heard_log)
        witnessing.network_listeners.append(sync.heard_other_network)
        gossip = GossipService(host, replica, network=config.network, limits=limits, on_gaps=sync.request_gaps)
        node = Node(
            config=config, key=key, token_file=token_file, replica=replica, host=host, gossip=gossip, sync=sync,
            witnessing=witnessing, telemetry=telemetry, trust=trust, metrics=metrics,
            peer_manager=PeerManager(host, replica, network=config.network, bootstrap=config.bootstrap,
                                     max_peers=limits.max_peers, dial_private=config.dial_private,
                                     own_addrs=announce_addrs(config, host)),
        )
        sync.network_listeners.append(node.peer_manager.other_network)
        sync.round_over_listeners.append(node.peer_manager.round_over)  # (a peer refusing sync is out of its reach)
        sync.dialled = node.peer_manager.keeps  # (the gap queue's shares, and whom a gap fetch asks first)
        sync.peer_group = node.peer_manager.group_of  # (the gap queue's shares of the keys one org vouched in)
        sync.same_network_listeners += [node.peer_manager.same_network, witnessing.same_network]
        metrics.add_stats("gossip", gossip.stats, gauges=("queued_records",))
        metrics.add_stats("sync", sync.stats)
        metrics.add_stats("witness", witnessing.stats, gauges=("gossip_period_seconds", "log_diverged", "log_behind",
                                                                "published_cosignatures"))
        witnessing.witness_group = trust.witness_group  # (whom the gauge below counts, and who is asked first)
        metrics.collect("witness_published_independent_groups", "Independence groups of the orgs this node gives an "
                        "independent witness's weight (standing at least witness_min_weight, as log verify asks; not "
                        "flagged, not its own org's group) whose cosignatures are on its latest published "
                        "checkpoint: 0 while peers are connected means no witness it counts on answers",
                        witnessing.independent_cosigners)
        metrics.collect("peers", "Connected peers", lambda: len(host.connected_peers()))
        metrics.collect("peer_dials_total", "Addresses the node dialled to connect to a peer it keeps connected (its "
                        "bootstrap peers, orgs' `org` records)", lambda: node.peer_manager.dials, kind="counter")
        metrics.collect("peer_dial_failures_total", "Of the addresses dialled, those that failed (unreachable, "
                        "refused, timed out, a name that does not resolve, another node there): GET /v1/peers says "
                        "why each peer's last failed; a connection closing soon after it opened is not counted",
                        lambda: node.peer_manager.dial_failures, kind="counter")
        metrics.collect("inbound_idle_closed_total", f"Inbound connections closed as not put to use within "
                        f"{host_config.idle_inbound_grace:g} s (no gossip subscription, no vouchnet stream)",
                        lambda: host.stats().idle_inbound_closed, kind="counter")
        metrics.collect("inbound_handshakes_aborted_total", "Inbound connections closed in their handshake, their "
                        "place given to a peer dialling in when every place was taken",
                        lambda: host.stats().handshakes_aborted, kind="counter")
        metrics.collect("p2p_hostile_input_total", "Malformed or abusive input from peers (logged, each with the "
                        "peer): undecodable gossip, data past a yamux window (disconnected), too many streams at once, "
                        f"more than {MAX_PING_ANSWERS_PER_S} pings a second",
                        lambda: host.stats().hostile_input, kind="counter")
        metrics.collect("p2p_control_dropped_total", "Gossip control entries dropped unread: as go-libp2p drops "
                        "them (for topics not joined, past 10 IHAVEs and 5,000 message ids an RPC, IHAVEs past a "
                        "peer's 10 RPCs or 5,000 ids asked of it a heartbeat, an id repeated in an RPC, asking for a "
                        "message a fourth time, or IHAVEs and IWANTs of a peer scoring below the gossip threshold), "
                        "and IHAVE, IWANT and IDONTWANT ids longer than any message id (128 bytes) or "
                        "that py-libp2p cannot read",
                        lambda: host.stats().control_dropped, kind="counter")
        metrics.collect("p2p_unresponsive_closed_total", "Connections closed as their peer stopped answering, by "
                        f"reason: keepalive (a ping unanswered for {KEEPALIVE_TIMEOUT_S:g} s, the peer sending nothing "
                        "meanwhile: gone without a word, its machine off or a NAT's mapping dropped), write_timeout "
                        f"(no frame taken for {WRITE_TIMEOUT_S:g} s: the peer reads nothing)",
                        lambda: host.stats().unresponsive_closed, kind="counter", labels=("reason",))
        for stat, what in (  # what became of the gossip messages peers sent, and of the node's meshes
                ("delivered", "Gossip messages accepted and handed on to the node's records or checkpoints service "
                 "(the node's own included)"),
                ("rejected", "Gossip messages the node's validator rejected, each lowering its forwarder's peer score "
                 "(of records, vouchnet_gossip_gate_rejected_total says why)"),
                ("ignored", "Gossip messages the node's validator dropped without penalising their forwarder "
                 "(of records, vouchnet_gossip_gate_ignored_total says why)"),
                ("oversized", f"Gossip messages rejected unread as over {host_config.max_message_size} bytes of "
                 "data, each lowering its forwarder's peer score"),
                ("mesh_prunes", "PRUNEs the node sent to keep a gossip mesh within its upper bound (D_hi), each "
                 "backing off from the pruned peer"),
                ("pending_dropped", "Gossip messages queued for a connected peer not known to join their topic, "
                 "dropped past 100 a peer: growing, a peer that never joins the node's topics (another network's "
                 "node, or one misconfigured)"),
                # what peers exhausting or stalling the node across connections, or scoring too low, met
                ("streams_over_budget", "Streams peers opened, reset as the node's budget of streams open across "
                 f"connections was used up (strangers may use {1 - host_config.budget_reserve:.0%} of it)"),
                ("connections_over_budget", "Connections of strangers closed as the node's budget of bytes buffered "
                 "across connections was used up (the one buffering the most first)"),
                ("graylisted_rpcs", "Gossip RPCs ignored unread, their peer scoring below the graylist threshold "
                 "(GossipSub v1.1)"),
                ("stalled_peers_disconnected", "Peers disconnected as their send queue stayed over half full for "
                 f"{host_config.publish_stall_timeout:g} s, holding up what the node publishes (they catch up "
                 "through sync)"),
                # where the node itself fell behind, or failed, taking in what its peers sent
                ("dropped_slow_subscriber", "Gossip messages dropped undelivered as the node's gossip service was "
                 f"{host_config.receive_buffer} messages behind (sync fetches their records later)"),
                ("validator_errors", "Gossip messages rejected as the node's validator raised on them (a bug, "
                 "logged with its traceback: peers' valid records are refused)"),
                ("peer_events_dropped", "Peer connections and disconnections a service of the node (peer manager, "
                 f"sync) fell {host_config.receive_buffer} events behind on: in their place it was told, as it "
                 "caught up, who had come and who had left meanwhile")):
            metrics.collect(f"p2p_{stat}_total", what, functools.partial(_host_stat, host, stat), kind="counter")
        metrics.collect("ledger_size", "Records in the records ledger", lambda: store.size)
        metrics.collect("held_records", "Records waiting for a missing predecessor", lambda: replica.held_count)
        metrics.collect("listener_errors", "Accepted batches a part of the node (scores, say) failed to take in: "
                        "logged with the error", lambda: replica.listener_errors)
        metrics.collect("own_records_from_peers", "Records of this org's key that came from peers (a restore from an "
                        "older copy, or a stolen key) and that its operator has not acknowledged (`vouchnet "
                        "own-records acknowledge`); kept across restarts", lambda: replica.own_from_peers)
        metrics.collect("own_records_conflicting", "Of those, records that conflict with one the node holds at their "
                        "seq: the key signed twice at one seq, so someone else holds it",
                        lambda: replica.own_records.unacknowledged_conflicts)
        metrics.collect("own_records_conflicts_unlisted_total", "Records of this org's keys conflicting with one the "
                        f"node holds that are not listed: those the list had no room for (it keeps the bytes of "
                        f"{MAX_CONFLICTS:,}, making room only with acknowledged ones), and those dropped from it to "
                        f"make room (past {MAX_CONFLICT_ROWS:,} rows, the oldest acknowledged): counted once each (one "
                        f"sent again after {MAX_UNLISTED_SEEN:,} others counts again), across restarts, and logged, "
                        "not kept", lambda: replica.own_records.unlisted_conflicts, kind="counter")
        add_health_gauges(metrics, replica=replica, token_file=token_file, data_dir=config.data_dir)
        metrics.collect("startup_sync_timed_out", "1 when no peer it dials completed a catch-up sync within [p2p] "
                        "startup_sync_seconds of the start (slow, or none could be connected for a sync: GET "
                        "/v1/node's startup_sync is timed_out or unreachable), until a later round with one ends it "
                        "as it would have ended the start's (or proves nothing: unheld): the node signs without it (if "
                        "its data directory was restored from an older copy, the org may sign twice at one seq)",
                        lambda: int(node.startup_sync in NO_ROUND_ANSWERED))
        metrics.collect("startup_sync_unheld", "1 when the peers it dials that completed a catch-up sync within [p2p] "
                        "startup_sync_seconds of the start, or after it timed out, hold none of the org's records, "
                        "until a round with one that holds them has brought them in: the node signs without a check "
                        "(as when timed out), as is usual for an org no other org vouches for yet; GET /v1/node's "
                        "startup_sync",
                        lambda: int(node.startup_sync == "unheld"))
        yield node


def _host_stat(host: Host, name: str) -> int:
    """One of the host's counters (gossip.host.HostStats), by name."""
    return int(getattr(host.stats(), name))


def _repair_hint(config: NodeConfig) -> str:
    """What to do about a records ledger storing a hash other than its entries give (DESIGN §4)."""
    return (f"run `vouchnet log repair --dir {config.data_dir}`, which rebuilds the stored hashes from the entries "
            "once they hash to the node's last checkpoint, or says they are damaged")


def api_app(node: NodeView, telemetry: Telemetry, trust: TrustService, key: SigningKey, *,
            retired_keys: Sequence[tuple[VerifyKey, int]], traces_need_token: bool, refused: Refused,
            served_url: str | None = None, hosts: Collection[str] = (), any_host: bool = False) -> HostGuard:
    """The local API as the node serves it (DESIGN.md §8): the records and log endpoints of `node`, telemetry,
    credentials and scores, behind ScoreFastPath, behind OriginGuard and HostGuard (answering to `hosts`, to any
    host if `any_host`, and to `served_url`'s origin and host); checks need no token, nor traces unless
    `traces_need_token`; its 503 `storage` answers counted in telemetry's metrics, and its refusals (4xx, the
    guards' too) told to `refused` (node.api.refusals.refusals_counter's, which the HTTP server is given too).
    `retired_keys` and `served_url`: as Telemetry.routers takes them. It reads no store, and so can be made
    in a worker thread (serve_node does)."""
    app = create_app(
        node,
        routers=[*telemetry.routers(retired_keys, served_url, refused=refused), scores_router(trust, key)],
        body_limits=BODY_LIMITS,
        open_paths=[CHECK_PATH, *([] if traces_need_token else OPEN_WRITE_PATHS)],
        forbidden=[FORBIDDEN_HOST, FORBIDDEN_ORIGIN],
    )
    count_storage_refusals(app, telemetry.metrics)
    count_answers(app, refused)
    served_host = urllib.parse.urlsplit(served_url).hostname if served_url else None
    return HostGuard(OriginGuard(ScoreFastPath(app, trust, key), origins=[served_url] if served_url else [],
                                 refused=refused),
                     names=[*hosts, *([served_host] if served_host else [])], any_host=any_host, refused=refused)


async def serve_node(config: NodeConfig, *, task_status: trio.TaskStatus[Node] = trio.TASK_STATUS_IGNORED) -> None:
    """Run a node until cancelled; `task_status.started(node)` once every service is up and the API listens."""
    # api.url goes once the services have stopped, before _opened releases the data directory's lock to the next node
    async with _opened(config) as node, AsyncExitStack() as published, trio.open_nursery() as nursery:
        # The org's revokes, for the status lists of its vouches, read off the loop while the rest starts.
        await nursery.start(node.telemetry.vouch_revocations.run,
                            (node.did, *node.replica.succession.earlier(node.did)))
        # The API's port first: taken, the node stops before its catch-up (up to startup_sync_seconds) and before it
        # signs (its org record). Connections queue until it serves, once the services are up.
        try:
            listeners = await trio.open_tcp_listeners(config.api_port, host=config.api_host)
        except OSError as error:
            raise StartupError(f"api: cannot listen on {config.api_host}:{config.api_port}: "
                               f"{error.strerror or error}: {_free_it('[api] bind', config)}") from None
        for listener in listeners:
            published.push_async_callback(listener.aclose)  # (serving closes them too: this, if it never begins)
        # With port 0, the port the OS picked: in api.url at once, so that the commands find the node and wait through
        # its catch-up as for a port configured; and where its status lists are served (served_url, below).
        local_url = config.local_api_url(listeners[0].socket.getsockname()[1])
        published.enter_context(published_api_url(config.data_dir, local_url))
        # What we signed before, as peers know it (`vouchnet key rotate` runs the same); then the services that sign.
        caught_up = await _caught_up(node, nursery, signs_timed_out=True)
        node.startup_sync = caught_up.state
        if caught_up.signs_unchecked:
            log.warning(f"{caught_up.why(config.startup_sync_seconds)}; signing without it (if this data directory "
                        "was restored from an older copy, the org may sign twice at one seq)"
                        + (f": {HOLDER_HINT}" if caught_up.unproven else ""),
                        extra={"fields": {"seconds": config.startup_sync_seconds,
                                          "waited": round(caught_up.waited, 3)}})
            nursery.start_soon(_catch_up_late, node, caught_up.new_org)
        # After `vouchnet key rotate`: the records linking our keys, to the peers connected now (none for "no_peers"),
        # once the catch-up sync took back anything the new key signed since (a rotation taken back stopped us above).
        node.gossip.publish_stored(unpublished_link(node.replica.store, node.replica.succession, node.did))
        for service in (node.witnessing, node.trust, *node.telemetry.services()):
            try:
                await nursery.start(service.run)
            except WitnessStoreError as error:  # Witnessing opens witness.sqlite as it starts
                raise StartupError(f"witness: {error}") from None
        list_present(config.data_dir, held=STORES)  # every store is open (witness.sqlite by Witnessing.run)
        addrs = announce_addrs(config, node.host)
        if not addrs:
            dials = (" (until then, of the addresses other orgs' records name, it dials public ones and those of "
                     "its bootstrap peers' kinds: [p2p] dial_private)") if config.dial_private == "auto" else ""
            log.warning("the node announces no address: it listens on wildcard addresses only, so its org record "
                        "tells other orgs nowhere to dial it; set [p2p] announce in config.toml to where they reach it"
                        + dials, extra={"fields": {"listen": ",".join(node.host.listen_addrs)}})
        publish_org_record(node.replica, name=config.name, network=config.network, addrs=addrs)
        refused = refusals_counter(node.telemetry.metrics)  # the app's refusals and the HTTP server's own
        # In a worker thread: FastAPI analyses each endpoint's signature and builds its pydantic adapters, which held
        # the loop for 54 ms (benchmarks/startup.py). The org's retired keys are read first, on the store's thread.
        app = await trio.to_thread.run_sync(functools.partial(
            api_app, node, node.telemetry, node.trust, node.key, retired_keys=node.telemetry.retired_keys(),
            traces_need_token=config.traces_need_token, refused=refused, served_url=config.public_url or local_url,
            hosts=(*config.hosts, config.api_host), any_host=config.any_host))
        dropped = node.telemetry.metrics.counter(
            "api_connections_dropped_total", f"API connections closed for want of a slot, all {MAX_CONNECTIONS:,} "
            "taken: evicted, the one waiting longest on its client for a request (slow to send it, or idle), for a "
            "newcomer; full, a newcomer answered 503 busy, none waiting (each running the app, answering or "
            "streaming)", ("reason",), known=DROPS)
        node.api_url = (await nursery.start(functools.partial(
            serve_on, app, listeners, refused=refused, dropped=lambda reason: dropped.inc(reason=reason))))[0]
        if not is_loopback(config.api_host):
            writes = ("writes need api.token" if config.traces_need_token else "writes need api.token, but for "
                      "POST /v1/traces: [api] traces_need_token = false lets it report behaviour for any agent")
            log.warning("the local API is reachable from other machines: whoever reaches it reads scores, records and "
                        f"peers without a token ({writes})", extra={"fields": {"api": node.api_url}})
        if config.any_host:
            log.warning('[api] hosts = ["*"]: the API answers a request naming any host, so a web page on a name its '
                        "owner points at this node's address (DNS rebinding) reads it and sends it open writes; list "
                        "the names you call it by instead", extra={"fields": {"api": node.api_url}})
        # What start-up built (the trust engine replayed from the store, the libraries) lives as long as the node:
        # out of the collector's sight, a full collection no longer walks it all. At 10^4 agents that walk stalled
        # the node for about 0.1 s, long enough to miss issue 3's p99 for score requests (benchmarks/score_http.py).
        gc.freeze()
        log.info("node running", extra={"fields": {
            "did": node.did, "peer_id": node.host.peer_id, "listen": ",".join(node.host.listen_addrs),
            "api": node.api_url, "network": config.network, "records": node.replica.store.size}})
        task_status.started(node)


async def catch_up_stopped(config: NodeConfig, *,
                           opened: Callable[[Node], object] = lambda node: None) -> CatchUp:
    """`vouchnet key rotate`'s catch-up, before it signs the rotation: the stopped node of `config` opened and caught
    up as serve_node starts it (_caught_up), `opened(node)` called between the two (opening it replays its trust
    engine as a start does, which can take longer than the catch-up), then closed, the data directory's lock
    released; timed out or interrupted, it signs nothing, not even evidence found meanwhile. Returns how the
    catch-up sync went; raises StartupError as a start does, for a rotation of the key taken back too."""
    async with _opened(config) as node, trio.open_nursery() as nursery:
        opened(node)
        caught_up = await _caught_up(node, nursery, signs_timed_out=False)
        nursery.cancel_scope.cancel()
    return caught_up


async def _caught_up(node: Node, nursery: trio.Nursery, *, signs_timed_out: bool) -> CatchUp:
    """A start's first steps, before anything signs (_take_back_own_records): gossip, sync and the peer manager
    started in `nursery` (gossip first: our own records issued from then on, the org record and digests, are
    published), then the catch-up sync that takes back what the org signed, as a peer it dials that holds the org's
    records knows it (_dialled_rounds; timed out, what waited to be signed is signed only if `signs_timed_out`).
    "unheld" if it timed out, or ended as the rest could not be connected, after rounds with peers it dials that
    proved nothing (`unproven`: holding none of the org's records, or not serving the head they named). Raises
    StartupError if a rotation of the key came back, having kept it in rotation.taken-back
    (node.taken_back_rotation)."""
    store = node.replica.store
    new_org = all(store.head(key) is None for key in (node.did, *node.replica.succession.earlier(node.did)))
    began = trio.current_time()
    with _dialled_rounds(node, new_org=new_org) as rounds:  # (listening before any round can end)
        try:
            state, unreachable = await _take_back_own_records(node, nursery, rounds, node.config.startup_sync_seconds,
                                                              signs_timed_out=signs_timed_out)
            waited = trio.current_time() - began
            if state in NO_ROUND_ANSWERED and rounds.unproven:
                return CatchUp("unheld", len(rounds.unproven), new_org, waited=waited)
            return CatchUp(state, new_org=new_org, unreachable=tuple(unreachable), waited=waited)
        except RotationTakenBack as taken:
            keep(node.config.data_dir, taken.rotation)
            raise StartupError(refusal(node.config, taken.rotation)) from None


@dataclass
class _DialledRounds:
    """The sync rounds with peers the node dials that answered while a catch-up waits (_dialled_rounds)."""

    proved: trio.Event = dataclasses.field(default_factory=trio.Event)  # a round proved the org's records in
    # peers whose rounds proved nothing: their heads named none of the org's keys, or a head they did not serve
    unproven: set[str] = dataclasses.field(default_factory=set)
    answered: set[str] = dataclasses.field(default_factory=set)  # peers whose round under way proved, or unproved
    changed: trio.Event = dataclasses.field(default_factory=trio.Event)  # set as one answers, or its round is over

    def answer(self, peer_id: str) -> None:
        self.answered.add(peer_id)
        self.changed.set()

    async def settled(self, node: Node) -> None:
        """Return once a round proved the org's records in (`proved`) and the round under way with each other peer
        the node dials that is connected has answered too (or ended, or it hung up), or SETTLE_SECONDS after the
        proof; at once for a rotation of the key taken back. A second holder's newer head is then in (its round
        answers once the node holds up to it): the first holder to answer may be stale (offline meanwhile) or hostile
        (a bootstrap address taken over), naming an older head."""
        await self.proved.wait()
        with trio.move_on_after(SETTLE_SECONDS):
            while node.replica.taken_back is None and any(
                    peer not in self.answered and node.sync.round_running(peer) and node.peer_manager.keeps(peer)
                    for peer in node.host.connected_peers()):
                self.changed = trio.Event()
                await self.changed.wait()


@contextmanager
def _dialled_rounds(node: Node, *, new_org: bool, preempts: bool = True,
                    proved_nothing: Callable[[], None] = lambda: None) -> Iterator[_DialledRounds]:
    """While in the block, `proved` is set once a sync round with a peer that the node dials (PeerManager.keeps: its
    bootstrap peers, the orgs of its `org` records), not one that dialled in unasked (a hostile node of the network
    may answer that it holds nothing), brought in the org's records: its heads named one of the org's keys, each held
    now up to the seq named (SyncService's holder_listeners, told mid-round, the org's records being asked for
    first: a node far behind on other orgs' records need not wait for them all). A peer holding none of the org's
    records (the org outside its horizon, DESIGN §5) answers "nothing newer" whatever the org signed, and one naming
    a head it does not serve shows the org signed more than the node holds; either is only counted in `unproven` (as
    its round ends, or as soon as its heads are read if they named none of the org's keys: SyncService's
    unheld_listeners). A peer whose round brought the org's records in is not, though the node came to dial it only
    later in that round (its org's `org` record, brought in by the round, names it: peer exchange), nor only after a
    catch-up before this one ended (SyncService.round_held_own). `proved` is set
    too once a round shows a rotation of the node's key that it takes back (not stored: never held up to the head
    named), for resume_signing to raise at once. For a `new_org` (the store holds none of its records) a round with a
    peer it dials whose heads name none of the org's keys ends it as soon as they are read (the rest of the round goes
    on): a new org has signed nothing to take back, and no peer holds records it has
    not signed (the one case it misses, a copy of a data directory taken before its node first started, restored
    after the node signed elsewhere, is a peer holding them answering more than SETTLE_SECONDS after another, or not
    connected yet). Each such round, and each that ends, is `answer`ed: the catch-up ends once they are `settled`
    (as a peer leaves those it dials, it is waited for no more: PeerManager.keeps_listeners).
    `proved_nothing()` is called as a peer is counted in `unproven` while `proved` is not set. Meanwhile, if
    `preempts`, a full round with a peer it dials that has not yet `answer`ed, takes a sync session slot ahead of
    sessions the catch-up does not need, ending one if none is free (SyncService.catch_up_peers, gossip.session_slots):
    peers stalling just inside the sync timeout cannot hold every slot while the catch-up waits. A peer that answered
    is needed no more: a round that proved the org's records in and then failed (its peer left, say) leaves no round
    to have with it at once each time it connects again (SyncService's rule for a peer needed), and the rest of a
    round under way with it, past what the catch-up needed, may be ended for a round with another peer it dials
    that has yet to answer. A peer answering, a peer coming or going among those it dials (its org's latest `org`
    record names another network, say), and the block's start and end, are told to SyncService.needs_changed: a round
    waiting for a slot ends at once one that is no longer needed, and no longer needed itself, ends none; a peer
    connected already as the node comes to dial it (peer exchange), or as the block starts, has a round at once. Only
    a catch-up that holds signing back preempts (the start's, key rotate's): the late one (_catch_up_late) comes after
    the node signed, and for an org no peer it dials holds may wait the node's whole life, its rounds ending gap
    fetches all the while; its rounds take their slots first come, first served
    (SyncService.patient_catch_up_peers), but it has them all the same as a peer it dials comes to be needed, or as
    the wait ends of one that told the node to come back later (a Busy answer), an interval apart at least with each
    peer."""
    rounds = _DialledRounds()

    def round_answered(peer_id: str) -> None:
        rounds.answer(peer_id)
        node.sync.needs_changed()  # (its round, if it holds a slot, is no longer one `needs`)

    def unproven(peer_id: str) -> None:
        rounds.unproven.add(peer_id)
        round_answered(peer_id)
        if not rounds.proved.is_set():
            proved_nothing()

    def round_ended(peer_id: str) -> None:  # one of SyncService.same_network_listeners
        if node.replica.taken_back is not None:
            rounds.proved.set()
        elif node.peer_manager.keeps(peer_id) and not node.sync.round_held_own(peer_id):
            unproven(peer_id)

    def unheld_round(peer_id: str) -> None:  # one of SyncService.unheld_listeners
        if node.peer_manager.keeps(peer_id):
            if new_org:
                rounds.proved.set()
            unproven(peer_id)

    def holder_round_ended(peer_id: str) -> None:  # one of SyncService.holder_listeners
        if node.peer_manager.keeps(peer_id):
            round_answered(peer_id)
            rounds.proved.set()

    def needs(peer_id: str) -> bool:  # one of SyncService.catch_up_peers (patient_catch_up_peers)
        return node.peer_manager.keeps(peer_id) and peer_id not in rounds.answered

    def round_over(peer_id: str) -> None:  # one of SyncService.round_over_listeners: (failed, or a peer hung up)
        rounds.changed.set()

    def dialled_changed() -> None:  # one of PeerManager.keeps_listeners
        rounds.changed.set()  # (`settled` waits no more for a peer it no longer dials)
        node.sync.needs_changed()

    listening: list[tuple[list[Any], Callable[..., object]]] = [  # (each taken off as the block ends)
        (node.sync.same_network_listeners, round_ended), (node.sync.round_over_listeners, round_over),
        (node.sync.holder_listeners, holder_round_ended), (node.sync.unheld_listeners, unheld_round),
        (node.peer_manager.keeps_listeners, dialled_changed),
        (node.sync.catch_up_peers if preempts else node.sync.patient_catch_up_peers, needs)]
    for listeners, listener in listening:
        listeners.append(listener)
    node.sync.needs_changed()  # (a round with each peer it dials that is connected, if the sync service runs)
    try:
        yield rounds
    finally:
        for listeners, listener in listening:
            listeners.remove(listener)
        node.sync.needs_changed()


def _free_it(setting: str, config: NodeConfig) -> str:
    """What an operator does about an address the node cannot listen on."""
    return f"stop what uses it, or change {setting} in {config.data_dir / CONFIG_FILE}"


async def _take_back_own_records(node: Node, nursery: trio.Nursery, rounds: _DialledRounds, seconds: float, *,
                                 signs_timed_out: bool) -> tuple[StartupSync, list[KnownPeer]]:
    """Gossip, sync and the peer manager started in `nursery`, then, before the node signs anything, a catch-up sync
    with the peers it dials that hold the org's records, until they are in (`rounds` settled: _dialled_rounds; the
    rest of those rounds goes on), if it has peers to dial, for up to `seconds` (done if one proved them in by then),
    or until none of those peers can be connected before then, those whose rounds proved nothing aside
    (_settled_or_out_of_reach: "unreachable", with them): a node whose data directory was restored from an older copy
    takes back the records it signed since (DESIGN §3: two records at one seq would flag the org as an equivocator).
    Signing is deferred before the services start (a peer connected while the node opened may bring in evidence at
    once): evidence found meanwhile waits, and is signed then (timed out or interrupted, only if `signs_timed_out`:
    else it is dropped). Raises RotationTakenBack, having signed nothing, if a rotation of the node's key came back
    (node.taken_back_rotation). Returns how it went: "no_peers" (none to dial), "done", "unreachable" (with what it
    knows of each peer it dials) or "timed_out". Once it ended and the node signs, records of a key `vouchnet key
    adopt` made the org's are no longer expected from peers (gossip.own_records.OwnRecords.adoption_caught_up); a
    start stopped before then expects them still at the next."""
    waits = node.peer_manager.has_peers
    if waits:
        node.replica.defer_signing()
    done, unreachable = False, None
    try:
        for service in (node.gossip, node.sync, node.peer_manager):
            await nursery.start(service.run)
        if waits:
            deadline = trio.current_time() + seconds
            with trio.move_on_at(deadline):
                unreachable = await _settled_or_out_of_reach(node, rounds, deadline)
            done = rounds.proved.is_set()
            if not done and unreachable is None:  # (at the deadline: a failed dial the wait had not yet seen)
                unreachable = node.peer_manager.out_of_reach_now(deadline)
    finally:  # (interrupted, as timed out)
        if waits:
            node.replica.resume_signing(sign_deferred=done or signs_timed_out)
    state: StartupSync = ("done" if done else "no_peers" if not waits else "timed_out" if unreachable is None
                          else "unreachable")
    if state in ("done", "no_peers") or signs_timed_out:
        try:
            node.replica.own_records.adoption_caught_up()
        except StoreError as error:
            raise StartupError(f"records: {error}") from None
    return state, [] if done or unreachable is None else unreachable


async def _settled_or_out_of_reach(node: Node, rounds: _DialledRounds, deadline: float) -> list[KnownPeer] | None:
    """Wait until `rounds` are settled (None) or no peer the node dials can be connected before `deadline` (those
    peers, PeerManager.out_of_reach), whichever comes first. A peer whose round proved nothing (`unproven`) and is
    over needs no sync before then, and counts as out of reach: so, once every peer it dials has answered so or is
    out of reach, the wait ends rather than run on to `deadline` for nothing. Not before that round is over: the
    `org` records it brought in may name peers to dial (peer exchange), a holder of the org's records among them."""
    found: list[list[KnownPeer]] = []

    def answered() -> list[str]:
        return [peer for peer in rounds.unproven if not node.sync.round_running(peer)]

    async with trio.open_nursery() as waits:

        async def settle() -> None:
            await rounds.settled(node)
            waits.cancel_scope.cancel()

        async def give_up() -> None:
            found.append(await node.peer_manager.out_of_reach(deadline, answered=answered))
            waits.cancel_scope.cancel()

        waits.start_soon(settle)
        waits.start_soon(give_up)
    return found[0] if found and not rounds.proved.is_set() else None


async def _catch_up_late(node: Node, new_org: bool) -> None:
    """A start's timed-out or unheld catch-up sync, done once a later round ends it as it would have ended the start's
    (_dialled_rounds, `new_org` as the start was): with a peer it dials that holds the org's records, once they are
    in (the records the org signed elsewhere have come back then; any second record at one seq signed meanwhile shows
    as own_org_flagged), or, for an org that was new, whose heads name none of its keys. A timed-out or unreachable
    one turns "unheld" at a round with a peer it dials that proves nothing, as the start's would have with that round
    in time: a bootstrap peer down as the start began and up since does not leave "timed_out" (and its alert) until a
    restart. Its rounds take sync session slots as other sessions do, first come, first served: the node signs
    already, and ending gap fetches for them, perhaps for the node's whole life, would be a cost with no signing to
    hold back (_dialled_rounds' `preempts`)."""

    def proved_nothing() -> None:
        if node.startup_sync in NO_ROUND_ANSWERED:
            node.startup_sync = "unheld"
            log.warning(f"a peer it dials completed a catch-up sync but holds none of this org's records (a node "
                        "stores only the records of orgs inside its horizon) or did not serve those it named: "
                        f"startup_sync is unheld, the node signing without a check until one does; {HOLDER_HINT}")

    with _dialled_rounds(node, new_org=new_org, preempts=False, proved_nothing=proved_nothing) as rounds:
        await rounds.settled(node)
    node.startup_sync = "done"
    log.info("a later round with a peer it dials ended the start's catch-up sync, as it would have ended it in time: "
             "startup_sync is done")


async def run_until_signalled(config: NodeConfig, *, stop_deadline: StopDeadline | None = None) -> None:
    """`vouchnet run`: serve the node until SIGINT or SIGTERM, then shut down within SHUTDOWN_SECONDS; a signal
    while it starts (waiting for its start-up sync, say) stops it as well. With `stop_deadline` (`vouchnet run`'s,
    which owns its process, unlike a test running a node in its own), a stop that a store's write never returning
    holds up past it is cut short, the process ended (node.stop_deadline).

    The objects there are when it begins (the modules) and when it ends are frozen (gc.freeze), out of the cycle
    collector's sight: a full collection walked the modules, 0.1-0.4 s each on a loaded machine, during start-up
    and shutdown, and the interpreter's exit walked all that a start stopped before its own gc.freeze (serve_node)
    had built, over and over, 1.4-1.9 s of a 2 s shutdown at load 5."""
    gc.freeze()
    signalled: list[float] = []  # when the signal came (_stop_on_signal)
    stopping = (signal.SIGINT, signal.SIGTERM)
    try:
        with (trio.open_signal_receiver(*stopping) as signals,
              nullcontext() if stop_deadline is None else armed_by_signals(stop_deadline, stopping)):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_stop_on_signal, signals, nursery.cancel_scope, signalled, stop_deadline)
                try:
                    await nursery.start(serve_node, config)
                except OSError as error:  # a file the file system refuses: a directory as node.lock, a read-only disk
                    raise StartupError(f"{error.filename or config.data_dir}: {error.strerror or error}") from None
        if signalled:  # (every service ended and every store closed: the nursery and _opened are left)
            log.info("stopped", extra={"fields": {"seconds": round(trio.current_time() - signalled[0], 3)}})
    finally:
        gc.freeze()


async def _stop_on_signal(signals: AsyncIterator[int], scope: trio.CancelScope, signalled: list[float],
                          stop_deadline: StopDeadline | None = None) -> None:
    """Stop the node at the first of `signals`, arming `stop_deadline` too: a signal that came before the deadline's
    own handlers were registered (armed_by_signals) would arm nothing else."""
    async for signum in signals:
        if stop_deadline is not None:
            stop_deadline.arm()
        log.info("shutting down", extra={"fields": {"signal": signal.Signals(signum).name}})
        signalled.append(trio.current_time())
        scope.cancel()
        return
