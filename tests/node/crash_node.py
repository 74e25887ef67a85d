"""Crash safety of the whole node (README: "Running a node"; DESIGN §1-§2, §8): two real `vouchnet run`
processes on loopback, A under mixed load, killed (SIGKILL) or stopped (SIGTERM) at random moments and restarted.

Load on A: API vouches and revocations and POST /v1/events batches, with an Idempotency-Key each, and POST
/v1/traces requests (OTLP/JSON spans, each with its own trace and span ids); on B: vouches, which reach A by gossip
and sync. Both issue digests (epoch_seconds = 1) and sign and cosign checkpoints.

After each restart of A: every record A answered 2xx for is there; every key of an answered event batch, vouch
or revocation, retried, gets the first reply, replayed; every answered traces request, retried, is told all its
spans were stored already; once every key and traces request was retried (the ones in flight at the kill too), the
audit log holds exactly the events their replies accepted and one event per span, and A's own vouches and revokes are
exactly the records their replies name; neither node flags A; A's log state is "ok".
At the end: every vouch B answered reached A; `vouchnet log verify` (consistent with every checkpoint verified
after an earlier restart) and `vouchnet audit export` then `audit verify` pass. Used by
tests/node/test_node_crash.py (a few kills) and benchmarks/node_crash.py (many).
"""

from __future__ import annotations

import json
import random
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from nacl.signing import SigningKey

from node.keys import load_org_key
from node.logs import logfmt_fields
from vouching import did_key

from .forked_cli import ForkedCli, ForkedProcess

_ROOT = Path(__file__).resolve().parents[2]
_START_SECONDS = 60.0
STOP_SECONDS = 2.0  # README: SIGINT or SIGTERM stops the node within 2 seconds


class CrashCheckFailed(AssertionError):
    """A check after a restart failed; the message names which, and the seed to replay it."""


@dataclass
class NodeProcess:
    """One node's data directory and, while it runs, its `vouchnet run` process, forked by `cli` from a process that
    imported the node once (most of a start's seconds), its stderr appended to `log`; with `preexec` (a lowered
    RLIMIT_FSIZE), a process of its own that writes `log` through a pipe, which the limit does not reach. It listens
    on loopback ports the OS picks at each start, read from its "node running" line: a port found free and handed to
    the node, or one it freed at a kill, could be taken by another process before the node listened on it."""

    data_dir: Path
    cli: ForkedCli  # for `vouchnet init`, `vouchnet run` and the checks' commands
    preexec: Callable[[], None] | None = None
    process: subprocess.Popen[bytes] | ForkedProcess | None = None
    starts: int = 0
    start_seconds: float = 0.0  # how long the last start took
    api: str | None = None  # while it runs: its API's URL
    listen: str | None = None  # and its libp2p address, with its peer id

    @property
    def url(self) -> str:
        if self.api is None:
            raise CrashCheckFailed(f"{self.data_dir.name} is not running")
        return self.api

    @property
    def log(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}.log"

    @property
    def token(self) -> str:
        return (self.data_dir / "api.token").read_text().strip()

    def init(self, *, network: str, settings: dict[str, str] | None = None) -> None:
        done = self.cli.run(["init", "--dir", str(self.data_dir), "--network", network,
                             "--listen", "/ip4/127.0.0.1/tcp/0", "--api", "127.0.0.1:0"])
        assert done.returncode == 0, done.stderr
        self.configure(settings or {})

    def configure(self, settings: dict[str, str]) -> None:
        """Set keys of config.toml, each unique in it, to TOML values."""
        config = self.data_dir / "config.toml"
        text = config.read_text()
        for key, value in settings.items():
            lines = [line for line in text.splitlines() if line.startswith(f"{key} = ")]
            assert len(lines) == 1, key
            text = text.replace(lines[0], f"{key} = {value}")
        config.write_text(text)

    def start(self, *, kill_after: float | None = None) -> bool:
        """Start `vouchnet run` and wait until it logs that it runs (True); CrashCheckFailed if it exits first. With
        `kill_after`, SIGKILL it if it does not run that many seconds after it was started (False)."""
        assert self.process is None
        begun = time.monotonic()
        self.log.touch()
        logged = self.log.read_text().count("node running")
        command = ["run", "--dir", str(self.data_dir)]
        if self.preexec is None:
            self.process = self.cli.spawn(command, self.log)
        else:
            self.process = subprocess.Popen([sys.executable, "-m", "node.cli", *command], cwd=_ROOT,
                                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=self.preexec)
            threading.Thread(target=_copy, args=(self.process.stderr, self.log), daemon=True).start()
        deadline = time.monotonic() + _START_SECONDS
        while self.log.read_text().count("node running") == logged:
            if self.process.poll() is not None or time.monotonic() > deadline:
                code = self.process.poll()
                self.stop(signal.SIGKILL)
                tail = "\n".join(self.log.read_text().splitlines()[-15:])
                raise CrashCheckFailed(f"{self.data_dir.name} did not start (exit {code}):\n{tail}")
            if kill_after is not None and time.monotonic() - begun > kill_after:
                self.stop(signal.SIGKILL)
                return False
            time.sleep(0.05)
        running = logfmt_fields([line for line in self.log.read_text().splitlines() if "node running" in line][-1])
        self.api, self.listen = running["api"], running["listen"].split(",")[0]
        self.starts += 1
        self.start_seconds = time.monotonic() - begun
        return True

    def stop(self, how: signal.Signals) -> float:
        """Signal the process and wait for it to end; the seconds that took."""
        process, self.process = self.process, None
        self.api = self.listen = None
        if process is None:
            return 0.0
        begun = time.monotonic()
        if process.poll() is None:
            process.send_signal(how)
        try:
            code = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise CrashCheckFailed(f"{self.data_dir.name} did not exit within 30 s of {how.name}") from None
        took = time.monotonic() - begun
        if how != signal.SIGKILL and code != 0:
            raise CrashCheckFailed(f"{self.data_dir.name} exited with {code} on {how.name}")
        return took

    def client(self, timeout: float = 5.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=timeout)

    def info(self) -> dict[str, Any]:
        with self.client() as client:
            return client.get("/v1/node").raise_for_status().json()


