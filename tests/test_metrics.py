"""/metrics and /health over real loopback HTTP, parsed with prometheus-client's own parser."""
from __future__ import annotations

import asyncio
import copy
import json
import shutil
import socket
import subprocess
import threading
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from edge_agent.errors import EdgeAgentError
from edge_agent.metrics import MetricsServer, exposure_warning, parse_listen

SNAP = {
    "gateway": "gw-01",
    "devices": {
        "gas-substation-1": {"polls": 100, "errors": 2, "timeouts": 1, "skipped": 0, "online": True,
                             "latency_s": 0.012, "last_poll": 1_790_000_000.5},
        "belt-1": {"polls": 50, "errors": 7, "timeouts": 7, "skipped": 3, "online": False, "latency_s": None},
    },
    "sinks": {"mqtt": {"published": 40, "acked": 38, "inflight": 2, "reconnects": 1, "connected": True},
              "files": {"published": 10, "acked": 10, "inflight": 0, "reconnects": 0, "connected": True}},
    "buffer": {"rows": 120, "bytes": 45_000, "oldest_age": 3.5, "drops": {"CDSS": 4},
               "backlog": {"mqtt": 2, "files": 0}},
    "kernel": {"alarms_active": 1, "points": 9},
    "health": {"state": "ok", "reasons": []},
}


class Source:
    """The agent's side: a snapshot that changes, and a count of how often it was taken."""

    def __init__(self):
        self.snap = copy.deepcopy(SNAP)
        self.calls = 0

    def __call__(self) -> dict:
        self.calls += 1
        return copy.deepcopy(self.snap)


def get(url: str, timeout: float = 5.0) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode()


