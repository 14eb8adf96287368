"""A profile that sends the project-local codes: belts and bins in the safety-monitoring files with the
codes they had before the receiver rules (sensor types 0060, 0901, 1901-1904, 1990; anomalies 101-104,
201-203), as a site whose platform accepts them would write it: a copy of the default profile, edited."""
from __future__ import annotations

from pathlib import Path

import yaml

from edge_agent.profile.layers import builtin_dir

LOCAL_ANOMALIES = {"belt_slip": "101", "belt_overload": "102", "belt_idle_current": "103", "belt_fire": "104",
                   "bin_block": "201", "bin_collapse": "202", "bin_overfill": "203"}


def local_codes_profile(folder: Path, name: str = "local-codes.yaml") -> Path:
    """Write the profile into `folder`; return its path (a site file names it as `profile:`)."""
    default = builtin_dir() / "default.yaml"
    data = yaml.safe_load(default.read_text(encoding="utf-8"))
    data["name"] = Path(name).stem
    data["sensor_table"] = str((builtin_dir().parent / "sensors.csv").resolve())
    for entry in data["local_sensors"].values():
        entry["send"] = True
    data["local_anomalies"] = {}
    for rule, code in LOCAL_ANOMALIES.items():
        data["local_anomalies"][code] = data["derived_anomalies"][rule]["name"]
        data["derived_anomalies"][rule]["code"] = code
    path = folder / name
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path