def _copy(stream: Any, path: Path) -> None:
    with open(path, "ab") as out:
        for line in stream:
            out.write(line)
            out.flush()


@dataclass
class Acknowledged:
    """What the nodes answered 2xx for, and the event batches sent (answered or not)."""

    records: list[str] = field(default_factory=list)  # ids of records A created
    vouches: list[str] = field(default_factory=list)  # ids of A's vouches not yet revoked (or revoking)
    peer_records: list[str] = field(default_factory=list)  # ids of vouches B created
    batches: dict[str, tuple[bytes, dict[str, Any] | None]] = field(default_factory=dict)  # key: (body, reply)
    # A's vouches and revocations sent, answered or not: key: (path, body, the record id answered)
    writes: dict[str, tuple[str, dict[str, Any], str | None]] = field(default_factory=dict)
    traces: dict[str, tuple[bytes, int, bool]] = field(default_factory=dict)  # trace id: (body, spans, answered)
    agents: list[str] = field(default_factory=list)
    checked: tuple[int, int, int] = (0, 0, 0)  # records, batches and traces checked after earlier restarts
    lock: threading.Lock = field(default_factory=threading.Lock)


def _agent() -> str:
    return did_key(bytes(SigningKey.generate().verify_key))


class Load:
    """Threads writing to A (vouches, revocations, event batches, spans) and B (vouches) until stopped."""

    def __init__(self, a: NodeProcess, b: NodeProcess, acks: Acknowledged, rng: random.Random) -> None:
        self._a, self._b, self._acks, self._rng = a, b, acks, rng
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._guarded, args=(work,), daemon=True)
                         for work in (self._vouches, self._events, self._events, self._traces, self._peer_vouches)]
        self.errors: list[str] = []

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _guarded(self, work: Callable[[httpx.Client], None]) -> None:
        node = self._b if work == self._peer_vouches else self._a
        with httpx.Client(headers={"Authorization": f"Bearer {node.token}"}, timeout=3.0) as client:
            while not self._stop.is_set():
                url = node.api  # where it listens since its last start
                if url is None:
                    time.sleep(0.05)  # the node is down (killed, restarting)
                    continue
                client.base_url = url
                try:
                    work(client)
                except httpx.HTTPError:
                    time.sleep(0.05)  # killed meanwhile: no answer, nothing acknowledged
                time.sleep(self._rng.uniform(0, 0.05))  # leave the nodes some of the machine's two cores

    def _status(self, response: httpx.Response, expected: int) -> None:
        """A refusal the load should never meet is kept for the checks."""
        if response.status_code != expected:
            self.errors.append(f"{response.request.method} {response.request.url.path}: {response.status_code} "
                               f"{response.text[:300]}")

    def _vouches(self, client: httpx.Client) -> None:
        acks = self._acks
        with acks.lock:
            revoke = acks.vouches.pop(self._rng.randrange(len(acks.vouches))) if len(acks.vouches) > 3 and \
                self._rng.random() < 0.3 else None
        path, body = (("/v1/vouches", {"subject": _agent(), "weight": 0.5, "basis": "operator"}) if revoke is None
                      else ("/v1/revocations", {"record": revoke, "reason": "crash test"}))
        key = f"w-{self._rng.getrandbits(64):016x}"
        with acks.lock:
            acks.writes[key] = (path, body, None)  # sent: it may be signed, answered or not
        response = client.post(path, json=body, headers={"Idempotency-Key": key})
        self._status(response, 201)
        if response.status_code == 201:
            rid = response.json()["id"]
            with acks.lock:
                acks.records.append(rid)
                acks.writes[key] = (path, body, rid)
                if revoke is None:
                    acks.vouches.append(rid)

    def _events(self, client: httpx.Client) -> None:
        acks = self._acks
        now = int(time.time() * 1000)
        events = [{"agent": self._rng.choice(acks.agents), "ts": now, "category": "tool", "name": "search",
                   "outcome": self._rng.choice(("ok", "ok", "error"))} for _ in range(self._rng.randint(1, 40))]
        events.append({"agent": "not a did", "ts": now, "category": "tool", "name": "x", "outcome": "ok"})
        body = json.dumps({"events": events}).encode()
        key = f"k-{self._rng.getrandbits(64):016x}"
        with acks.lock:
            acks.batches[key] = (body, None)  # sent: it may be stored, answered or not
        response = client.post("/v1/events", content=body, headers={"Idempotency-Key": key,
                                                                    "Content-Type": "application/json"})
        self._status(response, 200)
        if response.status_code == 200:
            with acks.lock:
                acks.batches[key] = (body, response.json())

    def _traces(self, client: httpx.Client) -> None:
        acks, now = self._acks, time.time_ns()
        trace = f"{self._rng.getrandbits(128):032x}"
        attributes = [{"key": "gen_ai.agent.id", "value": {"stringValue": self._rng.choice(acks.agents)}},
                      {"key": "gen_ai.operation.name", "value": {"stringValue": "execute_tool"}},
                      {"key": "gen_ai.tool.name", "value": {"stringValue": "search"}}]
        spans = [{"traceId": trace, "spanId": f"{i + 1:016x}", "name": "execute_tool", "kind": 1,
                  "startTimeUnixNano": str(now), "endTimeUnixNano": str(now + 10**6), "attributes": attributes,
                  "status": {}} for i in range(self._rng.randint(1, 20))]
        body = json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]}).encode()
        with acks.lock:
            acks.traces[trace] = (body, len(spans), False)  # sent: it may be stored, answered or not
        response = client.post("/v1/traces", content=body, headers={"Content-Type": "application/json"})
        self._status(response, 200)
        if response.status_code == 200:
            with acks.lock:
                acks.traces[trace] = (body, len(spans), True)

    def _peer_vouches(self, client: httpx.Client) -> None:
        response = client.post("/v1/vouches", json={"subject": _agent(), "weight": 0.5, "basis": "operator"})
        self._status(response, 201)
        if response.status_code == 201:
            with self._acks.lock:
                self._acks.peer_records.append(response.json()["id"])
        time.sleep(0.02)


