"""Staying connected (DESIGN.md §5): bootstrap peers and orgs learned from `org` records, redialled with backoff.

`DialSchedule` is the policy, pure and clock-free: who to dial next and when, exponential backoff with jitter per peer,
and none of a group holding its share of the peers dialled already (GroupCap). `PeerManager` is the trio shell that
dials. The host lifts py-libp2p's 60 s negative dial cache on every connect (gossip/host.py quirk 6), so the backoff
here alone decides how often a peer is retried: a peer whose connection dropped is redialled after `min_backoff`, one
that stays unreachable at most `max_backoff` (60 s) apart, and a connection that lasted less than `stable_after` counts
as a failed dial, so a peer that keeps hanging up is redialled ever less often, not every `min_backoff`. A peer found on
another network (the sync handshake names each side's) holds none of our records: it is dialled ever less often, not
dropped, so that a mistyped bootstrap address stays in sight: `apart_first` (a minute) after it is first found so,
doubled at each connection in a row found so, up to `apart_backoff` (an hour), jittered, so that a node misconfigured
for a moment is dialled again soon.
`DialSchedule.known` tells what it knows of each peer (GET /v1/peers): where it dials it, how many dials failed in
a row, the last one's error, the other network it was found on, and when it dials next; `out_of_reach`, whether none
can be connected for a sync before a given time (a start's catch-up sync then ends early: node.daemon), a peer
connected that refused /vouchnet/sync/1 (a gossip-only node) counting as out of reach. A peer on the operator's
block list is not dialled: it shows as blocked (its error BLOCKED, no next dial) once the change is made (the host
has closed its connections: PeerManager.set_blocked), and is due at once when unblocked.
"""

from __future__ import annotations

import bisect
import logging
import math
import random
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

import trio

from vouching import OrgBody, Record, public_key_from_did
from vouching.schema import escaped
from vouching.succession import Link

from .host import Host, HostError, InvalidPeerId, dialable, peer_id_from_public_key, peer_org
from .peer_feed import PeerFeed
from .replica import Replica
from .scopes import DialPrivate, Scope, addr_scope, dialled_scopes
from .sync_messages import SYNC_PROTOCOL

log = logging.getLogger(__name__)

# Of `max_peers`, the most one group may hold (GroupCap: the org that vouched their orgs into the horizon): an org
# inside may vouch any number of fresh keys in, each listening, and they would take every slot, the honest orgs'
# nodes left undialled
GROUP_SHARE = 0.25
MAX_DIALS = 8  # dials at once: py-libp2p runs 32 and queues the rest, the host's dial timeout running meanwhile
# Addresses dialled per second, all peers together (and at once): each org's dials are bounded by its backoff, but
# orgs are many, and every one may name anyone's address.
MAX_DIAL_RATE, MAX_DIAL_BURST = 10.0, 50
APART_FIRST = 60.0  # seconds before a peer first found on another network is dialled again (doubling at each one)
APART_BACKOFF = 3600.0  # ... up to this: its node re-made on ours is found
MAX_ERROR = 512  # characters of a peer's last dial error kept (and shown): it may carry a hostile peer's text
BLOCKED = "the peer is blocked on this host: not dialled until unblocked"  # a blocked peer's `last_error`
# A connected peer's `last_error` as out_of_reach tells it, once the peer refused a sync stream on its connection
NO_SYNC = (f"connected, but the peer does not speak {SYNC_PROTOCOL} (it refused the protocol: a gossip-only node, "
           "say, or no vouchnet node at that address)")
# A peer that blocked this node closes each connection from it as the handshake names it, seen here within a round
# trip or two of opening: the `last_error` of a connection closed sooner than this, not by this node, says so (a
# peer's idle_inbound_grace, 10 s, closes a connection not put to use: another cause).
QUICK_CLOSE_S = 5.0
MAYBE_BLOCKED = "a peer that blocked this node closes each connection to it as it opens"


def split_peer_addr(addr: str) -> tuple[str, str]:
    """`/ip4/…/tcp/…/p2p/<peer id>` -> (transport part, peer id); ValueError without a /p2p/ component."""
    transport, sep, peer_id = addr.rpartition("/p2p/")
    if not sep or not transport or not peer_id or "/" in peer_id:
        raise ValueError(f"{addr!r}: a peer address must end in /p2p/<peer id>")
    return transport, peer_id


