#!/usr/bin/env python3
"""An hour of abuse: 10,000 points/s through `edge-agent run` while everything around it misbehaves.

    python bench/abuse.py --minutes 60 --json          # the issue's hour
    python bench/abuse.py --minutes 10                 # shorter; the faults keep their periods

Starts, each in its own process: the prepared-answer Modbus simulator for 50 devices x 200 float32
points polled every 1 s (10,000 points/s), a second simulator for one more device that is killed
and restarted every `--flap` s (default 60: down for half of it), its own mosquitto on a free
loopback port that is killed (SIGKILL) and restarted on the same port every `--broker-every` s
(default 300, down for 10 s), a subscriber that keeps every seq, and in this process a pyftpdlib
server that refuses every third upload (452). The agent forwards to MQTT and writes spec files that
it pushes to that server (`keep_uploaded: true`, so the outbox keeps a copy of each pushed file).

Every `--sample` s it records the agent's RSS, open files and threads. At the end it waits for the
buffer to drain, stops the agent (SIGTERM, `buffer closed at seq N`), and checks: every seq 1..N
reached the subscriber (or is still in the buffer file, not lost), and every spec file the agent
wrote is on the FTP server byte for byte or still pending in the outbox. One JSON line (--json) or a
short report. Exit status 1 when a check fails.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.servers import FTPServer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline import make_site, scrape  # noqa: E402

from edge_agent.drivers.sim.harness import free_port, wait_port  # noqa: E402

logging.getLogger("pyftpdlib").setLevel(logging.WARNING)

SUBSCRIBER = r'''
import json, sys, threading, orjson
import paho.mqtt.client as paho
port, out = int(sys.argv[1]), sys.argv[2]
seqs, lock, dups = set(), threading.Lock(), [0]
def on_message(c, u, m):
    try:
        p = orjson.loads(m.payload)
    except Exception:
        return
    if isinstance(p, dict) and "seq" in p:
        with lock:
            if p["seq"] in seqs:
                dups[0] += 1
            seqs.add(p["seq"])
c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="abuse-sub", clean_session=True)
c.on_message = on_message
c.on_connect = lambda c, u, f, r, p: c.subscribe("mine/#", qos=1)
c.reconnect_delay_set(0.2, 1.0)
c.connect_async("127.0.0.1", port)
c.loop_start()
for line in sys.stdin:
    with lock:
        json.dump({"seqs": sorted(seqs), "dups": dups[0]}, open(out, "w"))
    print("done", flush=True)
'''


class Refusing(FTPHandler):
    """Refuses every third STOR with 452; records what was stored."""
    stors = 0
    refused = 0

    def ftp_STOR(self, file, mode="w"):
        type(self).stors += 1
        if type(self).stors % 3 == 0:
            type(self).refused += 1
            self.respond("452 Insufficient storage space.")
            return None
        return super().ftp_STOR(file, mode)


def proc_stat(pid: int) -> dict:
    status = Path(f"/proc/{pid}/status").read_text()
    get = {ln.split(":")[0]: ln.split(":", 1)[1].strip() for ln in status.splitlines()}
    return {"rss_mb": int(get["VmRSS"].split()[0]) / 1024, "threads": int(get["Threads"]),
            "fds": len(os.listdir(f"/proc/{pid}/fd"))}


class Broker:
    def __init__(self, work: Path, port: int, log):
        self.conf = work / "mosquitto.conf"
        self.conf.write_text(f"user root\nlistener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                             "max_queued_messages 1000000\nmax_inflight_messages 0\n")
        self.port, self.log, self.proc = port, log, None

    def start(self) -> None:
        self.proc = subprocess.Popen([shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(self.conf)],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        wait_port(self.port, 20)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--devices", type=int, default=50)
    ap.add_argument("--registers", type=int, default=200)
    ap.add_argument("--broker-every", type=float, default=300.0)
    ap.add_argument("--broker-down", type=float, default=10.0)
    ap.add_argument("--flap", type=float, default=60.0)
    ap.add_argument("--sample", type=float, default=10.0)
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="abuse-"))
    logs = open(work / "bench.log", "ab")
    procs: list[subprocess.Popen] = []
    exe = [sys.executable, "-m", "edge_agent"]
    broker = Broker(work, free_port(), logs)
    ftp_root = work / "ftp"
    (ftp_root / "in").mkdir(parents=True)
    auth = DummyAuthorizer()
    auth.add_user("gw", "s3cret", str(ftp_root), perm="elradfmw")
    Refusing.authorizer = auth
    Refusing.passive_ports = None
    ftp_port = free_port()
    ftp = FTPServer(("127.0.0.1", ftp_port), Refusing)
    threading.Thread(target=ftp.serve_forever, kwargs={"timeout": 0.2}, daemon=True).start()
    try:
        broker.start()
        sim_port, flap_port, metrics_port = free_port(), free_port(), free_port()
        site = make_site(work, args.devices, args.registers, 1.0, [sim_port], broker.port, metrics_port)
        data = yaml.safe_load(site.read_text())
        flappy = {"name": "flappy", "driver": "modbus-tcp", "host": "127.0.0.1", "port": flap_port, "unit": 1,
                  "poll": "1s", "timeout": "500ms",
                  "points": [{"id": "F1", "sensor": "0001", "address": "hr:0", "type": "float32", "order": "CDAB",
                              "location": "flappy"}]}
        (work / "ftp.pass").write_text("s3cret\n")
        os.chmod(work / "ftp.pass", 0o600)
        data["forward"]["files"] = {"dir": str(work / "outbox"), "upload": f"ftp://gw@127.0.0.1:{ftp_port}/in",
                                    "password_file": str(work / "ftp.pass"), "keep_uploaded": True}
        sims = {}
        for name, port, devs in (("main", sim_port, data["devices"]), ("flappy", flap_port, [flappy])):
            s = dict(data, devices=devs, metrics={"enabled": False})
            s["forward"] = {"mqtt": data["forward"]["mqtt"]}
            (work / f"sim-{name}.yaml").write_text(yaml.safe_dump(s, allow_unicode=True, sort_keys=False))
            sims[name] = port
        data["devices"].append(flappy)
        site.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))

        def start_sim(name: str) -> subprocess.Popen:
            p = subprocess.Popen([sys.executable, "-m", "edge_agent.drivers.sim.prepared", "-c",
                                  str(work / f"sim-{name}.yaml"), "--scenario", "steady"],
                                 stdout=logs, stderr=subprocess.STDOUT)
            procs.append(p)
            wait_port(sims[name], 60)
            return p

        main_sim = start_sim("main")
        flap = start_sim("flappy")
        sub_out = work / "sub.json"
        sub = subprocess.Popen([sys.executable, "-c", SUBSCRIBER, str(broker.port), str(sub_out)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        procs.append(sub)
        agent_log = work / "agent.log"
        agent = subprocess.Popen(exe + ["run", "-c", str(site), "--log-level", "INFO"],
                                 stdout=open(agent_log, "ab"), stderr=subprocess.STDOUT)
        procs.append(agent)
        wait_port(metrics_port, 60)
        t0 = time.monotonic()
        end = t0 + args.minutes * 60
        samples: list[dict] = []
        next_sample, next_broker, next_flap = t0 + 30, t0 + args.broker_every, t0 + args.flap / 2
        broker_up_at, flap_up_at = None, None
        kills = flaps = 0
        while time.monotonic() < end:
            now = time.monotonic()
            if now >= next_sample:
                samples.append({"t": round(now - t0), **proc_stat(agent.pid)})
                next_sample += args.sample
            if now >= next_broker:
                broker.kill()
                kills += 1
                broker_up_at, next_broker = now + args.broker_down, next_broker + args.broker_every
            if broker_up_at is not None and now >= broker_up_at:
                broker.start()
                broker_up_at = None
            if now >= next_flap:
                if flap is not None:
                    flap.kill()
                    flap.wait()
                    flap, flap_up_at = None, now + args.flap / 2
                    flaps += 1
                next_flap += args.flap
            if flap_up_at is not None and now >= flap_up_at:
                flap, flap_up_at = start_sim("flappy"), None
            assert agent.poll() is None, "the agent exited"
            time.sleep(0.2)
        if broker_up_at is not None:
            broker.start()
        for p in (main_sim, flap):          # inputs stop; what was acquired must drain
            if p is not None and p.poll() is None:
                p.terminate()
                p.wait(10)
        drained_at = time.monotonic() + 300
        while time.monotonic() < drained_at:
            m = scrape(metrics_port)
            if m.get("edge_agent_buffer_rows", 1) == 0:
                break
            time.sleep(1)
        polls = scrape(metrics_port)
        agent.send_signal(signal.SIGTERM)
        agent.wait(60)
        text = agent_log.read_text(encoding="utf-8", errors="replace")
        last = int(re.findall(r"buffer closed at seq (\d+)", text)[-1])
        sub.stdin.write("report\n")
        sub.stdin.flush()
        sub.stdout.readline()
        got = json.loads(sub_out.read_text())
        seen = set(got["seqs"])
        with sqlite3.connect(work / "buffer.sqlite") as db:
            still = {r[0] for r in db.execute("SELECT seq FROM messages")}
        missing = sorted(set(range(1, last + 1)) - seen - still)
        # spec files: each one pushed is on the server, byte for byte; the rest still waits in the outbox
        outbox = work / "outbox"
        uploaded = {p.name: p.read_bytes() for p in (outbox / "uploaded").glob("*") if p.is_file()}
        pending = [p.name for p in outbox.glob("*") if p.is_file() and not p.name.startswith(".")]
        on_server = {p.name: p.read_bytes() for p in (ftp_root / "in").glob("*") if not p.name.startswith(".")}
        lost_files = [n for n, b in uploaded.items() if on_server.get(n) != b]
        q = max(1, len(samples) // 4)

        def med(part, key):
            return round(statistics.median(s[key] for s in part), 1) if part else None

        tracebacks = text.count("Traceback")
        res = {
            "minutes": args.minutes, "points_per_s": args.devices * args.registers,
            "broker_kills": kills, "device_flaps": flaps, "ftp_stors": Refusing.stors,
            "ftp_refused": Refusing.refused,
            "last_seq": last, "seqs_received": len(seen), "seqs_still_buffered": len(still & set(range(1, last + 1))),
            "seqs_missing": len(missing), "first_missing": missing[:10], "duplicates": got["dups"],
            "spec_files_uploaded": len(uploaded), "spec_files_pending": len(pending),
            "spec_files_lost": len(lost_files),
            "rss_mb_first_quarter": med(samples[:q], "rss_mb"), "rss_mb_last_quarter": med(samples[-q:], "rss_mb"),
            "rss_mb_max": max((s["rss_mb"] for s in samples), default=None),
            "fds_first_quarter": med(samples[:q], "fds"), "fds_last_quarter": med(samples[-q:], "fds"),
            "fds_max": max((s["fds"] for s in samples), default=None),
            "threads_first_quarter": med(samples[:q], "threads"),
            "threads_last_quarter": med(samples[-q:], "threads"),
            "threads_max": max((s["threads"] for s in samples), default=None),
            # the agent's RSS, median of each tenth of the run: flat, or still rising at the end
            "rss_mb_by_tenth": [med(samples[i * len(samples) // 10:(i + 1) * len(samples) // 10] or samples[-1:],
                                    "rss_mb") for i in range(10)] if samples else [],
            "polls": int(polls.get("edge_agent_device_polls_total", 0)),
            "poll_errors": int(polls.get("edge_agent_device_errors_total", 0)),
            "skipped_polls": int(polls.get("edge_agent_device_skipped_total", 0)),
            "tracebacks_in_log": tracebacks, "log_lines": text.count("\n"),
            "work": str(work) if args.keep else None,
        }
        ok = not missing and not lost_files and not tracebacks
        print(json.dumps(res) if args.json else "\n".join(f"{k}: {v}" for k, v in res.items()))
        return 0 if ok else 1
    finally:
        alive = [p for p in reversed(procs) if p.poll() is None]
        for p in alive:
            p.terminate()
        deadline = time.monotonic() + 10
        for p in alive:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
        broker.kill()
        ftp.close_all()
        logs.close()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