def _metric(client: httpx.Client, name: str) -> float:
    for line in client.get("/metrics").raise_for_status().text.splitlines():
        if line.startswith(f"vouchnet_{name} ") or line.startswith(f"{name} "):
            return float(line.split()[-1])
    raise CrashCheckFailed(f"/metrics: no {name}")


def check_after_restart(a: NodeProcess, b: NodeProcess, acks: Acknowledged, *, retry_all: bool) -> None:
    """The checks after a restart of A (module docstring): what was answered since the last check, and a sample of
    what was before; `retry_all` retries every batch key, then counts the audit log's events."""
    with acks.lock:
        records, batches, writes, traces = list(acks.records), dict(acks.batches), dict(acks.writes), dict(acks.traces)
    seen, acks.checked = acks.checked, (len(records), len(batches), len(traces))
    if not retry_all:
        sample = random.Random(len(records))
        records = records[seen[0]:] + sample.sample(records[:seen[0]], min(seen[0], 50))
        batches = _new_and_some_old(batches, seen[1], sample)
        writes = dict(sample.sample(sorted(writes.items()), min(len(writes), 50)))
        traces = _new_and_some_old(traces, seen[2], sample)
    with a.client(timeout=30.0) as client:
        for rid in records:
            if client.get(f"/v1/records/{rid}").status_code != 200:
                raise CrashCheckFailed(f"record {rid}, answered 201 before a kill, is not at A")
        for key, (body, reply) in batches.items():
            if reply is None and not retry_all:
                continue
            response = client.post("/v1/events", content=body, headers={"Idempotency-Key": key,
                                                                        "Content-Type": "application/json"})
            if response.status_code != 200:
                raise CrashCheckFailed(f"batch {key} retried: {response.status_code} {response.text[:300]}")
            if reply is not None and (response.json() != reply or response.headers.get("Idempotent-Replayed")
                                      != "true"):
                raise CrashCheckFailed(f"batch {key}, answered {reply} before a kill, is answered {response.json()} "
                                       f"({response.headers.get('Idempotent-Replayed')}) after it")
            batches[key] = (body, response.json())
        for key, (path, body, rid) in writes.items():
            if rid is None and not retry_all:
                continue
            response = client.post(path, json=body, headers={"Idempotency-Key": key})
            if response.status_code != 201:
                raise CrashCheckFailed(f"{path} {key} retried: {response.status_code} {response.text[:300]}")
            if rid is not None and (response.json()["id"] != rid or response.headers.get("Idempotent-Replayed")
                                    != "true"):
                raise CrashCheckFailed(f"{path} {key}, answered {rid} before a kill, is answered "
                                       f"{response.json()['id']} ({response.headers.get('Idempotent-Replayed')}) "
                                       "after it")
            writes[key] = (path, body, response.json()["id"])
        spans = _retry_traces(client, traces, retry_all=retry_all)
        if retry_all:
            with acks.lock:
                acks.batches.update(batches)
                acks.writes.update(writes)
            accepted = sum(reply["accepted"] for _, reply in batches.values() if reply is not None)
            stored = _metric(client, "audit_entries")
            if stored != accepted + spans:
                raise CrashCheckFailed(f"the audit log holds {stored} events; the replies accepted {accepted}, and "
                                       f"{spans} spans were sent")
            signed = sorted(_own(client, a.info()["did"], "vouch") + _own(client, a.info()["did"], "revoke"))
            # (a run whose writes carried no key, as run_disk_full's, checks its vouches by their answers instead)
            if writes and signed != sorted(rid for _, _, rid in writes.values()):
                raise CrashCheckFailed(f"A signed {len(signed)} vouches and revokes; {len(writes)} keys were sent")
    for node in (a, b):
        info = node.info()
        if info["flagged"]:
            raise CrashCheckFailed(f"{node.data_dir.name} flags {info['flagged']}")
        if node is a and info["log"].get("state", "ok") != "ok":
            raise CrashCheckFailed(f"A's log: {info['log']}")


