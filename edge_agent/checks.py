"""What `edge-agent check` prints for a valid site file: a summary, warnings, the read plans.

`load_site` already refused everything `run` would refuse (`check` and `run` share it);
what is here only reports: warnings (secret files others can read, certificate files
not there yet, no sink), the points marked writable, each driver's read plan (`-v`), and
`--connect` (each driver that can reach its devices from `check` does so).
"""
from __future__ import annotations

from edge_agent import registry
from edge_agent.config import Site
from edge_agent.points import Catalog


def warnings(site: Site) -> list[str]:
    from edge_agent.secrets import permission_warnings

    out: list[str] = []
    where = site.source or "site file"
    if not site.forward.enabled():
        out.append(f"{where}: forward: no sink configured (mqtt or files); records will only be buffered")
    out += permission_warnings(site)
    for dev in site.devices:
        for loc, reason in registry.driver(dev.driver).warnings_of(dev, site):
            out.append(f"{where}: devices[{dev.name}].{_dotted(loc)}: {reason}")
    return out


def _dotted(loc) -> str:
    if isinstance(loc, str):
        return loc
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")


def connect_report(site: Site) -> list[str]:
    """`check --connect`: each device whose driver can check its connection does; one line per problem."""
    import asyncio

    catalog = Catalog(site, site.loaded_profile)

    async def run() -> list[str]:
        out: list[str] = []
        for i, dev in enumerate(site.devices):
            connect = registry.load(registry.driver(dev.driver).connect)
            if connect is not None:
                out += await connect(dev, catalog.by_device[i], site.base_dir)
        return out

    return asyncio.run(run())


def check_report(site: Site, *, verbose: bool = False) -> list[str]:
    profile = site.loaded_profile
    catalog = Catalog(site, profile)
    lines = [f"{site.source}: ok: {len(site.devices)} devices, {len(catalog)} points, profile {profile.name}"]
    lines += [f"warning: {w}" for w in warnings(site)]
    writable = [f"{site.devices[rp.device].name}/{rp.id}" for rp in catalog.points if rp.cfg.writable]
    if writable:
        lines.append(f"writable points ({len(writable)}): {', '.join(writable)}")
    else:
        lines.append("writable points: none (the agent never writes to devices)")
    if verbose:
        for i, dev in enumerate(site.devices):
            describe = registry.load(registry.driver(dev.driver).describe)
            lines.append(f"device {dev.name} ({dev.driver}, poll {dev.poll:g}s): {len(dev.points)} points")
            if describe is not None:
                lines += [f"  {line}" for line in describe(dev, catalog.by_device[i])]
    return lines
