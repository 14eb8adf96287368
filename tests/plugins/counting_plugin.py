"""A driver and a sink that live only in the tests folder: what a third party would ship.

`register()` adds them to the registry (an `edge_agent.components` entry point calls it,
or a test does): the `counter` driver (each point counts up by its device's `step` per
poll; no network) and the `jsonl` sink (each buffered message as one line of a file,
acknowledged after fsync).  Nothing under edge_agent/ knows about either.
"""
from __future__ import annotations

import asyncio
import os
import time
from array import array
from pathlib import Path

import orjson

from edge_agent.frame import Frame
from edge_agent.model import Device, SinkConfig
from edge_agent.registry import DriverSpec, SinkSpec, register_driver, register_sink

from typing import Literal


class CounterConfig(Device):
    driver: Literal["counter"]
    start: float = 0.0
    step: float = 1.0


def counter_problems(dev: CounterConfig, site):
    return [(("step",), "a counter that never moves tests nothing; give a step other than 0")] if dev.step == 0 else []


class CounterDriver:
    def __init__(self, index, device: CounterConfig, points, on_frame, *, base_dir=None):
        self.index, self.device, self.points, self.on_frame = index, device, list(points), on_frame
        self.online = False
        self.state_changed = None
        self.counters = {"ticks": 0}

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        self.online = False

    async def run(self):
        n = 0
        while True:
            v = self.device.start + self.device.step * n
            self.counters["ticks"] += 1
            self.on_frame(Frame(self.index, time.monotonic(), time.time(), array("i", [p.index for p in self.points]),
                                array("d", [v] * len(self.points)), array("B", bytes(len(self.points)))))
            if not self.online:
                self.online = True
                if self.state_changed:
                    self.state_changed(self.index, True, "counting")
            n += 1
            await asyncio.sleep(self.device.poll)


class JsonlConfig(SinkConfig):
    path: str


def jsonl_problems(cfg: JsonlConfig, site):
    folder = site.path(cfg.path).parent
    return [] if folder.is_dir() else [(("path",), f"folder {folder} does not exist; create it first")]


class JsonlSink:
    def __init__(self, cfg: JsonlConfig, ctx):
        self.name, self.buffer, self.wake = ctx.name, ctx.buffer, ctx.wake
        self.path = Path(ctx.site.path(cfg.path))
        self.counters = {"lines": 0}
        self.connected, self.trouble = True, None

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        pass

    async def run(self):
        while True:
            self.wake.clear()
            rows = self.buffer.peek(self.name, 100)
            if rows:
                with open(self.path, "ab") as f:
                    for r in rows:
                        f.write(orjson.dumps({"seq": r.seq, "type": r.type, "records": orjson.loads(r.body)}) + b"\n")
                    f.flush()
                    os.fsync(f.fileno())
                self.buffer.ack(self.name, [r.seq for r in rows])
                self.counters["lines"] += len(rows)
                continue
            try:
                await asyncio.wait_for(self.wake.wait(), 1.0)
            except asyncio.TimeoutError:
                pass


def register():
    register_driver(DriverSpec(names=("counter",), config=CounterConfig, factory=CounterDriver,
                               problems=counter_problems, counters={"polls": ("ticks",)}))
    register_sink(SinkSpec(kind="jsonl", config=JsonlConfig, factory=JsonlSink, problems=jsonl_problems,
                           counters={"published": ("lines",), "acked": ("lines",)}, live=True))
