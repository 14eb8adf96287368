"""A driver and a sink from outside the package (tests/plugins/counting_plugin.py), through check and run.

Registered at run time: by a call (in this process) and by an `edge_agent.components`
entry point (a subprocess, as a pip-installed plug-in would be found).  No file under
edge_agent/, drivers/ or buffer/ names them.
"""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import orjson
import pytest

from conftest import edge_agent_cmd, free_port
from e2e import Proc, wait_for
from edge_agent import registry
from edge_agent.cli import main, run_agent
from edge_agent.config import load_site
from test_metrics import samples

PLUGINS = Path(__file__).parent / "plugins"

SITE = """\
site:
  mine_code: "140211001234"
  gateway: gw-plug
buffer:
  path: buffer.sqlite
forward:
  jsonl:
    path: {out}
report:
  realtime_every: 1s
metrics:
  listen: 127.0.0.1:{metrics}
devices:
  - name: counter-1
    driver: counter
    poll: 200ms
    start: 1
    step: {step}
    points:
      - {{id: N1, sensor: "0003", address: "n"}}
      - {{id: N2, sensor: "0003", address: "n"}}
"""


@pytest.fixture
def plugin():
    sys.path.insert(0, str(PLUGINS))
    import counting_plugin
    counting_plugin.register()
    yield counting_plugin
    registry.unregister("counter")
    registry.unregister("jsonl")
    sys.path.remove(str(PLUGINS))


def site_file(tmp_path: Path, *, step: str = "0.5", out: str = "out/messages.jsonl") -> Path:
    (tmp_path / "out").mkdir(exist_ok=True)
    path = tmp_path / "site.yaml"
    path.write_text(SITE.format(out=out, step=step, metrics=free_port()), "utf-8")
    return path


def lines(tmp_path: Path) -> list[dict]:
    p = tmp_path / "out" / "messages.jsonl"
    return [orjson.loads(ln) for ln in p.read_bytes().splitlines()] if p.exists() else []


def test_check_knows_the_plugins_keys_and_problems(tmp_path, capsys, plugin):
    path = site_file(tmp_path)
    assert main(["check", "-c", str(path)]) == 0
    assert "ok: 1 devices, 2 points" in capsys.readouterr().out
    bad = site_file(tmp_path, step="0", out="nowhere/m.jsonl")
    text = bad.read_text("utf-8").replace("    step: 0\n", "    step: 0\n    host: 10.0.0.1\n")
    bad.write_text(text, "utf-8")
    assert main(["check", "-c", str(bad)]) == 1
    out = capsys.readouterr().err
    assert "devices[counter-1].host: not a key of driver counter" in out, out
    text = text.replace("    host: 10.0.0.1\n", "")
    bad.write_text(text, "utf-8")
    assert main(["check", "-c", str(bad)]) == 1
    out = capsys.readouterr().err.splitlines()
    assert any(ln.startswith(f"{bad}:") and "devices[counter-1].step: a counter that never moves" in ln for ln in out)
    assert any("forward.jsonl.path: folder" in ln and "nowhere" in ln for ln in out), out


def test_run_end_to_end_in_process(tmp_path, plugin):
    site = load_site(site_file(tmp_path))
    port = int(site.metrics.listen.rsplit(":", 1)[1])

    async def scenario():
        stop, ready = asyncio.Event(), asyncio.Event()
        run = asyncio.create_task(run_agent(site, stop=stop, ready=ready.set))
        await asyncio.wait_for(ready.wait(), 20)
        deadline = time.monotonic() + 20
        while not [r for m in lines(tmp_path) if m["type"] == "CDSS" for r in m["records"] if r["value"] > 1]:
            assert time.monotonic() < deadline and not run.done()
            await asyncio.sleep(0.1)
        text = await asyncio.to_thread(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read())
        stop.set()
        assert await run == 0
        return samples(text.decode())

    metrics = asyncio.run(scenario())
    assert metrics[("edge_agent_device_polls_total", (("device", "counter-1"),))] >= 1
    assert metrics[("edge_agent_sink_acked_total", (("sink", "jsonl"),))] >= 1
    got = lines(tmp_path)
    assert [m["type"] for m in got[:2]] == ["CDDY", "FZDY"]
    values = [r["value"] for m in got if m["type"] == "CDSS" for r in m["records"]]
    assert values[:2] == [1.0, 1.0] and 1.5 in values          # counting up by 0.5 per poll
    assert [m["seq"] for m in got] == list(range(1, len(got) + 1))


def test_an_entry_point_plugin_through_the_cli(tmp_path):
    """`edge-agent check` and `edge-agent run` in subprocesses find the plug-in by its entry point."""
    dist = tmp_path / "site-packages" / "counting_plugin-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: counting-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[edge_agent.components]\ncounting = counting_plugin:register\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(dist.parent), str(PLUGINS)]))
    path = site_file(tmp_path)
    r = subprocess.run(edge_agent_cmd("check", "-c", str(path)), capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0 and "ok: 1 devices, 2 points" in r.stdout, r.stderr
    agent = Proc(["run", "-c", str(path)], tmp_path / "agent.log", env=env)
    try:
        wait_for(lambda: any(m["type"] == "CDSS" for m in lines(tmp_path)), 30, "CDSS lines from the plug-in")
        assert agent.stop(signal.SIGTERM) == 0
    finally:
        agent.kill()
    assert "Traceback" not in agent.text() and "sinks: jsonl" in agent.text()
    # and without the entry point, the same file is one clear line per unknown part
    r = subprocess.run(edge_agent_cmd("check", "-c", str(path)), capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "devices[counter-1].driver: must be one of" in r.stderr and "forward.jsonl: unknown sink kind" in r.stderr