def samples(text: str) -> dict[tuple, float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def types(text: str) -> dict[str, str]:
    return {fam.name: fam.type for fam in text_string_to_metric_families(text)}


def run_with_server(body, source=None, **kw):
    """Run `body(server, source)` in a thread while the server lives in a running loop."""
    source = source or Source()

    async def main():
        async with MetricsServer("127.0.0.1:0", source, **kw) as srv:
            return await asyncio.to_thread(body, srv, source)

    return asyncio.run(asyncio.wait_for(main(), 30))


def test_metrics_parse_and_counters_move_with_the_snapshot():
    def body(srv, src):
        code, ctype, text = get(srv.url + "/metrics")
        assert code == 200 and ctype.startswith("text/plain")
        first = samples(text)
        src.snap["devices"]["gas-substation-1"]["polls"] += 5
        src.snap["devices"]["belt-1"]["errors"] += 1
        src.snap["sinks"]["mqtt"]["acked"] += 2
        src.snap["buffer"]["drops"]["TJSJ"] = 1
        src.snap["kernel"]["alarms_active"] = 0
        code, _, text2 = get(srv.url + "/metrics")
        return first, samples(text2), types(text2), src.calls

    first, second, kinds, calls = run_with_server(body)
    g = ("device", "gas-substation-1")
    assert first[("edge_agent_device_polls_total", (g,))] == 100
    assert second[("edge_agent_device_polls_total", (g,))] == 105
    assert second[("edge_agent_device_errors_total", (("device", "belt-1"),))] == 8
    assert first[("edge_agent_device_timeouts_total", (("device", "belt-1"),))] == 7
    assert first[("edge_agent_device_skipped_total", (("device", "belt-1"),))] == 3
    assert first[("edge_agent_device_online", (g,))] == 1 and first[("edge_agent_device_online", (("device", "belt-1"),))] == 0
    assert first[("edge_agent_device_poll_latency_seconds", (g,))] == pytest.approx(0.012)
    # None values are left out rather than reported as 0
    assert ("edge_agent_device_poll_latency_seconds", (("device", "belt-1"),)) not in first
    assert first[("edge_agent_device_last_poll_timestamp_seconds", (g,))] == pytest.approx(1_790_000_000.5)
    assert first[("edge_agent_sink_acked_total", (("sink", "mqtt"),))] == 38
    assert second[("edge_agent_sink_acked_total", (("sink", "mqtt"),))] == 40
    assert first[("edge_agent_sink_inflight", (("sink", "mqtt"),))] == 2
    assert first[("edge_agent_sink_reconnects_total", (("sink", "mqtt"),))] == 1
    assert first[("edge_agent_sink_connected", (("sink", "files"),))] == 1
    assert first[("edge_agent_buffer_rows", ())] == 120
    assert first[("edge_agent_buffer_bytes", ())] == 45_000
    assert first[("edge_agent_buffer_oldest_age_seconds", ())] == 3.5
    assert first[("edge_agent_buffer_backlog", (("sink", "mqtt"),))] == 2
    assert first[("edge_agent_buffer_dropped_total", (("type", "CDSS"),))] == 4
    assert second[("edge_agent_buffer_dropped_total", (("type", "TJSJ"),))] == 1
    assert first[("edge_agent_alarms_active", ())] == 1 and second[("edge_agent_alarms_active", ())] == 0
    assert first[("edge_agent_points", ())] == 9
    assert first[("edge_agent_health", (("state", "ok"),))] == 1
    assert first[("edge_agent_health", (("state", "down"),))] == 0
    info = [k for k in first if k[0] == "edge_agent_build_info"]
    assert info and dict(info[0][1])["gateway"] == "gw-01"
    assert ("process_resident_memory_bytes", ()) in first
    assert kinds["edge_agent_device_polls"] == "counter" and kinds["edge_agent_buffer_rows"] == "gauge"
    # read at scrape time only: exactly one snapshot per scrape, none in between
    assert calls == 2


def test_health_codes_follow_the_state():
    def body(srv, src):
        out = [get(srv.url + "/health")]
        src.snap["health"] = {"state": "degraded", "reasons": ["belt-1: no answer for 30s"]}
        out.append(get(srv.url + "/health"))
        src.snap["health"] = {"state": "down", "reasons": ["buffer: disk full"]}
        out.append(get(srv.url + "/health"))
        src.snap["health"] = {"state": "sideways"}
        out.append(get(srv.url + "/health"))
        return out

    (c1, t1, b1), (c2, _, b2), (c3, _, b3), (c4, _, b4) = run_with_server(body)
    assert (c1, c2, c3, c4) == (200, 503, 503, 503)
    assert t1 == "application/json"
    ok = json.loads(b1)
    assert ok["state"] == "ok" and ok["reasons"] == []
    assert ok["devices"]["gas-substation-1"] == {"online": True, "last_poll": 1_790_000_000.5, "polls": 100,
                                                 "errors": 2, "skipped": 0}
    assert ok["devices"]["belt-1"]["online"] is False
    assert json.loads(b2)["reasons"] == ["belt-1: no answer for 30s"]
    assert json.loads(b3)["state"] == "down"
    assert json.loads(b4)["state"] == "down" and "sideways" in json.loads(b4)["reasons"][0]


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed here")
def test_curl_fail_flag_sees_the_state():
    def body(srv, src):
        ok = subprocess.run(["curl", "-fsS", srv.url + "/health"], capture_output=True, timeout=10)
        src.snap["health"] = {"state": "degraded", "reasons": ["uplink down"]}
        bad = subprocess.run(["curl", "-fsS", srv.url + "/health"], capture_output=True, timeout=10)
        return ok, bad

    ok, bad = run_with_server(body)
    assert ok.returncode == 0 and b'"state":"ok"' in ok.stdout
    assert bad.returncode == 22   # curl: HTTP error with -f


def test_wedged_loop_reads_as_down_and_metrics_unavailable():
    """The snapshot runs in the agent's loop: a loop that does not answer is reported, not hidden."""
    results: dict = {}

    async def main():
        async with MetricsServer("127.0.0.1:0", Source(), loop_timeout=0.3) as srv:
            def scrape():
                results["health"] = get(srv.url + "/health")
                results["metrics"] = get(srv.url + "/metrics")
            t = threading.Thread(target=scrape)
            t.start()
            t.join(10)   # deliberately blocking: the loop cannot answer while both requests run
            assert not t.is_alive()
            results["after"] = await asyncio.to_thread(get, srv.url + "/health")

    asyncio.run(asyncio.wait_for(main(), 20))
    code, _, body = results["health"]
    assert code == 503
    assert json.loads(body)["reasons"] == ["event loop not responding for 0.3s"]
    assert results["metrics"][0] == 503
    assert results["after"][0] == 200


def test_a_failing_snapshot_is_reported_not_hidden():
    def broken() -> dict:
        raise KeyError("devices")

    def body(srv, src):
        return get(srv.url + "/health"), get(srv.url + "/metrics"), get(srv.url + "/nope"), get(srv.url + "/")

    (hc, _, hb), (mc, _, mb), (nc, _, _), (rc, _, rb) = run_with_server(body, source=broken)
    assert hc == 503 and "snapshot failed" in json.loads(hb)["reasons"][0]
    assert mc == 500 and "snapshot failed" in mb
    assert nc == 404
    assert rc == 200 and "/metrics" in rb


def test_without_a_loop_and_partial_snapshot():
    """start()/stop() outside asyncio; a snapshot with only some keys still renders."""
    srv = MetricsServer("127.0.0.1:0", lambda: {"health": {"state": "ok"}, "buffer": {"rows": 3}})
    srv.start()
    try:
        code, _, text = get(srv.url + "/metrics")
        assert code == 200
        s = samples(text)
        assert s[("edge_agent_buffer_rows", ())] == 3
        assert not any(k[0].startswith("edge_agent_device_") for k in s)
        assert get(srv.url + "/health")[0] == 200
    finally:
        srv.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", srv.port), timeout=1).close()


def test_port_in_use_is_one_clear_line():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]

        async def main():
            async with MetricsServer(f"127.0.0.1:{port}", Source()):
                pass

        with pytest.raises(EdgeAgentError) as e:
            asyncio.run(main())
    msg = str(e.value)
    assert msg.startswith("metrics.listen: cannot listen on 127.0.0.1:") and "\n" not in msg
    assert "metrics.enabled: false" in msg


def test_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")

    async def main():
        async with MetricsServer("[::1]:0", Source()) as srv:
            assert srv.url.startswith("http://[::1]:")
            return await asyncio.to_thread(get, srv.url + "/health")

    assert asyncio.run(main())[0] == 200


@pytest.mark.parametrize("text, expected", [("127.0.0.1:9108", ("127.0.0.1", 9108)), ("9108", ("127.0.0.1", 9108)),
                                            ("[::1]:9200", ("::1", 9200)), ("localhost:1", ("localhost", 1)),
                                            ("0.0.0.0:9108", ("0.0.0.0", 9108))])
def test_parse_listen(text, expected):
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["127.0.0.1", "http://127.0.0.1:9108", "host:99999", ":9108", ""])
def test_parse_listen_rejects(text):
    with pytest.raises(EdgeAgentError, match="metrics.listen"):
        parse_listen(text)


def test_listening_beyond_loopback_is_warned_about():
    assert exposure_warning("127.0.0.1") is None and exposure_warning("::1") is None
    assert exposure_warning("localhost") is None
    for host in ("0.0.0.0", "10.20.1.5", "gateway.local"):
        assert "no authentication" in exposure_warning(host)
