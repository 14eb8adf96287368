"""Many power cuts at random points under load (slow: `pytest -m slow`).

The agent polls every device every 100 ms; each run is cut after a random
time, sometimes before it finished starting (while it opens the buffer), with
the broker up, down, or stopped and started again during the run.  The same
checks as the default test after each cut and at the end; the figures it
prints go into README "What can be lost".
"""
from __future__ import annotations

import random
import time

import pytest
from cutmount import cutfs  # noqa: F401 (fixture)
from rig import Rig
from test_powercut import check_cut, final_run

from e2e import Subscriber

CUTS = 30


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("durability", ["normal", "full"])
def test_many_cuts_at_random_points_under_load(tmp_path, cutfs, sim, mosquitto_factory, durability):
    rng = random.Random(f"cuts-{durability}")
    broker = mosquitto_factory(persistent=True)
    sub = Subscriber(broker.port, session=f"cuts-{durability}").start()
    rig = Rig(tmp_path, cutfs, sim, broker.url, durability, poll="100ms")
    states = []
    for n in range(CUTS):
        state = rng.choice(["up", "down", "flap"])
        states.append(state)
        if state == "down" and broker.proc is not None:
            broker.stop()
        elif state != "down" and broker.proc is None:
            broker.start()
        early = rng.random() < 0.2
        rig.start(wait=not early)
        # random cut points: the sleeps choose when the power goes, they synchronise nothing
        if early:
            time.sleep(rng.uniform(0.2, 2.0))
        elif state == "flap":
            time.sleep(rng.uniform(0.2, 1.5))
            broker.stop()
            time.sleep(rng.uniform(0.2, 1.5))
            broker.start()
            time.sleep(rng.uniform(0.0, 1.5))
        else:
            time.sleep(rng.uniform(0.1, 4.0))
        rig.cut()
        check_cut(rig, sub)
    if broker.proc is None:
        broker.start()
    last, repeats = final_run(rig, sub, timeout=60)
    lost = [c.lost for c in rig.cuts]
    spans = [c.lost_span for c in rig.cuts if c.lost]
    print(f"\n{durability}: {len(rig.cuts)} cuts ({states.count('up')} broker up, {states.count('down')} down, "
          f"{states.count('flap')} flapping), seq 1..{last} all delivered ({repeats} redeliveries), "
          f"{len(rig.files_seen)} spec files all kept; committed rows lost per cut: max {max(lost)}, "
          f"total {sum(lost)}; oldest lost row before the kill: max {max(spans, default=0):.2f} s")
