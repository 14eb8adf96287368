"""What `edge-agent check` prints for a valid site file: a summary, warnings, the read plans."""
from __future__ import annotations

from edge_agent.config import Site
from edge_agent.i18n import _
from edge_agent.points import Catalog
from edge_agent.profile import load_profile


def errors(site: Site) -> list[str]:
    """What the site file says that `run` would refuse (beyond the models' own validation)."""
    from edge_agent.forward.tls import Broker, plaintext_problem

    out: list[str] = []
    where = site.source or "site file"
    mq = site.forward.mqtt
    if mq is not None and mq.enabled:
        for url in mq.urls:
            problem = plaintext_problem(Broker.parse(url), mq.allow_plaintext)
            if problem:
                out.append(f"{where}: forward.mqtt.url: {problem}")
    for dev in site.devices:
        if dev.driver == "opcua":
            from edge_agent.drivers.opcua_session import config_problems
            out += [f"{where}: devices[{dev.name}].{field}: {reason}" for field, reason in config_problems(dev)]
    return out


def warnings(site: Site) -> list[str]:
    from edge_agent.secrets import permission_warnings

    out: list[str] = []
    where = site.source or "site file"
    mq = site.forward.mqtt
    if not ((mq is not None and mq.enabled) or (site.forward.files is not None and site.forward.files.enabled)):
        out.append(_("{file}: forward: no sink configured (mqtt or files); records will only be buffered").format(
            file=where))
    out += permission_warnings(site)
    base = site.base_dir
    for dev in site.devices:
        if dev.driver == "opcua":
            from edge_agent.drivers.opcua_session import file_problems
            out += [f"{where}: devices[{dev.name}].{field}: {reason}" for field, reason in file_problems(dev, base)]
    return out


def connect_report(site: Site) -> list[str]:
    """`check --connect`: reach every OPC UA server, resolve every node; one line per problem."""
    import asyncio

    from edge_agent.drivers.opcua import check_connect

    base = site.base_dir
    catalog = Catalog(site, load_profile(site.profile, base=base))

    async def run() -> list[str]:
        out: list[str] = []
        for i, dev in enumerate(site.devices):
            if dev.driver == "opcua":
                out += await check_connect(dev, catalog.by_device[i], base_dir=base)
        return out

    return asyncio.run(run())


def check_report(site: Site, *, verbose: bool = False) -> list[str]:
    base = site.base_dir
    profile = load_profile(site.profile, base=base)
    catalog = Catalog(site, profile)
    lines = [_("{file}: ok: {devices} devices, {points} points, profile {profile}").format(
        file=site.source, devices=len(site.devices), points=len(catalog), profile=profile.name)]
    lines += [_("warning: {text}").format(text=w) for w in warnings(site)]
    writable = [f"{site.devices[rp.device].name}/{rp.id}" for rp in catalog.points if rp.cfg.writable]
    if writable:
        lines.append(_("writable points ({n}): {points}").format(n=len(writable), points=", ".join(writable)))
    else:
        lines.append(_("writable points: none (the agent never writes to devices)"))
    if verbose:
        from edge_agent import drivers
        for i, dev in enumerate(site.devices):
            describe = getattr(drivers, "describe", None)
            lines.append(_("device {name} ({driver}, poll {poll}s): {n} points").format(
                name=dev.name, driver=dev.driver, poll=format(dev.poll, "g"), n=len(dev.points)))
            if describe is not None:
                lines += [f"  {line}" for line in describe(dev, catalog.by_device[i])]
    return lines