def _new_and_some_old(sent: dict[str, Any], seen: int, sample: random.Random) -> dict[str, Any]:
    """What was sent since the last check, and a sample of 50 of what was before."""
    old = list(sent)[:seen]
    return {k: sent[k] for k in list(sent)[seen:] + sample.sample(old, min(len(old), 50))}


def _retry_traces(client: httpx.Client, traces: dict[str, tuple[bytes, int, bool]], *, retry_all: bool) -> int:
    """Retry the answered traces requests (`retry_all`: every one): each must be told that all its spans were stored
    already (an answered one) or be stored now; the spans of the requests retried."""
    spans = 0
    for trace, (body, count, answered) in traces.items():
        if not (answered or retry_all):
            continue
        response = client.post("/v1/traces", content=body, headers={"Content-Type": "application/json"})
        if response.status_code != 200:
            raise CrashCheckFailed(f"traces {trace} retried: {response.status_code} {response.text[:300]}")
        told = response.json().get("partialSuccess", {}).get("errorMessage", "")
        if answered and not told.startswith(f"{count} span(s) already received"):
            raise CrashCheckFailed(f"traces {trace}, {count} spans answered 200 before a kill, retried: {told!r}")
        spans += count
    return spans


def check_at_end(a: NodeProcess, b: NodeProcess, acks: Acknowledged, *, wait: float = 30.0) -> None:
    """Every vouch B answered reached A; `vouchnet log verify` and `audit export`, `audit verify` pass."""
    deadline = time.monotonic() + wait
    with a.client() as client:
        for rid in acks.peer_records:
            while client.get(f"/v1/records/{rid}").status_code != 200:
                if time.monotonic() > deadline:
                    raise CrashCheckFailed(f"B's vouch {rid} never reached A")
                time.sleep(0.2)
    verified = a.cli.run(["log", "verify", "--api", a.url, "--cache", str(a.data_dir / "verified.checkpoint")])
    if verified.returncode != 0:
        raise CrashCheckFailed(f"vouchnet log verify: {verified.stdout}{verified.stderr}")
    out = a.data_dir.parent / "export.json"
    for agent in acks.agents[:2]:
        exported = a.cli.run(["audit", "export", "--dir", str(a.data_dir), "--agent", agent, "--from", "1970-01-01",
                              "--to", str(int(time.time() * 1000) + 3_600_000), "--out", str(out)], timeout=600)
        if exported.returncode != 0:
            raise CrashCheckFailed(f"vouchnet audit export: {exported.stderr}")
        checked = a.cli.run(["audit", "verify", str(out)])
        if checked.returncode != 0:
            raise CrashCheckFailed(f"vouchnet audit verify: {checked.stdout}{checked.stderr}")