def printable_line(text: str, limit: int = MAX_ERROR) -> str:
    """`text` as one line safe to print on a terminal, of at most `limit` characters: each character that is not
    printable (a control character, a line break, a bidi override) as its escape, e.g. \\x1b, \\n or \\u202e (a
    dial error may quote what a hostile peer sent), and a longer one cut in the middle, at "…": a dial error names
    the address first and the cause last (py-libp2p's run to 500 characters, "Connection refused" at the end)."""
    if len(text) <= limit and len(line := escaped(text)) <= limit:
        return line
    head = (limit - 1) // 2
    tail = limit - 1 - head
    end = escaped(text[len(text) - tail:])
    return escaped(text[:head])[:head] + "…" + end[len(end) - tail:]


def apart_error(network: str) -> str:
    """Why a peer is not kept connected once found on `network`, not ours (its `last_error`)."""
    return f"the peer is on network {network!r}, not this node's"


def org_dial_addrs(record: Record, scopes: frozenset[Scope]) -> tuple[str, list[str]]:
    """The peer id of an `org` record's issuer and those of its addresses the host can dial by IP address in one of
    `scopes` (gossip.scopes: no org may have the node dial its loopback, say), each ending in /p2p/<peer id> (an
    address naming another peer is not the org's to hand out). A DNS name is not resolved: any org inside the
    horizon would have every node look up names of its choosing, and each lookup that a name's nameservers leave
    unanswered holds a thread of trio's pool past the dial's timeout (bootstrap addresses, the operator's choice,
    are resolved)."""
    assert isinstance(record.body, OrgBody)
    peer_id = peer_id_from_public_key(public_key_from_did(record.iss))
    addrs = [a if "/p2p/" in a else f"{a}/p2p/{peer_id}" for a in record.body.addrs]
    return peer_id, [a for a in addrs if a.endswith(f"/p2p/{peer_id}") and dialable(a, names=False)
                     and addr_scope(a) in scopes]


@dataclass
class _Target:
    bootstrap: list[str] = field(default_factory=list)  # from the config, kept
    announced: list[str] = field(default_factory=list)  # from the org's latest `org` record naming any
    due: float = 0.0
    failures: int = 0
    last_error: str | None = None  # why the last of its `failures` failed (printable_line); None without any
    other_network: str | None = None  # the network it was found on, not ours, until a connection to it lasts or a
    # sync round shows it on ours (`same_network`)
    apart_findings: int = 0  # connections in a row on which it was found on another network (its dials' spacing
    # doubles with each)
    found_apart: bool = False  # whether it was found so on its latest connection: a connection counts once, though
    # the answer to our sync request and the peer's own request each name its network

    @property
    def addrs(self) -> list[str]:
        return list(dict.fromkeys([*self.announced, *self.bootstrap]))


@dataclass(frozen=True)
class GroupCap:
    """At most `most` of the peers a node dials connected or being dialled in any one group: `group_of(peer)`, the
    org that brought the peer's org inside the horizon (vouching.horizon's `group`; None: none, not counted)."""

    group_of: Callable[[str], str | None]
    most: int


@dataclass(frozen=True)
class KnownPeer:
    """What the node knows of one peer (DESIGN §5, shown by GET /v1/peers)."""

    peer_id: str
    source: str  # "bootstrap" (the config names it), "org_record" (its org's `org` record does) or "inbound" (it
    # dialled in unasked: never dialled, and forgotten once it leaves)
    addrs: tuple[str, ...]  # where it is dialled, in the order tried
    connected: bool
    failures: int  # dials failed in a row, a connection closed before `stable_after` counting as one
    last_error: str | None  # why the last of them failed: one printable line, at most MAX_ERROR characters;
    # BLOCKED while it is blocked
    next_dial_in: float | None  # seconds until it is dialled again (0: due, waiting for a dial); None if connected
    # or blocked
    other_network: str | None = None  # the network it was last found on, not ours (dialled APART_FIRST to
    # APART_BACKOFF apart)


