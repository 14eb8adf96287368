"""Several monitoring systems on one gateway (`systems:` in the site file).

A system is a kind (its networking profile), a system code, the names its file headers
carry, an outbox sub-folder, an upload target and a cadence.  Every device belongs to one
system (`system:` on the device; optional while there is only one).  A site without
`systems:` has one implicit system made of `site.*` and `profile:`: its record types are
not prefixed, its files go into the outbox itself, so it behaves exactly as before.

    for s in site.resolved_systems: s.name, s.profile, s.site, s.devices, s.type_of("CDSS")

With `systems:` declared, every buffered row's type is `<system>/<TYPE>`: the MQTT topic
is `<prefix>/<mine>/<gateway>/<system>/<TYPE>`, and each system's file sink (`files.<name>`)
writes its own rows into its own folder.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import field_validator

from edge_agent.model import FreeText, Model, Period, UploadUrl

NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")
DEFAULT = "default"       # the implicit system of a site without `systems:`


class SystemCfg(Model):
    """One entry of `systems:`."""
    name: str
    kind: str                                  # a profile: built-in name (safety-monitoring, water-hazard ...) or FILE.yaml
    system_code: str
    system_name: FreeText | None = None        # default: the profile's `system_name`, else site.system_name
    system_model: FreeText | None = None       # default: site.system_model
    manufacturer: FreeText | None = None       # default: site.manufacturer
    dir: str | None = None                     # sub-folder of forward.files.dir; default: name
    upload: UploadUrl = None                   # default: forward.files.upload + "/" + dir
    realtime_every: Period | None = None       # default: the profile's cadence, else report.realtime_every

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME.fullmatch(v):
            raise ValueError("system name must be 1-32 letters, digits, '-' or '_' (it names a folder and a topic)")
        return v

    @field_validator("system_code", mode="before")
    @classmethod
    def _code(cls, v: Any) -> str:
        if isinstance(v, int) and not isinstance(v, bool):
            raise ValueError("write the system code in quotes (\"05\") so the leading zero survives")
        if not isinstance(v, str) or not re.fullmatch(r"\d{2}", v):
            raise ValueError("must be 2 digits in quotes, e.g. \"05\"")
        return v

    @field_validator("dir")
    @classmethod
    def _dir(cls, v: str | None) -> str | None:
        if v is not None and (not re.fullmatch(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*", v) or ".." in v.split("/")):
            raise ValueError("a relative folder of letters, digits, '-', '_', '.' (e.g. shfz)")
        return v


@dataclass(frozen=True)
class System:
    """A system as the pipeline and the sinks use it (built by `resolve`)."""
    index: int
    name: str
    kind: str
    code: str
    profile: Any                    # its loaded Profile
    site: Any                       # the Site as this system's files see it (site.site: its code, names)
    devices: tuple[int, ...]        # indices into Site.devices
    qualified: bool                 # row types are `<name>/<TYPE>` (True whenever `systems:` is declared)
    dir: str                        # outbox sub-folder ('' for the implicit system)
    upload: str | None              # its own upload target (None: the files sink's, or a derived one)
    realtime_every: float
    cfg: SystemCfg | None = field(default=None, repr=False)

    def type_of(self, code: str) -> str:
        """The buffered row type of record type `code` of this system."""
        return f"{self.name}/{code}" if self.qualified else code


def split_type(row_type: str) -> tuple[str | None, str]:
    """`shfz/CGKCDSS` -> ("shfz", "CGKCDSS"); `CDSS` -> (None, "CDSS")."""
    system, _, code = row_type.rpartition("/")
    return (system or None), code


def device_system(dev, declared: tuple[SystemCfg, ...]) -> str | None:
    """The name of the system a device belongs to: its `system:`, or the only declared one."""
    name = getattr(dev, "system", None)
    if name is None and len(declared) == 1:
        return declared[0].name
    return name


def cadence(profile, key: str, fallback: float | None) -> float | None:
    """A profile's `cadence.<key>` (seconds), else `fallback`."""
    from edge_agent.units import parse_duration
    value = (profile.raw.get("cadence") or {}).get(key)
    return fallback if value is None else float(parse_duration(value))


def load_profiles(site) -> tuple[list, list[tuple[tuple, str]]]:
    """Each declared system's profile (None where it cannot be loaded) and (location, reason) for those."""
    from edge_agent.errors import ConfigError
    from edge_agent.profile.tables import load_profile
    profiles, out = [], []
    for si, cfg in enumerate(site.systems):
        try:
            profiles.append(load_profile(cfg.kind, base=site.base_dir))
        except ConfigError as exc:
            profiles.append(None)
            out.append((("systems", si, "kind"), f"profile {cfg.kind!r} cannot be used: " + "; ".join(
                pr.reason if pr.reason.startswith("profile ") else str(pr) for pr in exc.problems)))
    return profiles, out