SETTINGS = {"epoch_seconds": "1", "checkpoint_interval": "0.5", "gossip_interval": "1.0", "sync_interval": "1.0",
            "startup_sync_seconds": "3.0"}


def two_nodes(workdir: Path, cli: ForkedCli, *, preexec: Callable[[], None] | None = None
              ) -> tuple[NodeProcess, NodeProcess]:
    """B started; A initialised to dial it (not started). Each follows the other as a root: B replicates A's records
    and cosigns its checkpoints."""
    a = NodeProcess(workdir / "a", cli, preexec=preexec)
    a.init(network="crash", settings=SETTINGS)
    b = NodeProcess(workdir / "b", cli)
    b.init(network="crash", settings={**SETTINGS, "roots": json.dumps([_did(a)])})
    b.start()
    a.configure({"roots": json.dumps([_did(b)]), "bootstrap": json.dumps([b.listen])})
    return a, b


def _did(node: NodeProcess) -> str:
    return did_key(bytes(load_org_key(node.data_dir / "org.key").verify_key))


@dataclass(frozen=True)
class Report:
    kills: int
    terms: int
    startup_kills: int
    records: int
    batches: int
    peer_records: int
    slowest_stop: float
    seconds: float


def run(workdir: Path, stops: int, seed: int, *, sigterm_share: float = 0.5, most_seconds: float = 3.0,
        startup_kill_share: float = 0.25, signals: Sequence[signal.Signals] = ()) -> Report:
    """`stops` SIGKILLs or SIGTERMs of A under load (`signals` in turn, then random by `sigterm_share`), checking
    after each restart and at the end; after a share of them, the restart is killed midway too."""
    rng = random.Random(seed)
    begun = time.monotonic()
    cli = ForkedCli(workdir / "cli")  # closed at the end, with the nodes
    a, b = two_nodes(workdir, cli)
    acks = Acknowledged(agents=[_agent() for _ in range(4)])
    kills = terms = startup_kills = 0
    slowest = 0.0
    try:
        a.start()
        load = Load(a, b, acks, random.Random(rng.getrandbits(64)))
        with load:
            for n in range(stops):
                time.sleep(rng.uniform(0.2, most_seconds))
                how = signals[n] if n < len(signals) else \
                    signal.SIGTERM if rng.random() < sigterm_share else signal.SIGKILL
                took = a.stop(how)
                if how == signal.SIGTERM:
                    terms += 1
                    slowest = max(slowest, took)
                    if took > STOP_SECONDS:
                        raise CrashCheckFailed(f"stop {n}: SIGTERM took {took:.2f} s (seed {seed})")
                else:
                    kills += 1
                midway = rng.uniform(0.3, 1.0) * a.start_seconds
                if rng.random() < startup_kill_share and not a.start(kill_after=midway):
                    startup_kills += 1
                if a.process is None:
                    a.start()
                check_after_restart(a, b, acks, retry_all=False)
        if load.errors:
            raise CrashCheckFailed(f"refused under load (seed {seed}): {load.errors[:5]}")
        check_after_restart(a, b, acks, retry_all=True)
        check_at_end(a, b, acks)
    except CrashCheckFailed as failed:
        raise CrashCheckFailed(f"{failed} (seed {seed}; logs in {a.log}, {b.log})") from None
    finally:
        a.stop(signal.SIGKILL)
        b.stop(signal.SIGKILL)
        cli.close()
    return Report(kills, terms, startup_kills, len(acks.records), len(acks.batches), len(acks.peer_records), slowest,
                  time.monotonic() - begun)


