"""Free text that would break the text files' framing (`;`, `~`, `|` and the profile's own separators)."""
from __future__ import annotations

import re
from typing import Any

from edge_agent.errors import Problem
from edge_agent.profile.tables import FRAMING, Profile


def framing_problems(site, catalog, profile: Profile) -> list[Problem]:
    """Free text that goes into records (substation codes, locations, relations, units, sensor
    names, point codes) and contains a character the text files use for framing.  `edge-agent
    check` can report these; the Encoder refuses to start with any."""
    files = profile.files
    chars = set(FRAMING) | {files.get(k) or ";" for k in ("field_separator", "record_terminator", "file_terminator")}
    where = getattr(site, "source", "") or "site"
    problems: list[Problem] = []

    def look(field: str, text: Any) -> None:
        if isinstance(text, str):
            bad = sorted(c for c in chars if c in text)
            if bad:
                problems.append(Problem(where, None, field, f"{text!r} contains {' '.join(map(repr, bad))}, "
                                        "which the spec files use as separators; remove it"))

    for di, dev in enumerate(site.devices):
        look(f"devices[{dev.name}].substation", catalog.device_code(di))
        look(f"devices[{dev.name}].location", dev.location)
    # one search over every point's texts at once, then over each point's, the field-by-field look only
    # where it hits (50,000 points: 0.1 s -> 0.02 s when, as usual, nothing does)
    hit = re.compile("[" + re.escape("".join(sorted(chars))) + "]").search
    points = catalog.points
    cfgs = [rp.cfg for rp in points]
    texts = [rp.code for rp in points] + [rp.unit for rp in points] + [rp.sensor_name for rp in points] + \
        [c.location for c in cfgs] + [c.relations for c in cfgs]
    if not hit("\0".join([t for t in texts if isinstance(t, str)])):
        return problems
    for rp in points:
        cfg = rp.cfg
        if not hit("\0".join(t for t in (rp.code, cfg.location, cfg.relations, rp.unit, rp.sensor_name)
                             if isinstance(t, str))):
            continue
        at = f"devices[{site.devices[rp.device].name}].points[{rp.id}]"
        look(f"{at} (point code)", rp.code)
        look(f"{at}.location", rp.cfg.location)
        look(f"{at}.relations", rp.cfg.relations)
        look(f"{at}.unit", rp.unit)
        look(f"{at} (sensor name)", rp.sensor_name)
    return problems
