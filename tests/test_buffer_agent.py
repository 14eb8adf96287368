"""The buffer inside the real agent: `edge-agent run` subprocesses, real signals, a real broker.

- kill -9 while buffering with the broker down, ten times: every committed seq arrives later.
- an outage at a high point rate: the backlog drains oldest-first, many times faster than live
  data arrives, with no gap and duplicates below the in-flight window.
- a corrupt buffer file at start: moved aside, and the agent runs.
"""
from __future__ import annotations

import random
import signal
import sqlite3
import time

import yaml

from conftest import free_port
from e2e import Proc, Subscriber, last_seq, make_site, start_simulator, wait_for
from edge_agent.buffer import tools
from test_buffer_bounds import tmpfs


def committed(path) -> int:
    """The highest seq committed in the agent's buffer (read beside the running agent)."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    except sqlite3.OperationalError:
        return 0
    try:
        return db.execute("SELECT max(seq) FROM messages").fetchone()[0] or 0
    except sqlite3.OperationalError:        # not created yet
        return 0
    finally:
        db.close()


def integrity(path) -> str:
    db = sqlite3.connect(path)
    try:
        return db.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        db.close()


def stop_all(agent: Proc, sim: Proc) -> int:
    """SIGTERM the agent (its exit status), then make sure both processes are gone."""
    try:
        return agent.stop()
    finally:
        agent.kill()
        sim.kill()


def first_arrivals(seqs: list[int]) -> list[int]:
    seen, out = set(), []
    for s in seqs:
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


def test_kill_9_ten_times_while_buffering_then_every_committed_seq_arrives(tmp_path, mosquitto_factory, sim):
    broker = mosquitto_factory(persistent=True)
    Subscriber(broker.port, session="kill9").start().stop()     # the session queues what comes later
    broker.stop()
    site = make_site(tmp_path, sim, broker.url, realtime_every="1s")
    buf = tmp_path / "buffer.sqlite"
    rng = random.Random(4)
    top = 0
    for cycle in range(10):
        agent = Proc(["run", "-c", str(site)], tmp_path / f"agent{cycle}.log")
        try:
            before = top
            wait_for(lambda: committed(buf) > before, 20, f"cycle {cycle}: new rows committed")
            time.sleep(rng.uniform(0.0, 0.5))    # kill at a random point of the commit cycle
        finally:
            agent.proc.send_signal(signal.SIGKILL)
            agent.proc.wait()
            agent.kill()
        assert "Traceback" not in agent.text(), agent.text()[-3000:]
        assert integrity(buf) == "ok", f"cycle {cycle}"
        top = committed(buf)
        assert top > before
    # every seq from 1 to the last commit is in the file: nothing committed was lost
    db = sqlite3.connect(buf)
    assert [s for s, in db.execute("SELECT seq FROM messages ORDER BY seq")] == list(range(1, top + 1))
    db.close()

    broker.start()
    sub = Subscriber(broker.port, session="kill9").start()
    agent = Proc(["run", "-c", str(site)], tmp_path / "agent-final.log")
    try:
        wait_for(lambda: set(range(1, top + 1)) <= set(sub.seqs()), 30, f"every seq up to {top}")
    finally:
        assert agent.stop() == 0, agent.text()[-3000:]
    last = last_seq(agent.text())
    wait_for(lambda: set(range(1, last + 1)) <= set(sub.seqs()), 10, f"every seq up to {last}")
    assert first_arrivals(sub.seqs()) == sorted(first_arrivals(sub.seqs()))   # oldest first
    assert integrity(buf) == "ok"
    sub.stop()


def test_corrupt_buffer_at_start_is_moved_aside_and_the_agent_runs(tmp_path, mosquitto, sim):
    site = make_site(tmp_path, sim, mosquitto.url)
    (tmp_path / "buffer.sqlite").write_bytes(b"\x13garbage, not a database\x00" * 4000)
    sub = Subscriber(mosquitto.port).start()
    agent = Proc(["run", "-c", str(site)], tmp_path / "agent.log")
    try:
        wait_for(lambda: len(sub.payloads("CDSS")) >= 3, 40, "CDSS from the agent on a fresh buffer")
    finally:
        assert agent.stop() == 0, agent.text()[-3000:]
    text = agent.text()
    assert "Traceback" not in text
    assert [line for line in text.splitlines() if "is corrupt" in line and "moved it to" in line]
    assert len(list(tmp_path.glob("buffer.sqlite.corrupt-*"))) == 1
    assert sorted(sub.seqs())[:3] == [1, 2, 3]
    sub.stop()


POINTS, POLL = 1000, 0.2       # 5,000 points/s of live CDSS: one 1000-record message per poll
OUTAGE = 8.0                   # seconds: a 10-minute outage shortened by the high point rate


def high_rate_site(tmp_path, sim_port: int, mqtt_url: str | None, name: str, buffer_path=None):
    """The demo site plus a device of POINTS noisy temperatures, every one reported every poll."""
    path = make_site(tmp_path, sim_port, mqtt_url, name=name, realtime_every="5s")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if buffer_path is not None:
        data["buffer"]["path"] = str(buffer_path)
        # the alarm book (beside the buffer by default) stays off the byte-counted disk
        data["alarms"] = {"path": str(tmp_path / "alarms.sqlite")}
    data["devices"].append({
        "name": "bulk-1", "driver": "modbus-tcp", "host": "127.0.0.1", "port": sim_port, "unit": 9,
        "poll": f"{POLL}s", "timeout": "1s", "location": "大巷",
        "points": [{"id": f"P{i:04d}", "sensor": "0003", "address": f"hr:{2 * i}", "type": "float32",
                    "location": "大巷", "deadband": 0} for i in range(POINTS)]})
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def high_rate_setup(tmp_path, mosquitto_factory, session: str):
    """The high-rate simulator (running) and a persistent broker (stopped) that queues for `session`."""
    port = free_port()
    sim = start_simulator(tmp_path, high_rate_site(tmp_path, port, None, "sim-site.yaml"), port)
    broker = mosquitto_factory(persistent=True)
    Subscriber(broker.port, session=session).start().stop()
    broker.stop()
    return port, sim, broker


def test_outage_at_high_rate_drains_oldest_first_many_times_faster_than_live(tmp_path, mosquitto_factory):
    port, sim, broker = high_rate_setup(tmp_path, mosquitto_factory, "outage")
    site = high_rate_site(tmp_path, port, broker.url, "site.yaml")
    buf = tmp_path / "buffer.sqlite"
    agent = Proc(["run", "-c", str(site)], tmp_path / "agent.log")
    try:
        wait_for(lambda: committed(buf) > 10, 30, "the agent buffering")
        t0, first = time.monotonic(), committed(buf)
        time.sleep(OUTAGE)              # the outage itself: nothing to wait for but time
        live_rate = (committed(buf) - first) / (time.monotonic() - t0)     # messages/s
        st = tools.stats(buf)
        assert st["backlog"]["mqtt"] > OUTAGE * live_rate * 0.8
        assert st["backlog"]["files"] < 10          # the file sink is not held back by MQTT

        broker.start()
        sub = Subscriber(broker.port, session="outage").start()
        wait_for(lambda: any(t.endswith("/status") and b == b"online" for t, b, _ in sub.messages), 30,
                 "the agent reconnecting")
        t_online, backlog_top = time.monotonic(), committed(buf)
        wait_for(lambda: max(sub.seqs(), default=0) >= backlog_top, 30, f"the backlog up to seq {backlog_top}")
        catch_up = time.monotonic() - t_online
        wait_for(lambda: max(sub.seqs(), default=0) >= backlog_top + 10, 20, "live data after the backlog")
    finally:
        rc = stop_all(agent, sim)
    assert rc == 0 and "Traceback" not in agent.text(), agent.text()[-3000:]
    last = last_seq(agent.text())
    wait_for(lambda: set(range(1, last + 1)) <= set(sub.seqs()), 20, f"every seq up to {last}")
    seqs = sub.seqs()
    order = first_arrivals(seqs)
    assert order == sorted(order)                   # oldest first, live data behind the backlog
    dups = len(seqs) - len(set(seqs))
    assert dups < 32                                # below the in-flight window
    drain_rate = backlog_top / catch_up
    print(f"outage {OUTAGE}s at {live_rate:.1f} msg/s ({live_rate * POINTS:.0f} points/s): "
          f"{backlog_top} messages drained in {catch_up:.2f}s ({drain_rate * POINTS:.0f} points/s), {dups} dups")
    # a 10-minute backlog must drain in under 2 minutes: at least 5x the live rate
    assert drain_rate > 5 * live_rate
    sub.stop()


def test_disk_full_agent_survives_logs_once_and_loses_nothing(tmp_path, mosquitto_factory):
    port, sim, broker = high_rate_setup(tmp_path, mosquitto_factory, "diskfull")
    with tmpfs(tmp_path / "mnt", "16m") as mnt:
        ballast = mnt / "ballast"
        ballast.write_bytes(b"\xff" * (14 * 2**20 + 2**19))     # leaves ~1.5 MiB: two seconds of data
        buf = mnt / "buffer.sqlite"
        site = high_rate_site(tmp_path, port, broker.url, "site.yaml", buffer_path=buf)
        agent = Proc(["run", "-c", str(site)], tmp_path / "agent.log")
        try:
            # the buffer's own line (the seq mark beside it may say "cannot write" first)
            wait_for(lambda: "holding new messages in memory" in agent.text(), 30, "the disk filling up")
            full_at = committed(buf)
            time.sleep(2.0)                 # the agent keeps polling into memory meanwhile
            assert agent.proc.poll() is None and committed(buf) == full_at
            ballast.unlink()
            wait_for(lambda: "again" in agent.text(), 10, "the agent writing again")
            assert committed(buf) > full_at + 5       # what was held in memory, and live data after it
            broker.start()
            sub = Subscriber(broker.port, session="diskfull").start()
            top = committed(buf)
            wait_for(lambda: max(sub.seqs(), default=0) >= top, 30, f"seq {top} delivered")
        finally:
            rc = stop_all(agent, sim)
        text = agent.text()
        assert rc == 0 and "Traceback" not in text, text[-3000:]
        lines = text.splitlines()
        assert sum("holding new messages in memory" in line for line in lines) == 1
        assert sum("cannot write the seq mark" in line for line in lines) <= 1
        last = last_seq(text)
        wait_for(lambda: set(range(1, last + 1)) <= set(sub.seqs()), 20, f"every seq up to {last}")
        assert integrity(buf) == "ok"
        sub.stop()
