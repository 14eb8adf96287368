"""Sinks come from the registry: several of one kind, each with its own name in the buffer."""
from __future__ import annotations

import asyncio
import time

import yaml

from edge_agent.agent import Agent
from edge_agent.config import load_site
from e2e import agent_running, make_site
from test_config import GOOD, check


def test_two_file_sinks_each_get_every_record_in_their_own_outbox(tmp_path, sim):
    path = make_site(tmp_path, sim, None)
    data = yaml.safe_load(path.read_text("utf-8"))
    data["forward"]["files"] = [{"name": "aqjk", "dir": str(tmp_path / "aqjk")},
                                {"name": "shfz", "dir": str(tmp_path / "shfz")}]
    path.write_text(yaml.safe_dump(data, allow_unicode=True), "utf-8")
    site = load_site(path)
    assert [c.sink_name for c in site.forward.sinks] == ["aqjk", "shfz"]

    async def scenario():
        agent = Agent(site)
        async with agent_running(agent) as run:
            deadline = time.monotonic() + 30
            while not all(len(list((tmp_path / d).glob("*_CDSS_*.txt"))) >= 2 for d in ("aqjk", "shfz")):
                assert time.monotonic() < deadline and not run.done()
                await asyncio.sleep(0.1)
            assert agent.buffer.sinks == {"aqjk": 1, "shfz": 2}
            assert set(agent.metrics_snapshot()["sinks"]) == {"aqjk", "shfz"}

    asyncio.run(scenario())
    names = {d: sorted(p.name for p in (tmp_path / d).glob("*.txt")) for d in ("aqjk", "shfz")}
    common = set(names["aqjk"]) & set(names["shfz"])
    assert any("_CDDY_" in n for n in common) and any("_FZDY_" in n for n in common)
    for n in common:
        assert (tmp_path / "aqjk" / n).read_bytes() == (tmp_path / "shfz" / n).read_bytes()


def test_sink_blocks_are_checked_per_kind(tmp_path, capsys):
    cases = [
        ("  files:\n    dir: outbox\n", "  files:\n    - {dir: a}\n    - {dir: b}\n", "forward.files[0]",
         "need a `name` each"),
        ("  files:\n    dir: outbox\n", "  files:\n    - {name: x, dir: a}\n    - {name: x, dir: b}\n",
         "forward.files[x].name", "used twice"),
        ("  files:\n    dir: outbox\n", "  files:\n    dir: outbox\n  sftp:\n    dir: y\n", "forward.sftp",
         "unknown sink kind; known: files, mqtt"),
        ("    dir: outbox\n", "    dir: outbox\n    topic_prefix: x\n", "forward.files.topic_prefix", "unknown key"),
    ]
    for old, new, field, reason in cases:
        assert old in GOOD
        code, out = check(tmp_path, GOOD.replace(old, new, 1), capsys)
        assert code == 1, (new, out)
        assert any(field in ln and reason in ln for ln in out.splitlines()), (field, out)