@dataclass
class DialSchedule:
    """Which peers to keep connected and when each may next be dialled."""

    min_backoff: float = 1.0
    max_backoff: float = 60.0
    stable_after: float = 60.0  # a connection lasting less is a failed dial (the peer hangs up, say)
    apart_first: float = APART_FIRST  # the least delay between dials of a peer found on another network, once ...
    apart_backoff: float = APART_BACKOFF  # ... doubled at each finding in a row, up to this
    rng: random.Random = field(default_factory=random.Random)
    _targets: dict[str, _Target] = field(default_factory=dict)
    _sorted: list[str] | None = None  # the targets' peer ids in order, for known(); None once one came or went
    _blocked: frozenset[str] = frozenset()  # peers on the operator's block list: never dialled
    # the peers connected, each with when its connection opened: those it keeps and those that dialled in (one it
    # comes to keep, its org's `org` record arriving through the connection, say, keeps its connection's age)
    _connected_since: dict[str, float] = field(default_factory=dict)
    came_or_went: int = 0  # how many times a peer came or went: PeerManager tells its `keeps_listeners` as it grows

    def _target(self, peer_id: str) -> _Target:
        """The peer's target, made if it had none."""
        if peer_id not in self._targets:
            self._targets[peer_id] = _Target()
            self._changed()
        return self._targets[peer_id]

    def _changed(self) -> None:
        """A peer came or went."""
        self._sorted = None
        self.came_or_went += 1

    @property
    def size(self) -> int:
        """How many peers it keeps connected."""
        return len(self._targets)

    def add(self, peer_id: str, addrs: Sequence[str]) -> None:
        """Keep `peer_id` connected through `addrs` from the config (merged with any known ones)."""
        target = self._target(peer_id)
        target.bootstrap = list(dict.fromkeys([*addrs, *target.bootstrap]))

    def announce(self, peer_id: str, addrs: Sequence[str]) -> None:
        """Keep `peer_id` connected through `addrs` from its org's latest `org` record, in place of those its
        earlier ones named: an org may sign any number of them, each naming other addresses."""
        self._target(peer_id).announced = list(addrs)

    def withdraw(self, peer_id: str) -> None:
        """Its org's latest `org` record names no address we dial (it moved to another network, say): forget those
        its earlier ones named, and the peer, unless the config names it."""
        target = self._targets.get(peer_id)
        if target is None:
            return
        target.announced = []
        if not target.bootstrap:
            del self._targets[peer_id]
            self._changed()

    def forget(self, peer_id: str) -> None:
        """Never dial `peer_id` (a key of this node's own org), whatever named it, the config included."""
        if self._targets.pop(peer_id, None) is not None:
            self._changed()

    def kept(self, peers: Iterable[str]) -> set[str]:
        """Those of `peers` it keeps connected (not peers that dialled in unasked)."""
        return {p for p in peers if p in self._targets}

    def due(self, now: float, connected: Iterable[str], budget: int,
            cap: GroupCap | None = None) -> list[tuple[str, list[str]]]:
        """Up to `budget` unconnected targets whose backoff has passed: bootstrap peers first (the operator chose
        them; any org may name addresses that hold a dial for its whole timeout), then longest-waiting first; none of
        a group `connected` (those connected, and those being dialled) holds `cap.most` of already."""
        busy = set(connected)
        skip = busy | self._blocked
        ready = sorted((not t.bootstrap, t.due, p) for p, t in self._targets.items() if p not in skip and t.due <= now)
        held = self._held(busy, cap)
        taken: list[tuple[str, list[str]]] = []
        for *_, p in ready:
            if len(taken) >= budget:
                break
            if self._room(p, held, cap):
                held[self.group(p, cap)] += 1
                taken.append((p, self._targets[p].addrs))
        return taken

    def next_due(self, connected: Iterable[str], cap: GroupCap | None = None) -> float | None:
        """When the first unconnected target of a group holding less than `cap.most` (`due`) may be dialled."""
        busy = set(connected)
        skip = busy | self._blocked
        held = self._held(busy, cap)
        times = [t.due for p, t in self._targets.items() if p not in skip and self._room(p, held, cap)]
        return min(times) if times else None

    def group(self, peer_id: str, cap: GroupCap | None) -> str | None:
        """The group `cap` counts the peer in: None for a peer it does not keep, a bootstrap peer (the operator chose
        it), or without a cap."""
        target = self._targets.get(peer_id)
        if cap is None or target is None or target.bootstrap:
            return None
        return cap.group_of(peer_id)

    def _held(self, busy: Iterable[str], cap: GroupCap | None) -> Counter[str | None]:
        """How many of the targets among `busy` each group holds."""
        return Counter(self.group(p, cap) for p in busy if p in self._targets) if cap is not None else Counter()

    def _room(self, peer_id: str, held: Counter[str | None], cap: GroupCap | None) -> bool:
        """Whether the peer's group holds less than `cap.most` of `held` (always, for a peer in none)."""
        group = self.group(peer_id, cap)
        return group is None or cap is None or held[group] < cap.most

    def known(self, connected: Iterable[str], *, after: str | None, limit: int, now: float) -> list[KnownPeer]:
        """The first `limit` peers in peer id order (after `after`, if given) that it keeps connected or that are
        `connected` (those it does not keep dialled in), with their state at `now`."""
        live = set(connected)
        if self._sorted is None:
            self._sorted = sorted(self._targets)  # (once per peer come or gone: a page is a slice of it)
        start = 0 if after is None else bisect.bisect_right(self._sorted, after)
        inbound = [p for p in live if p not in self._targets and (after is None or p > after)]
        ids = sorted([*self._sorted[start:start + limit], *inbound])[:limit]
        return [self._known(p, p in live, now) for p in ids]

    def _known(self, peer_id: str, connected: bool, now: float) -> KnownPeer:
        target = self._targets.get(peer_id)
        if target is None:
            return KnownPeer(peer_id, "inbound", (), connected, 0, None, None)
        blocked = peer_id in self._blocked
        return KnownPeer(peer_id, "bootstrap" if target.bootstrap else "org_record", tuple(target.addrs), connected,
                         target.failures, BLOCKED if blocked else target.last_error,
                         None if connected or blocked else max(target.due - now, 0.0), target.other_network)

    def out_of_reach(self, connected: Iterable[str], until: float, now: float, *, dialling: Iterable[str] = (),
                     refusing: Iterable[str] = (), answered: Iterable[str] = ()) -> list[KnownPeer] | None:
        """If it keeps peers and none of them can be connected for a sync before `until`, what it knows of each (at
        `now`, connected or not as `connected` says, as `known` lists them): each is `refusing` and `connected` (it
        refused the sync protocol on its connection: its `last_error` NO_SYNC), or else none is `connected` or
        `dialling` (a dial of it under way), each is blocked or its last dial failed or found it on another network
        (`last_error` says which), and none is due to be dialled again before `until` (a peer whose backoff ends
        sooner may be starting up, and its next dial succeed). A peer `answered` (a catch-up has its answer:
        node.daemon) needs no sync before then, and counts as out of reach. Else None. `connected`, not what the
        schedule last heard, tells whether a peer is: the host's list is the newer, and a peer that refused the
        protocol, left and came back to refuse it again was listed not connected yet "connected, but ..."."""
        live, done = set(connected), set(answered)
        skip, refused = live.union(dialling), live.intersection(refusing)

        def in_reach(peer_id: str, target: _Target) -> bool:
            if peer_id in refused or peer_id in done:
                return False
            if peer_id in skip:
                return True
            return peer_id not in self._blocked and (target.last_error is None or target.due < until)

        if not self._targets or any(in_reach(p, t) for p, t in self._targets.items()):
            return None
        known = [self._known(p, p in live, now) for p in sorted(self._targets)]
        return [replace(peer, last_error=NO_SYNC) if peer.peer_id in refused else peer for peer in known]

    def failed(self, peer_id: str, now: float, error: str) -> float | None:
        """Record a failed dial and why (`error`, kept as a printable_line); returns the delay before the next
        attempt (doubling, jittered, capped; `_apart_delay` at least for a peer found on another network), None if
        the peer is no longer kept (withdrawn or moved while it was dialled)."""
        target = self._targets.get(peer_id)
        if target is None:
            return None
        target.failures += 1
        target.last_error = printable_line(error)
        delay = min(self.max_backoff, self.min_backoff * 2 ** (target.failures - 1))
        delay *= self.rng.uniform(0.5, 1.0)  # jitter: nodes restarted together do not redial in lockstep
        if target.other_network is not None:
            delay = max(delay, self._apart_delay(target))
        target.due = now + delay
        return delay

    def _apart_delay(self, target: _Target) -> float:
        """The least delay before a peer found on another network is dialled again: `apart_first`, doubled at each
        connection in a row found so after the first, up to `apart_backoff`, jittered as a failed dial's."""
        delay = min(self.apart_backoff, self.apart_first * 2 ** min(max(target.apart_findings - 1, 0), 32))
        return delay * self.rng.uniform(0.5, 1.0)

    def other_network(self, peer_id: str, network: str, now: float) -> None:
        """The peer named `network`, not ours (its sync request or answer did): it holds none of our records. It is
        dialled again `_apart_delay` from now at the soonest (a minute the first time, doubling up to an hour), and
        shown with that network until a connection to it lasts, or a sync round with it runs to the end (its node
        re-made on our network, or its address in the config mended)."""
        target = self._targets.get(peer_id)
        if target is None:
            return
        target.other_network = network
        if not target.found_apart:
            target.found_apart = True
            target.apart_findings += 1
        target.last_error = printable_line(apart_error(network))
        target.due = max(target.due, now + self._apart_delay(target))

    def same_network(self, peer_id: str) -> None:
        """The peer is on our network (a sync round with it ran to the end): one found on another no longer is, and
        is dialled at the usual backoff (its node re-made on ours, connected again before a minute passed)."""
        target = self._targets.get(peer_id)
        if target is None or target.other_network is None:
            return
        if target.last_error == printable_line(apart_error(target.other_network)):
            target.last_error = None
        target.other_network, target.apart_findings = None, 0

    def connected(self, peer_id: str, now: float) -> None:
        """A connection to the peer opened (our dial, or theirs); its failures are forgotten once it lasts (of a peer
        it does not keep too: it may come to)."""
        if peer_id not in self._connected_since:
            self._connected_since[peer_id] = now
            if (target := self._targets.get(peer_id)) is not None:
                target.found_apart = False

    def block(self, peer_ids: Iterable[str]) -> None:
        """Block exactly `peer_ids` (the host's block list): not dialled from now on, and those no longer blocked
        due at once, their backoff forgotten (`retry_now`)."""
        blocked = frozenset(peer_ids)
        for peer_id in self._blocked - blocked:
            self.retry_now(peer_id)
        self._blocked = blocked

    def retry_now(self, peer_id: str) -> None:
        """The peer became reachable again (e.g. an operator unblocked it): due at once, its backoff forgotten."""
        if (target := self._targets.get(peer_id)) is not None:
            target.due, target.failures, target.last_error, target.other_network = 0.0, 0, None, None
            target.apart_findings = 0

    def moved(self, peer_id: str, successor: str) -> None:
        """The peer's org rotated its key (DESIGN §2): its node now answers as `successor` at the same addresses."""
        target = self._targets.pop(peer_id, None)
        if target is None:
            return
        self._changed()

        def at_successor(addrs: list[str]) -> list[str]:
            return [f"{split_peer_addr(addr)[0]}/p2p/{successor}" for addr in addrs]

        self.add(successor, at_successor(target.bootstrap))
        if not self._targets[successor].announced:  # (unless the successor's own record named its addresses)
            self.announce(successor, at_successor(target.announced))
        moved = self._targets[successor]  # the same node: its backoff carries over
        if target.failures > moved.failures:
            moved.failures, moved.last_error = target.failures, _carried_error(peer_id, target)
        moved.other_network = moved.other_network or target.other_network
        moved.apart_findings = max(moved.apart_findings, target.apart_findings)
        moved.due = max(moved.due, target.due)

    def disconnected(self, peer_id: str, now: float, *, closed_here: bool = False) -> None:
        """A connection dropped: retry after the minimum backoff, not at once (the peer may be restarting); or, if
        it lasted less than `stable_after`, as after a failed dial, its error saying that this node closed it
        (`closed_here`: PeerEvent) or, closed within QUICK_CLOSE_S, not by this node, that the peer may have blocked
        this node (MAYBE_BLOCKED)."""
        since = self._connected_since.pop(peer_id, None)
        target = self._targets.get(peer_id)
        if target is None:
            return
        closed, maybe = ("this node closed the connection", "") if closed_here else (
            "the connection closed", f" ({MAYBE_BLOCKED})")
        if target.other_network is not None and (since is None or now - since < self.stable_after):
            self.failed(peer_id, now, apart_error(target.other_network))
        elif since is None:  # it closed before we heard it open
            self.failed(peer_id, now, f"{closed} as it opened{maybe}")
        elif now - since < self.stable_after:
            quick = maybe if now - since < QUICK_CLOSE_S else ""
            self.failed(peer_id, now, f"{closed} after {now - since:.1f} s, within the {self.stable_after:g} s that a "
                                      f"connection must last{quick}")
        else:
            target.failures, target.last_error, target.other_network, target.apart_findings = 0, None, None, 0
            target.due = now + self.min_backoff


