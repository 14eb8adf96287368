"""One table of the codes the agent decides: status bits, the old alarm ladder, warning levels.

Everything else derives its constants from here: `frame.Q_*` (the status bits
a driver may set), `filtering.records.SLOTS` and `ST_*`, `filtering.layout`'s
state machines, the demo's and the console's names.  The compiled kernel
keeps its own literal copies (Cython needs compile-time constants) and
checks them against this module when it is imported (`kernel_constants()`).

Levels are numbered 0 none, 1 blue, 2 yellow, 3 orange, 4 red, so "more
severe" is "larger" everywhere inside the agent; a record carries the colour
and the profile maps colours to its own numbers.  The old ladder (pre-warning,
alarm, cut-off) keeps its own records (YCBJ 009/010/001/002) and is mapped
onto levels by the profile (`legacy_levels:`, default `LEGACY_LEVELS`).
"""
from __future__ import annotations

from dataclasses import dataclass

# ----------------------------------------------------------------------------- levels

LEVELS = ("none", "blue", "yellow", "orange", "red")
LEVEL_NAMES_ZH = ("无", "蓝", "黄", "橙", "红")
NONE, BLUE, YELLOW, ORANGE, RED = range(len(LEVELS))
COLOURS = LEVELS[1:]                 # the configurable levels, least severe first


def level_number(name: str) -> int:
    """'blue' -> 1 ... 'red' -> 4, 'none' -> 0; ValueError naming the choices otherwise."""
    try:
        return LEVELS.index(name)
    except ValueError:
        raise ValueError(f"{name!r} is not a level; use one of {', '.join(LEVELS)}") from None


# ----------------------------------------------------------------------------- status bits (PROFILE.md)

@dataclass(frozen=True, slots=True)
class StatusBit:
    bit: int
    name: str        # the profile's default name (status_bits:)
    label: str       # what the demo shows
    zh: str          # what a dispatcher reads


STATUS_BITS: tuple[StatusBit, ...] = (
    StatusBit(1, "alarm", "ALARM", "报警"),
    StatusBit(2, "cutoff", "CUT-OFF", "断电"),
    StatusBit(4, "calibrating", "calibrating", "标校"),
    StatusBit(8, "over_range", "over-range", "超量程"),
    StatusBit(16, "substation_fault", "substation-fault", "分站故障"),
    StatusBit(32, "not_polled", "not-polled", "未巡检"),
    StatusBit(64, "paused", "paused", "暂停"),
    StatusBit(128, "sensor_fault", "sensor-fault", "传感器故障"),
)
_BIT = {s.name: s.bit for s in STATUS_BITS}
ST_ALARM, ST_CUTOFF, ST_OVER_RANGE = _BIT["alarm"], _BIT["cutoff"], _BIT["over_range"]
ST_SUBSTATION_FAULT, ST_SENSOR_FAULT, ST_NOT_POLLED = _BIT["substation_fault"], _BIT["sensor_fault"], _BIT["not_polled"]
FAULT_BITS = ST_SUBSTATION_FAULT | ST_SENSOR_FAULT

# per-point quality a driver puts in a Frame: the two fault bits, which the kernel ORs into the status
Q_OK = 0
Q_SUBSTATION_FAULT = ST_SUBSTATION_FAULT    # device unreachable: value is stale or missing
Q_SENSOR_FAULT = ST_SENSOR_FAULT            # device answered, this value is bad (NaN/Inf, exception, Bad status)


# ----------------------------------------------------------------------------- the old ladder

@dataclass(frozen=True, slots=True)
class Machine:
    """One of the kernel's hysteresis state machines of the old ladder (latch bit = its position)."""
    name: str
    enter: str       # the Catalog.thresholds() column it enters at
    clear: str       # ... and leaves beyond (pre-warnings clear where they enter)
    side: str        # 'high' | 'low'
    status: int      # status bit while on (0: none)
    anomaly: str     # YCBJ anomaly code (PROFILE.md)
    ladder: str      # what legacy_levels maps: warn | alarm | cutoff


