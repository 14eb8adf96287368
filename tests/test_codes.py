"""edge_agent/codes.py is the one table: everything that names a status bit, a slot or a level agrees with it."""
from __future__ import annotations

import pytest

from edge_agent import codes
from edge_agent.filtering import load_pure, records
from edge_agent.filtering.layout import MACHINES
from test_kernel import compiled_module


def test_both_kernel_twins_carry_the_tables_constants():
    want = codes.kernel_constants()
    for mod in (load_pure(), compiled_module()):
        if mod is None:
            continue
        assert mod._MINE == want          # the import check itself compared them; this names a mismatch


def test_what_derives_from_the_table():
    from edge_agent import demo, frame
    from edge_agent.profile import load_profile
    assert (frame.Q_SUBSTATION_FAULT, frame.Q_SENSOR_FAULT) == (16, 128)
    assert records.SLOTS == codes.SLOTS and records.ST_ALARM == 1
    assert MACHINES[0] == ("alarm_high", "alarm_high_clear") and len(MACHINES) == len(codes.MACHINES)
    assert set(demo.STATUS_NAMES) == {s.bit for s in codes.STATUS_BITS}
    assert [demo.STATUS_NAMES[s.bit] for s in codes.STATUS_BITS] == [s.label for s in codes.STATUS_BITS]
    assert load_profile("default").status_bits == {s.bit: s.name for s in codes.STATUS_BITS}
    assert load_profile("default").legacy_levels == codes.legacy_levels() == (3, 3, 4, 4, 2, 2)


def test_levels_and_the_old_ladder():
    assert codes.LEVELS[codes.BLUE:] == ("blue", "yellow", "orange", "red") and codes.LEVEL_NAMES_ZH[codes.RED] == "红"
    assert codes.legacy_levels({"warn": None, "cutoff": "orange"}) == (3, 3, 3, 3, 0, 0)
    with pytest.raises(ValueError, match="'purple' is not a level"):
        codes.legacy_levels({"warn": "purple"})
    with pytest.raises(ValueError, match="'trip' is not a ladder"):
        codes.legacy_levels({"trip": "red"})
    assert codes.latch_bits(codes.ST_ALARM) == 3 and codes.latch_bits(codes.ST_CUTOFF) == 12