def _own(client: httpx.Client, did: str, kind: str) -> list[str]:
    """The ids of the records of `kind` that `did` issued and A stores, a page at a time."""
    ids: list[str] = []
    after = None
    while True:
        page = client.get("/v1/records", params={"issuer": did, "kind": kind, "limit": 500,
                                                 **({} if after is None else {"after": after})})
        body = page.raise_for_status().json()
        ids += [record["id"] for record in body["records"]]
        if (after := body["next"]) is None:
            return ids


def _own_vouches(a: NodeProcess) -> list[str]:
    """The ids of the vouches A issued and stores."""
    with a.client() as client:
        return _own(client, a.info()["did"], "vouch")


def _file_size_limit(limit: int) -> Callable[[], None]:
    """A preexec_fn: files the node writes stop at `limit` bytes (EFBIG, as on a full disk; SIGXFSZ ignored)."""
    def lower() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    return lower


@dataclass(frozen=True)
class DiskFullReport:
    refused: int  # writes answered 503 while the files could not grow
    answered: int  # writes answered 2xx, all there afterwards


def run_disk_full(workdir: Path, *, limit: int = 1 << 20, writes: int = 150) -> DiskFullReport:
    """One node whose files cannot grow past `limit`: vouches and keyed event batches until they are refused (503,
    "storage", never another error), then the limit lifted while it runs: the same writes are taken again, and
    every one answered before is there (records by id, batches replayed), and no refused vouch."""
    with ForkedCli(workdir / "cli", preload=("node.cli",)) as cli:  # for the init alone
        a = NodeProcess(workdir / "a", cli, preexec=_file_size_limit(limit))
        a.init(network="full", settings={"epoch_seconds": "1", "checkpoint_interval": "0.5"})
    acks = Acknowledged(agents=[_agent() for _ in range(3)])
    refused = 0
    a.start()
    try:
        assert a.process is not None
        with a.client() as client:
            for phase in ("full", "space back"):
                if phase == "space back":
                    resource.prlimit(a.process.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY,) * 2)
                for n in range(writes):
                    agent = acks.agents[n % 3]
                    event = {"agent": agent, "ts": int(time.time() * 1000), "category": "tool", "name": "search",
                             "outcome": "ok", "attrs": {"padding": "x" * 200}}
                    body = json.dumps({"events": [event] * 5}).encode()
                    key = f"{phase}-{n}"
                    answers = [client.post("/v1/events", content=body, headers={
                        "Idempotency-Key": key, "Content-Type": "application/json"}),
                        client.post("/v1/vouches", json={"subject": agent, "weight": 0.5, "basis": "operator"})]
                    for response in answers:
                        if response.status_code == 503 and response.json()["error"] == "storage" and phase == "full":
                            refused += 1
                        elif response.status_code not in (200, 201):
                            raise CrashCheckFailed(f"{phase}: {response.request.url.path}: {response.status_code} "
                                                   f"{response.text[:300]}")
                    if answers[0].status_code == 200:
                        acks.batches[key] = (body, answers[0].json())
                    if answers[1].status_code == 201:
                        acks.records.append(answers[1].json()["id"])
                if a.process.poll() is not None:
                    raise CrashCheckFailed(f"{phase}: the node exited with {a.process.poll()}")
        check_after_restart(a, a, acks, retry_all=True)  # (not restarted: the same checks while it runs)
        vouches = _own_vouches(a)
        if sorted(vouches) != sorted(acks.records):
            raise CrashCheckFailed(f"A stores {len(vouches)} vouches of its own, {len(acks.records)} were answered "
                                   "201: a refused one was kept")
        if "Traceback" in a.log.read_text():
            raise CrashCheckFailed(f"a traceback in {a.log}")
    finally:
        a.stop(signal.SIGKILL)
    return DiskFullReport(refused, len(acks.records) + len(acks.batches))