MACHINES: tuple[Machine, ...] = (
    Machine("alarm_high", "alarm_high", "alarm_high_clear", "high", ST_ALARM, "001", "alarm"),
    Machine("alarm_low", "alarm_low", "alarm_low_clear", "low", ST_ALARM, "001", "alarm"),
    Machine("cutoff_high", "cutoff_high", "cutoff_restore", "high", ST_CUTOFF, "002", "cutoff"),
    Machine("cutoff_low", "cutoff_low", "cutoff_low_restore", "low", ST_CUTOFF, "002", "cutoff"),
    Machine("warn_high", "warn_high", "warn_high", "high", 0, "009", "warn"),
    Machine("warn_low", "warn_low", "warn_low", "low", 0, "010", "warn"),
)
LADDERS = ("warn", "alarm", "cutoff")
LEGACY_LEVELS = {"warn": "yellow", "alarm": "orange", "cutoff": "red"}   # the profile may change it

# the kernel's event slots: one per machine, then the states without thresholds
SLOTS: tuple[tuple[str, str], ...] = tuple((m.anomaly, m.side) for m in MACHINES) + (
    ("008", ""),     # over range
    ("004", ""),     # sensor fault / disconnected
    ("006", ""),     # substation (device) unreachable
)
SLOT_STATUS: tuple[int, ...] = tuple(m.status for m in MACHINES) + (ST_OVER_RANGE, ST_SENSOR_FAULT,
                                                                    ST_SUBSTATION_FAULT)


def latch_bits(status: int) -> int:
    """The kernel's latch bits (1 << slot) whose state sets `status`."""
    return sum(1 << s for s, st in enumerate(SLOT_STATUS) if st == status)


def legacy_levels(mapping: dict | None = None) -> tuple[int, ...]:
    """The level of each machine of MACHINES under a profile's `legacy_levels:` (None: the default).

    Raises ValueError naming the key when a ladder or a colour is unknown.
    """
    table = dict(LEGACY_LEVELS)
    for key, colour in (mapping or {}).items():
        if key not in LADDERS:
            raise ValueError(f"{key!r} is not a ladder of the old thresholds; use {', '.join(LADDERS)}")
        table[key] = "none" if colour is None else str(colour)
    return tuple(level_number(table[m.ladder]) for m in MACHINES)


def kernel_constants() -> dict[str, int]:
    """The values the compiled kernel writes as literals, derived from the tables above."""
    slot = {code: s for s, code in enumerate(SLOTS)}
    return {
        "NM": len(MACHINES), "NS": len(SLOTS),
        "B_RANGE": 1 << slot[("008", "")], "B_FAULT": 1 << slot[("004", "")], "B_SUB": 1 << slot[("006", "")],
        "L_ALARM": latch_bits(ST_ALARM), "L_CUTOFF": latch_bits(ST_CUTOFF),
        "ST_ALARM": ST_ALARM, "ST_CUTOFF": ST_CUTOFF, "ST_OVER_RANGE": ST_OVER_RANGE,
        "ST_SUBSTATION": ST_SUBSTATION_FAULT, "ST_SENSOR": ST_SENSOR_FAULT,
        "Q_SUBSTATION": Q_SUBSTATION_FAULT, "Q_SENSOR": Q_SENSOR_FAULT,
    }


def _check() -> None:
    bits = [s.bit for s in STATUS_BITS]
    if len(set(bits)) != len(bits) or any(b <= 0 or b & (b - 1) for b in bits):
        raise ImportError("edge_agent.codes: status bits must be distinct powers of two")
    if len(LEVELS) != len(LEVEL_NAMES_ZH) or LEVELS[0] != "none":
        raise ImportError("edge_agent.codes: every level needs its Chinese name, 'none' first")
    for hi, lo in zip(MACHINES[::2], MACHINES[1::2]):   # the kernel pairs them: even high, odd low
        if (hi.side, lo.side, hi.ladder) != ("high", "low", lo.ladder):
            raise ImportError("edge_agent.codes: MACHINES must alternate high/low machines of one ladder")
    if set(LEGACY_LEVELS) != set(LADDERS) or set(m.ladder for m in MACHINES) != set(LADDERS):
        raise ImportError("edge_agent.codes: LEGACY_LEVELS must map exactly the ladders of MACHINES")


_check()