def resolve(site, profiles: list | None = None) -> list[System]:
    """The site's systems, each with its profile loaded (`profiles`: from load_profiles; ConfigError
    naming `systems[i].kind` when one cannot be loaded)."""
    from edge_agent.errors import ConfigError, Problem
    from edge_agent.profile.tables import load_profile
    rep = site.report
    if not site.systems:
        return [System(0, DEFAULT, site.profile, site.site.system_code, site.loaded_profile, site,
                       tuple(range(len(site.devices))), False, "", None, rep.realtime_every)]
    out, problems = [], []
    where = site.source or "site"
    for si, cfg in enumerate(site.systems):
        try:
            profile = profiles[si] if profiles is not None and profiles[si] is not None else \
                load_profile(cfg.kind, base=site.base_dir)
        except ConfigError as exc:
            problems.append(Problem(where, None, f"systems[{cfg.name}].kind",
                                    f"profile {cfg.kind!r} cannot be loaded: " + "; ".join(map(str, exc.problems))))
            continue
        info = site.site.model_copy(update={
            "system_code": cfg.system_code,
            "system_name": cfg.system_name if cfg.system_name is not None else
            str(profile.raw.get("system_name") or site.site.system_name),
            "system_model": cfg.system_model if cfg.system_model is not None else site.site.system_model,
            "manufacturer": cfg.manufacturer if cfg.manufacturer is not None else site.site.manufacturer})
        view = site.model_copy(update={"site": info, "profile": cfg.kind})
        view._profile = profile
        devices = tuple(di for di, dev in enumerate(site.devices) if device_system(dev, site.systems) == cfg.name)
        every = cfg.realtime_every if cfg.realtime_every is not None else \
            cadence(profile, "realtime_every", rep.realtime_every)
        out.append(System(si, cfg.name, cfg.kind, cfg.system_code, profile, view, devices, True,
                          cfg.dir or cfg.name, cfg.upload, every, cfg))
    if problems:
        raise ConfigError(problems)
    return out


def problems(site) -> list[tuple[tuple, str]]:
    """(location, reason) for `systems:` and each device's `system:` (names, codes, cadence bounds)."""
    out: list[tuple[tuple, str]] = []
    declared = site.systems
    names = [s.name for s in declared]
    for si, s in enumerate(declared):
        if names.index(s.name) != si:
            out.append((("systems", si, "name"), f"system name {s.name!r} is used twice"))
        if [x.system_code for x in declared].index(s.system_code) != si:
            out.append((("systems", si, "system_code"), f"system code {s.system_code} is used twice: point "
                                                        "codes of the two systems could collide"))
        if s.upload is not None and not site.forward.of_kind("files"):
            out.append((("systems", si, "upload"), "no `forward.files` writes the files this would upload; add "
                                                   "forward.files with its dir (the outbox)"))
        if [x.dir or x.name for x in declared].index(s.dir or s.name) != si:
            out.append((("systems", si, "dir"), f"folder {s.dir or s.name!r} is used by another system"))
    for di, dev in enumerate(site.devices):
        name = getattr(dev, "system", None)
        if not declared:
            if name is not None:
                out.append((("devices", di, "system"), f"no `systems:` in the site file; declare system {name!r} "
                                                        "there or remove this key"))
            continue
        if name is None and len(declared) > 1:
            out.append((("devices", di, "system"), f"device {dev.name} belongs to no system: add `system:` "
                                                    f"(one of {', '.join(names)})"))
        elif name is not None and name not in names:
            out.append((("devices", di, "system"), f"unknown system {name!r}; declared: {', '.join(names)}"))
    return out


def bound_problems(system: System) -> list[tuple[tuple, str]]:
    """A system's realtime_every within its profile's `cadence.min` .. `cadence.max`."""
    from edge_agent.units import parse_duration
    c = system.profile.raw.get("cadence") or {}
    lo, hi = c.get("min"), c.get("max")
    every = system.realtime_every
    out = []
    if lo is not None and every < parse_duration(lo) or hi is not None and every > parse_duration(hi):
        out.append((("systems", system.index, "realtime_every"),
                    f"{every:g}s is outside what profile {system.kind} allows ({lo or '-'} .. {hi or '-'})"))
    return out


def sink_blocks(site) -> list[tuple]:
    """(cfg, spec, system or None) per sink to run: each enabled `forward:` block; with `systems:`, a
    sink kind that works per system (the spec files) once per system (`files.<system>`)."""
    from edge_agent import registry
    out = []
    for cfg in site.forward.enabled():
        spec = registry.sink(cfg.kind)
        if site.systems and spec.per_system is not None:
            out += [(spec.for_system(cfg, s), spec, s) for s in site.resolved_systems]
        else:
            out.append((cfg, spec, None))
    return out
