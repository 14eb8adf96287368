"""What `edge-agent check` prints for a valid site file: a summary, warnings, the read plans.

`load_site` already refused everything `run` would refuse (`check` and `run` share it);
what is here only reports: warnings (secret files others can read, certificate files
not there yet, no sink, the safety mark expiry, local codes), the points marked writable, each
driver's read plan (`-v`), `--connect` (each driver that can reach its devices from `check` does
so) and `--receiver` (what a strict receiver would flag in the site's files).
"""
from __future__ import annotations

from edge_agent import registry
from edge_agent.config import Site
from edge_agent.i18n import _
from edge_agent.points import Catalog


def warnings(site: Site) -> list[str]:
    from edge_agent.secrets import permission_warnings

    out: list[str] = []
    where = site.source or "site file"
    if not site.forward.enabled():
        out.append(_("{file}: forward: no sink configured (mqtt or files); records will only be buffered").format(
            file=where))
    out += permission_warnings(site)
    from edge_agent.alarms.config import warnings as alarm_warnings
    out += alarm_warnings(site)
    for dev in site.devices:
        for loc, reason in registry.driver(dev.driver).warnings_of(dev, site):
            out.append(f"{where}: devices[{dev.name}].{_dotted(loc)}: {reason}")
    from edge_agent.dense import never_applies
    for name, level, top in never_applies(site):
        out.append(_("{file}: devices[{name}].poll_in_warning: no point of this device reaches {level} (the "
                     "highest it can reach: {top}), so it never polls faster; lower `from` or give its points "
                     "levels").format(file=where, name=name, level=level, top=top))
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


def receiver_report(site: Site) -> tuple[list[str], bool]:
    """`check --receiver`: what a strict receiver would flag in the site's files (one line per rule and type),
    and whether any of it is a rule break (not only a risk)."""
    from edge_agent.profile.receiver import BREAK, site_findings, summary
    profile = site.loaded_profile
    catalog = Catalog(site, profile)
    if site.systems:        # each system whose profile writes the safety-monitoring types, with its own profile
        findings = [f for s in site.resolved_systems if "CDDY" in s.profile.records
                    for f in site_findings(s.site, s.profile, catalog, system=s)]
    else:
        findings = site_findings(site, profile, catalog)
    if not findings:
        return ["receiver: nothing a strict receiver would flag in CDDY, FZDY, FZSS, CDSS, TJSJ or YCBJ"], False
    return summary(findings), any(f.severity == BREAK for f in findings)


def _only(catalog, system):
    """`catalog` with only the points of `system`'s devices (what its profile's warnings look at)."""
    from types import SimpleNamespace
    return SimpleNamespace(points=[rp for rp in catalog.points if rp.device in system.devices])


def check_report(site: Site, *, verbose: bool = False) -> list[str]:
    from edge_agent.profile.receiver import site_warnings
    profile = site.loaded_profile
    catalog = Catalog(site, profile)
    lines = [_("{file}: ok: {devices} devices, {points} points, profile {profile}").format(
        file=site.source, devices=len(site.devices), points=len(catalog), profile=profile.name)]
    receiver_warnings, notes = [], []
    for s in site.resolved_systems:     # each safety-monitoring-like system's local codes, by its own profile
        if "CDDY" not in s.profile.records:
            continue                    # a system of its own types: its codes are its profile's own table
        w, n = site_warnings(s.site if site.systems else site, s.profile, _only(catalog, s))
        receiver_warnings += w
        notes += n
    lines += [_("warning: {text}").format(text=w) for w in warnings(site) + receiver_warnings]
    lines += [_("note: {text}").format(text=n) for n in notes]
    writable = [f"{site.devices[rp.device].name}/{rp.id}" for rp in catalog.points if rp.cfg.writable]
    if writable:
        lines.append(_("writable points ({n}): {points}").format(n=len(writable), points=", ".join(writable)))
    else:
        lines.append(_("writable points: none (the agent never writes to devices)"))
    if verbose:
        for i, dev in enumerate(site.devices):
            describe = registry.load(registry.driver(dev.driver).describe)
            lines.append(_("device {name} ({driver}, poll {poll}s): {n} points").format(
                name=dev.name, driver=dev.driver, poll=format(dev.poll, "g"), n=len(dev.points)))
            piw = getattr(dev, "poll_in_warning", None)
            if piw is not None:
                lines.append("  " + _("in warning (a point at {level} or above): poll {period}s").format(
                    level=piw.from_, period=format(piw.period, "g")))
            if describe is not None:
                lines += [f"  {line}" for line in describe(dev, catalog.by_device[i])]
    return lines
