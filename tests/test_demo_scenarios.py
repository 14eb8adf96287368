"""`edge-agent demo --scenario water-rise | tailings-rain | slope-creep | roof-separation`: one 3-minute walk at full
speed through the real demo; the summary shows the walking points go through every colour and back (slow)."""
from __future__ import annotations

import pytest

from conftest import free_port

WALKERS = {   # scenario: the demo points (config/demo/systems.yaml) whose colour walks
    "water-rise": ("W1", "W3"),
    "tailings-rain": ("K1", "K2", "K3", "K4"),
    "slope-creep": ("G1X",),          # its rate rule: the creep's speed
    "roof-separation": ("P1", "P2", "P3"),
}
WALK = ["none", "blue", "yellow", "orange", "red", "orange", "yellow", "blue", "none"]


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("scenario", list(WALKERS))
def test_the_demo_walks_each_systems_warning_up_and_back(tmp_path, scenario):
    from e2e import Proc
    proc = Proc(["demo", "--scenario", scenario, "--duration", "175", "--workdir", str(tmp_path / "demo"),
                 "--console", "", "--no-open", "--mqtt", f"mqtt://127.0.0.1:{free_port()}"], tmp_path / "demo.log")
    try:
        assert proc.proc.wait(260) == 0, proc.text()[-3000:]
    finally:
        proc.kill()
    for pid in WALKERS[scenario]:
        lines = [ln for ln in proc.text().splitlines() if ln.strip().startswith(f"{pid} ")]
        colours = [next((c for c in WALK[1:5] if ln.endswith(c)), "none") for ln in lines]
        walk = [c for i, c in enumerate(colours) if i == 0 or c != colours[i - 1]]
        assert walk == WALK, (pid, walk)
