"""The telemetry side of a node from its data directory, served on loopback with its services running: events
over HTTP and spans from the stock exporter become a signed digest at the epoch's end, ready to gossip."""

import httpx
import pytest
import trio
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from gossip.replica import Replica
from gossip.store import RecordStore
from node.config import load_config
from node.ingest import first_hand
from node.keys import load_org_key
from node.metrics import Registry
from node.setup import init_data_dir
from node.telemetry import Telemetry
from vouching import DigestBody, verify_record

from ..factories import new_did
from .telemetry_node import AUTH, guarded_app, served

AGENT = new_did()


def report_a_tool_call() -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter()))
    attributes = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "transfer", "gen_ai.agent.id": AGENT,
                  "error.type": "PolicyDenied"}
    with provider.get_tracer("agent").start_as_current_span("execute_tool transfer", attributes=attributes):
        pass
    provider.shutdown()


@pytest.mark.slow
async def test_events_and_spans_become_a_digest_ready_to_gossip(tmp_path, monkeypatch):
    made = init_data_dir(tmp_path / "node", network="testnet", listen=("/ip4/127.0.0.1/tcp/0",), api="127.0.0.1:0")
    config_file = made.data_dir / "config.toml"
    config_file.write_text(config_file.read_text().replace("epoch_seconds = 3600.0", "epoch_seconds = 1"))
    config = load_config(made.data_dir)
    key = load_org_key(config.key_path)
    digested, counted = trio.Event(), []
    first_hand_counts = []

    def count_digests(records):  # the events may straddle an epoch's end: wait until all three are digested
        counted.extend(r.body for r in records if r.kind == "digest")
        if sum(body.events for body in counted) == 3:
            digested.set()

    with RecordStore.open(made.data_dir) as store:
        replica = Replica(key, store, roots=config.roots, max_hops=config.max_hops, held_limit=100)
        replica.listeners.append(count_digests)
        telemetry = Telemetry.open(config, key=key, replica=replica, metrics=Registry())
        telemetry.ingestor.listeners.append(lambda batch: first_hand_counts.append(first_hand(batch)))
        try:
            async with trio.open_nursery() as nursery:
                for service in telemetry.services():
                    await nursery.start(service.run)
                routers = telemetry.routers(telemetry.retired_keys(), refused=lambda status, code: None)
                async with served(guarded_app(routers)) as url:
                    async with httpx.AsyncClient(base_url=url, headers=AUTH) as client:
                        event = {"agent": AGENT, "ts": telemetry.audit.now(), "category": "tool", "name": "search",
                                 "outcome": "ok"}
                        response = await client.post("/v1/events", json={"events": [event, event]})
                        assert response.json() == {"accepted": 2, "rejected": []}
                        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"{url}/v1/traces")
                        await trio.to_thread.run_sync(report_a_tool_call)
                        with trio.fail_after(3):
                            await digested.wait()
                        metrics = (await client.get("/metrics")).text
                nursery.cancel_scope.cancel()
        finally:
            telemetry.close()
        stored = [verify_record(raw).body for _, raw in store.query(kind="digest")]
    assert stored == counted and all(isinstance(body, DigestBody) and body.agent == AGENT for body in stored)
    assert [sum(body.outcomes[o] for body in stored) for o in ("ok", "denied")] == [2, 1]
    assert [c[AGENT].outcomes for c in first_hand_counts] == [
        {"ok": 2, "error": 0, "denied": 0, "timeout": 0}, {"ok": 0, "error": 0, "denied": 1, "timeout": 0}]
    assert f"vouchnet_digests_issued_total {len(stored)}" in metrics
    assert "vouchnet_events_accepted_total 3" in metrics


def test_the_openapi_document_lists_every_telemetry_endpoint(tmp_path):
    made = init_data_dir(tmp_path / "node", network="testnet", listen=("/ip4/127.0.0.1/tcp/0",), api="127.0.0.1:0")
    config = load_config(made.data_dir)
    key = load_org_key(config.key_path)
    with RecordStore.open(made.data_dir) as store:
        replica = Replica(key, store, roots=(), max_hops=2, held_limit=100)
        telemetry = Telemetry.open(config, key=key, replica=replica, metrics=Registry())
        try:
            routers = telemetry.routers(telemetry.retired_keys(), refused=lambda status, code: None)
            paths = guarded_app(routers).openapi()["paths"]
        finally:
            telemetry.close()
    assert {"/v1/events", "/v1/traces", "/.well-known/jwks.json", "/v1/records/{record_id}/vc",
            "/v1/credentials/status/{list_number}", "/v1/credentials/vouch-status/{did}/{list_number}", "/v1/stream",
            "/metrics"} <= set(paths)
    assert paths["/v1/events"]["post"]["requestBody"]["content"]["application/json"]["schema"]["required"] == ["events"]
