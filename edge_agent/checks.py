"""What `edge-agent check` prints for a valid site file: a summary, warnings, the read plans."""
from __future__ import annotations

import ipaddress
import re
from pathlib import Path

from edge_agent.config import Site
from edge_agent.points import Catalog
from edge_agent.profile import load_profile


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def warnings(site: Site) -> list[str]:
    out: list[str] = []
    where = site.source or "site file"
    mq = site.forward.mqtt
    if mq is not None and mq.enabled:
        for url in mq.urls:
            m = re.match(r"(mqtts?)://([^/:]+)", url)
            if m and m.group(1) == "mqtt" and not _is_loopback(m.group(2)):
                out.append(f"{where}: forward.mqtt.url: {url} is plaintext to a non-loopback host; use mqtts:// "
                           "(or set allow_plaintext: true to accept the risk)")
    if not ((mq is not None and mq.enabled) or (site.forward.files is not None and site.forward.files.enabled)):
        out.append(f"{where}: forward: no sink configured (mqtt or files); records will only be buffered")
    return out


def check_report(site: Site, *, verbose: bool = False) -> list[str]:
    base = Path(site.source).parent if site.source else None
    profile = load_profile(site.profile, base=base)
    catalog = Catalog(site, profile)
    lines = [f"{site.source}: ok: {len(site.devices)} devices, {len(catalog)} points, profile {profile.name}"]
    lines += [f"warning: {w}" for w in warnings(site)]
    writable = [f"{site.devices[rp.device].name}/{rp.id}" for rp in catalog.points if rp.cfg.writable]
    if writable:
        lines.append(f"writable points ({len(writable)}): {', '.join(writable)}")
    else:
        lines.append("writable points: none (the agent never writes to devices)")
    if verbose:
        from edge_agent import drivers
        for i, dev in enumerate(site.devices):
            describe = getattr(drivers, "describe", None)
            lines.append(f"device {dev.name} ({dev.driver}, poll {dev.poll:g}s): {len(dev.points)} points")
            if describe is not None:
                lines += [f"  {line}" for line in describe(dev, catalog.by_device[i])]
    return lines
