"""The agent on a power-cut filesystem: `edge-agent run` with its buffer and outbox on cutfs.

The simulated devices, the broker and the site file stay outside the cut
filesystem (they are other machines, or the read-only system partition).
`Rig.cut()` is a power cut: kill -9 of the agent, then of the filesystem,
then the filesystem boots and the checks that need no agent run.
"""
from __future__ import annotations

import shutil
import signal
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from e2e import Proc, Subscriber, make_site, wait_for
from cutmount import CutMount
from edge_agent.buffer.seqmark import mark_path, read_mark
from edge_agent.config import load_site
from edge_agent.profile import load_profile


@dataclass
class Cut:
    """What one cut did: committed rows before it, the buffer after it."""
    committed_top: int              # highest seq committed a moment before the kill
    next_seq: int                   # where the buffer continues after the cut
    lost: int                       # committed rows the cut took (normal mode only)
    lost_span: float                # seconds between the oldest lost row's time and the kill
    files_before: int
    files_after: int


@dataclass
class Rig:
    tmp: Path
    fs: CutMount
    sim_port: int
    broker_url: str
    durability: str
    realtime_every: str = "1s"
    poll: str | None = None         # every device's poll period (load), or the demo's
    runs: int = 0
    agent: Proc | None = None
    files_seen: dict[str, bytes] = field(default_factory=dict)
    cuts: list[Cut] = field(default_factory=list)

    def __post_init__(self):
        # two folder levels each, none of them existing before the first start
        self.buffer = self.fs.root / "state" / "edge" / "buffer.sqlite"
        self.outbox = self.fs.root / "spool" / "outbox"
        site = make_site(self.tmp, self.sim_port, self.broker_url, realtime_every=self.realtime_every)
        data = yaml.safe_load(site.read_text(encoding="utf-8"))
        data["buffer"].update(path=str(self.buffer), durability=self.durability)
        data["forward"]["files"]["dir"] = str(self.outbox)
        for dev in data["devices"] if self.poll else ():
            dev["poll"] = self.poll
        site.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
        self.site = site
        self.profile = load_profile(load_site(site).profile)

    # ------------------------------------------------------------ the agent

    def start(self, wait: bool = True) -> Proc:
        """Start the agent; with `wait`, until it says it runs (else a cut may find it opening the buffer)."""
        self.runs += 1
        agent = Proc(["run", "-c", str(self.site)], self.tmp / f"agent{self.runs}.log")
        self.agent = agent
        if not wait:
            return agent
        wait_for(lambda: "running:" in agent.text() or agent.proc.poll() is not None, 60, "the agent to run")
        assert agent.proc.poll() is None, agent.text()[-3000:]
        return agent

    def stop(self) -> str:
        """SIGTERM: a clean stop (exit 0); returns the run's log."""
        agent, self.agent = self.agent, None
        assert agent.stop(signal.SIGTERM) == 0, agent.text()[-3000:]
        return agent.text()

    # ------------------------------------------------------------ looking from outside

    def spec_files(self) -> dict[str, bytes]:
        """Every complete spec file in the outbox now (temp names are hidden)."""
        try:
            names = [p for p in self.outbox.iterdir() if not p.name.startswith(".")]
        except FileNotFoundError:
            return {}
        out = {}
        for p in names:
            try:
                out[p.name] = p.read_bytes()
            except FileNotFoundError:
                pass
        return out

    def observe(self) -> int:
        """Remember every spec file seen so far (each must exist whole at the end); return how many."""
        for name, data in self.spec_files().items():
            self.files_seen.setdefault(name, data)
        return len(self.files_seen)

    def committed(self) -> list[tuple[int, float]]:
        """(seq, time) of the newest committed rows, read beside the running agent."""
        try:
            db = sqlite3.connect(f"file:{self.buffer}?mode=ro", uri=True, timeout=5)
        except sqlite3.OperationalError:
            return []
        try:
            return db.execute("SELECT seq, time FROM messages ORDER BY seq DESC LIMIT 2000").fetchall()
        except sqlite3.OperationalError:
            return []
        finally:
            db.close()

    def buffer_after_cut(self) -> tuple[str, int]:
        """(integrity_check, next seq) of the buffer as the cut left it, read from a copy so the
        check changes nothing on the cut filesystem."""
        assert self.buffer.exists(), f"the buffer {self.buffer} is gone after the cut"
        copy = self.tmp / "check"
        shutil.rmtree(copy, ignore_errors=True)
        copy.mkdir()
        for suffix in ("", "-wal"):
            src = Path(f"{self.buffer}{suffix}")
            if src.exists():
                shutil.copyfile(src, copy / f"buffer.sqlite{suffix}")
        db = sqlite3.connect(copy / "buffer.sqlite")
        try:
            check = db.execute("PRAGMA integrity_check").fetchone()[0]
            meta = db.execute("SELECT value FROM meta WHERE key='next_seq'").fetchone()
            top = db.execute("SELECT max(seq) FROM messages").fetchone()[0] or 0
        finally:
            db.close()
        next_seq = max(int(meta[0]) if meta else 1, top + 1)
        if meta is None and top == 0:       # a buffer with no history continues at the seq mark
            next_seq = max(next_seq, read_mark(mark_path(self.buffer)) or 1)
        return check, next_seq

    # ------------------------------------------------------------ the cut

    def cut(self) -> Cut:
        """kill -9 the agent, cut the power, boot; check the buffer and the outbox as the cut left them."""
        self.observe()
        rows = self.committed()                 # as late as possible: what the kill may take
        agent, self.agent = self.agent, None
        agent.proc.send_signal(signal.SIGKILL)
        killed = time.time()
        agent.proc.wait()
        agent.kill()
        assert "Traceback" not in agent.text(), agent.text()[-3000:]
        files_before = len(self.spec_files())
        self.fs.cut()
        check, next_seq = self.buffer_after_cut()
        assert check == "ok", f"cut {self.fs.cuts}: the buffer fails its integrity check: {check}"
        assert self.outbox.is_dir(), f"cut {self.fs.cuts}: the outbox vanished"
        top = rows[0][0] if rows else 0
        lost = [t for s, t in rows if s >= next_seq]
        cut = Cut(top, next_seq, len(lost), killed - min(lost) if lost else 0.0, files_before,
                  len(self.spec_files()))
        self.cuts.append(cut)
        return cut

    # ------------------------------------------------------------ the end

    def assert_files_whole_and_kept(self) -> None:
        """Every spec file ever seen is in the outbox byte for byte; every file there is whole."""
        now = self.spec_files()
        missing = sorted(set(self.files_seen) - set(now))
        assert not missing, f"{len(missing)} of {len(self.files_seen)} spec files seen before a cut are gone: " \
                            f"{missing[:5]}"
        changed = [n for n, data in self.files_seen.items() if now[n] != data]
        assert not changed, f"spec files changed after a cut: {changed[:5]}"
        files = self.profile.files
        fs, rt, ft = files["field_separator"], files["record_terminator"], files["file_terminator"]
        for name, data in now.items():
            text = data.decode("utf-8")
            kind = name.split("_")[1]
            assert text.endswith(ft), f"{name} is not whole: {text[-80:]!r}"
            head, *records = [s.strip("\n") for s in text[: -len(ft)].split(rt)]
            assert records and records[-1] == "", f"{name}: no record terminator at the end"
            assert len(head.split(fs)) == len(self.profile.headers[kind]), f"{name}: header {head!r}"
            for rec in records[:-1]:
                assert len(rec.split(fs)) == len(self.profile.records[kind]), f"{name}: record {rec!r}"


def assert_no_seq_reused(sub: Subscriber) -> dict[int, dict]:
    """Every seq the consumer got carries one content only (a repeat is a redelivery, never new data)."""
    by_seq: dict[int, dict] = {}
    for p in sub.payloads():
        if "seq" not in p:
            continue
        first = by_seq.setdefault(p["seq"], p)
        assert first == p, f"seq {p['seq']} was reused for different content:\n{first}\n{p}"
    return by_seq