def _carried_error(prior: str, target: _Target) -> str | None:
    """`target`'s last error as its successor's row shows it once its org rotated from the key of PeerID `prior`
    (`DialSchedule.moved`): naming that PeerID, as the dial that failed was not the successor's (it may well have
    found the successor's node there); one of its node found on another network is the successor's as it was."""
    error = target.last_error
    if error is None or (target.other_network is not None and error == printable_line(apart_error(
            target.other_network))):
        return error
    return printable_line(f"as {prior}, before its org's key rotated: {error}")


class PeerManager:
    """Dials bootstrap peers and orgs from `org` records, keeps at most `max_peers` of them connected, of which a
    quarter (GROUP_SHARE) at most in any one group, bootstrap peers aside (GroupCap: the org that vouched their orgs
    into the horizon). Peers that dial in unasked do not count (the host's max_connections bounds them); while it runs,
    the host never closes an idle inbound connection of a peer it `protects` (gossip/host.py quirk 34). Of the addresses
    `org` records name, it dials those in the scopes `dial_private` allows (gossip.scopes), with "auto" those of
    `own_addrs`, the addresses the node's own org record names (None: the host's listen addresses), and of its bootstrap
    addresses; and only those of records of the node's `network`: an org on another holds none of our records, and a
    hostile one would have us dial addresses of its choosing in another network's name. A peer the sync service finds on
    another network (`other_network`) is dialled APART_FIRST to APART_BACKOFF apart, doubling."""

    def __init__(
        self,
        host: Host,
        replica: Replica,
        *,
        network: str,
        bootstrap: Sequence[str],
        max_peers: int,
        schedule: DialSchedule | None = None,
        dial_private: DialPrivate = "auto",
        own_addrs: Sequence[str] | None = None,
    ) -> None:
        self._host = host
        self._scopes = dialled_scopes(dial_private, host.listen_addrs if own_addrs is None else own_addrs, bootstrap)
        self._replica = replica
        self._network = network
        self._max_peers = max_peers
        self._cap = GroupCap(self._horizon_group, max(1, int(max_peers * GROUP_SHARE)))
        self._schedule = schedule if schedule is not None else DialSchedule()
        self._wake = trio.Event()
        self._dialling: set[str] = set()  # peers a dial of which is under way
        self._reach_changed = trio.Event()  # set as a dial fails, a connection closes or a peer comes or goes
        self._blocking = trio.Lock()  # held while the block list changes (set_blocked)
        self._next_dial = -math.inf  # when the next address may be dialled, bursts aside (_dial_slot)
        self.dials = 0
        self.dial_failures = 0
        # told, with no argument, as a peer comes or goes among those it keeps (`keeps`): an `org` record accepted,
        # one naming another network, a rotation followed (node.daemon's catch-up asks sync's slots again)
        self.keeps_listeners: list[Callable[[], None]] = []
        own = {peer_id_from_public_key(public_key_from_did(key)) for key in replica.succession.keys(replica.did)}
        for addr in bootstrap:
            _, peer_id = split_peer_addr(addr)
            if peer_id in own:
                log.warning("[p2p] bootstrap names this node's own org key, not dialled: %s", addr)
                continue
            self._schedule.add(peer_id, [addr])
        self._learn(list(replica.store.scan(kind="org")))
        for link in replica.succession.links():
            self._follow(link)
        replica.listeners.append(self._learn)
        replica.link_listeners.append(self._follow)

    def _ours(self, key: str) -> bool:
        """Whether `key` is one of our own org's keys, past or present: those are never dialled."""
        return self._replica.succession.identity(key) == self._replica.succession.identity(self._replica.did)

    def _learn(self, records: list[Record]) -> None:
        """Peer exchange: an accepted `org` record tells us where its org's node listens (a rotation record, the
        key's last, is passed over: the node behind its addresses answers to the new key from its next start, and
        `_follow` moves them there once the new key names it back); one of another network, that its node is not
        ours to dial: the addresses its earlier records named are withdrawn."""
        before = self._schedule.came_or_went
        for record in records:
            if not isinstance(record.body, OrgBody) or record.body.next is not None or self._ours(record.iss):
                continue
            if record.body.network != self._network:
                self._schedule.withdraw(peer_id_from_public_key(public_key_from_did(record.iss)))
                continue
            peer_id, addrs = org_dial_addrs(record, self._scopes)
            if addrs:
                self._schedule.announce(peer_id, addrs)
                self._wake.set()
        self._tell_keeps(before)

    def _follow(self, link: Link) -> None:
        """A rotation linked two keys (both named each other, vouching.succession): the node that answered to the
        old one now answers to the new one, at the same addresses (so a bootstrap address naming the old peer id
        keeps working), unless the new key's latest `org` record names another network (`_learn`). A key's claim
        alone moves nothing: any org may name any key as its successor. A rotation of our own key withdraws the
        earlier key's peer (`_learn` dialled it as another org's while the two were not linked yet: after `vouchnet
        key adopt`, until the new key's first record comes back), which was this node, at its own addresses, even if
        `[p2p] bootstrap` names it (a list shared by a testnet's nodes, say): a node never dials its own keys."""
        before = self._schedule.came_or_went
        prior = peer_id_from_public_key(public_key_from_did(link.prior))
        if self._ours(link.successor):
            self._schedule.forget(prior)
            self._tell_keeps(before)
            return
        successor = peer_id_from_public_key(public_key_from_did(link.successor))
        self._schedule.moved(prior, successor)
        if self._elsewhere(link.successor):  # (at a restart, its record was learned before the link was followed)
            self._schedule.withdraw(successor)
        self._wake.set()
        self._tell_keeps(before)

    def _tell_keeps(self, came_or_went: int) -> None:
        """Tell `keeps_listeners` if a peer came or went since the schedule counted `came_or_went`."""
        if self._schedule.came_or_went != came_or_went:
            self._tell_reach_changed()
            for listener in self.keeps_listeners:
                listener()

    def _elsewhere(self, key: str) -> bool:
        """Whether `key`'s latest `org` record, a rotation's aside (as `_learn`), names another network than ours."""
        latest = self._replica.store.latest_org(key, rotation=False)
        return latest is not None and latest.network != self._network

    @property
    def has_peers(self) -> bool:
        """Whether it knows any peer to dial (from the bootstrap list or other orgs' `org` records)."""
        return self._schedule.size > 0

    def keeps(self, peer_id: str) -> bool:
        """Whether `peer_id` is one it keeps connected (a bootstrap peer, an org from its `org` records), not a peer
        that dialled in unasked."""
        return bool(self._schedule.kept([peer_id]))

    def known(self, *, after: str | None, limit: int) -> list[KnownPeer]:
        """The first `limit` peers it knows, in peer id order after `after`: those it keeps connected and those
        connected now that dialled in (DialSchedule.known)."""
        return self._schedule.known(self._host.connected_peers(), after=after, limit=limit, now=trio.current_time())

    async def out_of_reach(self, until: float, *,
                           answered: Callable[[], Iterable[str]] | None = None) -> list[KnownPeer]:
        """Return, with what it knows of each, once it keeps peers and none of them can be connected for a sync before
        `until` (trio's clock): each connected but refusing the sync protocol (Host.refused: a gossip-only node), or
        not connected, its last dial failed or found it on another network, and not to be dialled again before then
        (DialSchedule.out_of_reach), or among those `answered()` names, asked again as a round ends (`round_over`);
        waits for ever if one of them connects meanwhile and stays, serving sync."""
        while (peers := self.out_of_reach_now(until, answered=answered)) is None:
            await self._reach_changed.wait()
        return peers

    def _tell_reach_changed(self) -> None:
        """Wake those waiting in `out_of_reach`: a dial ended, a connection closed, a peer came or went, was blocked or
        unblocked, was found on another network, or a round with it ended (`round_over`)."""
        self._reach_changed.set()
        self._reach_changed = trio.Event()

    def out_of_reach_now(self, until: float, *,
                         answered: Callable[[], Iterable[str]] | None = None) -> list[KnownPeer] | None:
        """What `out_of_reach` would return now, or None if it would wait."""
        connected = self._host.connected_peers()
        refusing = [peer for peer in connected if self._host.refused(peer, SYNC_PROTOCOL)]
        return self._schedule.out_of_reach(connected, until, trio.current_time(), dialling=self._dialling,
                                           refusing=refusing, answered=answered() if answered else ())

    def round_over(self, peer_id: str) -> None:
        """For the sync service (its `round_over_listeners`): a round with `peer_id` ended. The peer may be the last
        one within reach gone out of it, which nothing else would tell `out_of_reach`: one that refused the sync
        protocol (Host.refused) stays connected, and a catch-up may have its answer now (`answered`)."""
        self._tell_reach_changed()

    def other_network(self, peer_id: str, network: str) -> None:
        """For the sync service (its `network_listeners`): `peer_id` named `network`, not ours (DialSchedule). Its next
        dial put off, it may be out of reach now, which nothing else would tell `out_of_reach` when it was heard after
        its disconnection was (the answer to its request still being written as the connection closed, say)."""
        self._schedule.other_network(peer_id, network, trio.current_time())
        self._tell_reach_changed()

    def same_network(self, peer_id: str) -> None:
        """For the sync service (its `same_network_listeners`): `peer_id` is on our network (DialSchedule)."""
        self._schedule.same_network(peer_id)

    async def set_blocked(self, peer_ids: Sequence[str]) -> None:
        """Refuse exactly these peers from now on (Host.set_blocked; InvalidPeerId, before changing anything, for a
        string that is not a PeerID): they are not dialled, and are shown blocked (`known`); those no longer blocked
        are dialled again at once. The schedule takes the host's list once the host has closed the peers'
        connections, or been cancelled doing so. Changes asked at once are made one at a time, in the order asked: a
        first change slower to close its peers' connections than a second would otherwise close those of a peer the
        second unblocked."""
        async with self._blocking:
            try:
                await self._host.set_blocked(peer_ids)
            finally:  # (cancelled as the host closes the peers' connections, the host has taken the list already:
                self._schedule.block(self._host.blocked)  # the dial loop and out_of_reach hear of it all the same)
                self._tell_reach_changed()
                self._wake.set()

    def group_of(self, peer_id: str) -> str | None:
        """The group a peer it keeps connected counts in (GroupCap): None for a bootstrap peer, or one it does not
        keep (it dialled in unasked)."""
        return self._schedule.group(peer_id, self._cap)

    def _horizon_group(self, peer_id: str) -> str | None:
        """The group of the peer's org (vouching.horizon's `group`): None outside the horizon, or for a peer of
        another key type."""
        try:
            return self._replica.horizon.group(peer_org(peer_id))
        except InvalidPeerId:
            return None

    def protects(self, peer_id: str) -> bool:
        """Whether the host must keep `peer_id`'s inbound connection however idle (gossip/host.py quirk 34): a peer
        this manager keeps connected (the config's bootstrap peers, orgs whose `org` records it holds) or one of an
        org inside the horizon, never a stranger."""
        if self._schedule.kept([peer_id]):
            return True
        try:
            return peer_org(peer_id) in self._replica.horizon
        except InvalidPeerId:  # (a peer of another key type: not an org's node)
            return False

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self._host.set_protected(self.protects)
        events = self._host.peer_events()
        now = trio.current_time()
        for peer_id in self._host.connected_peers():  # (the feed tells of these only as they leave)
            self._schedule.connected(peer_id, now)
        dialling = self._dialling
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watch, events)
            task_status.started()
            while True:
                busy = {*self._host.connected_peers(), *dialling}
                budget = min(self._max_peers - len(self._schedule.kept(busy)), MAX_DIALS - len(dialling))
                due = self._schedule.due(trio.current_time(), busy, budget, self._cap)
                for peer_id, addrs in due:
                    dialling.add(peer_id)
                    nursery.start_soon(self._dial, peer_id, addrs, dialling)
                # With the budget spent, only a dial ending or a peer leaving frees one (both wake us): the next
                # due time may be past already, and waking at it would spin.
                next_due = self._schedule.next_due(busy | dialling, self._cap) if budget > len(due) else None
                self._wake = trio.Event()
                with trio.move_on_at(next_due if next_due is not None else math.inf):
                    await self._wake.wait()

    async def _watch(self, events: PeerFeed) -> None:
        async for event in events:
            if event.connected:
                self._schedule.connected(event.peer_id, trio.current_time())
            else:
                self._schedule.disconnected(event.peer_id, trio.current_time(), closed_here=event.closed_here)
                self._tell_reach_changed()
                self._wake.set()

    def _dial_slot(self) -> float:
        """When the next address may be dialled, taken: MAX_DIAL_RATE a second, up to MAX_DIAL_BURST at once."""
        slot = max(self._next_dial, trio.current_time() - (MAX_DIAL_BURST - 1) / MAX_DIAL_RATE)
        self._next_dial = slot + 1 / MAX_DIAL_RATE
        return slot

    async def _dial(self, peer_id: str, addrs: list[str], dialling: set[str]) -> None:
        try:
            failure = "no address"
            for addr in addrs:
                await trio.sleep_until(self._dial_slot())
                self.dials += 1
                try:
                    await self._host.connect(addr)
                except HostError as e:
                    self.dial_failures += 1
                    log.debug("dial %s failed: %s", addr, e)
                    failure = str(e)
                    continue
                return  # (the host's PeerEvent tells the schedule)
            delay = self._schedule.failed(peer_id, trio.current_time(), failure)
            if delay is not None:
                log.info("peer %s unreachable (last: %s); next attempt in %.1f s", peer_id, printable_line(failure),
                         delay)
        finally:
            dialling.discard(peer_id)
            self._tell_reach_changed()
            self._wake.set()
