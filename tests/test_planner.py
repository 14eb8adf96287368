"""The block-read planner: merging, gap bridging, limits, splitting after exception 2."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.drivers.modbus_spec import ModbusPoint as Point
from edge_agent.drivers.codec import Codec
from edge_agent.drivers.plan import MAX_BITS, MAX_REGISTERS, Plan, plan_blocks

WIDTH = {"uint16": 1, "float32": 2, "float64": 4}


def mk(address: str, typ: str | None = None, length: int | None = None) -> Codec:
    return Codec(Point(id="P", sensor="0001", address=address, type=typ, length=length))


def spans(blocks):
    return [(b.area, b.start, b.count) for b in blocks]


def test_contiguous_points_merge_into_one_read():
    assert spans(plan_blocks([mk("hr:0", "float32"), mk("hr:2"), mk("hr:3", "float64")])) == [("hr", 0, 7)]


def test_gap_bridged_up_to_max_gap_and_not_beyond():
    assert spans(plan_blocks([mk("hr:0"), mk("hr:11")], max_gap=10)) == [("hr", 0, 12)]
    assert spans(plan_blocks([mk("hr:0"), mk("hr:12")], max_gap=10)) == [("hr", 0, 1), ("hr", 12, 1)]
    assert spans(plan_blocks([mk("hr:0"), mk("hr:2")], max_gap=0)) == [("hr", 0, 1), ("hr", 2, 1)]


def test_areas_never_mix_and_bits_bridge_16_per_register():
    got = spans(plan_blocks([mk("hr:0"), mk("ir:1"), mk("co:0"), mk("co:160"), mk("di:0"), mk("di:162")]))
    assert got == [("co", 0, 161), ("di", 0, 1), ("di", 162, 1), ("hr", 0, 1), ("ir", 1, 1)]


def test_register_and_bit_limits():
    assert spans(plan_blocks([mk("hr:0"), mk("hr:124")], 200)) == [("hr", 0, 125)]
    assert spans(plan_blocks([mk("hr:0"), mk("hr:124", "float32")], 200)) == [("hr", 0, 1), ("hr", 124, 2)]
    assert spans(plan_blocks([mk("co:0"), mk("co:1999")], 200)) == [("co", 0, 2000)]
    assert len(plan_blocks([mk("co:0"), mk("co:2000")], 200)) == 2


def test_bits_of_one_register_share_the_read():
    blocks = plan_blocks([mk("hr:5.3"), mk("hr:5.15"), mk("hr:5", "uint16")])
    assert spans(blocks) == [("hr", 5, 1)] and len(blocks[0].members) == 3


def test_split_halves_drop_the_gap_and_remember_it():
    cs = [mk("hr:0"), mk("hr:1"), mk("hr:5"), mk("hr:6")]
    plan = Plan(cs, max_gap=10)
    assert spans(plan.blocks) == [("hr", 0, 7)]
    left, right = plan.split(plan.blocks[0])
    assert spans(plan.blocks) == [("hr", 0, 2), ("hr", 5, 2)]
    assert plan.rejected == [("hr", 2, 5)]
    # a later planning with that knowledge never bridges the gap again
    assert spans(plan_blocks(cs, 10, plan.rejected)) == [("hr", 0, 2), ("hr", 5, 2)]
    (alone,) = plan.split(plan.split(left)[0])
    assert alone.rejected and spans(plan.blocks) == [("hr", 0, 1), ("hr", 1, 1), ("hr", 5, 2)]
    assert "rejected by the device" in plan.describe()[0]


def test_wide_string_point_alone_within_the_limit():
    assert spans(plan_blocks([mk("hr:0", "string", 125)])) == [("hr", 0, 125)]


# ---------------------------------------------------------------- properties

point = st.tuples(st.sampled_from(["hr", "ir", "co", "di"]), st.integers(0, 3000),
                  st.sampled_from(["uint16", "float32", "float64"]))


def codecs_of(pts):
    return [mk(f"{a}:{addr}") if a in ("co", "di") else mk(f"{a}:{addr}", t) for a, addr, t in pts]


def check_cover(blocks, codecs):
    seen = sorted(i for b in blocks for i, _ in b.members)
    assert seen == list(range(len(codecs))), "every point in exactly one read"
    for b in blocks:
        assert 1 <= b.count <= (MAX_BITS if b.is_bits else MAX_REGISTERS)
        for _, c in b.members:
            assert c.area == b.area and b.start <= c.address and c.end <= b.end


def min_reads(codecs, max_gap):
    """Brute-force minimum: dynamic programme over address-ordered runs of points."""
    total = 0
    for area in ("co", "di", "hr", "ir"):
        cs = sorted((c for c in codecs if c.area == area), key=lambda c: (c.address, c.end))
        gap = max_gap * 16 if area in ("co", "di") else max_gap
        limit = MAX_BITS if area in ("co", "di") else MAX_REGISTERS
        best = [0] + [10**9] * len(cs)
        for j in range(1, len(cs) + 1):
            for i in range(j - 1, -1, -1):
                run = cs[i:j]
                end, ok = run[0].end, True
                for c in run[1:]:
                    if c.address - end > gap:
                        ok = False
                        break
                    end = max(end, c.end)
                if not ok or end - run[0].address > limit:
                    break
                best[j] = min(best[j], best[i] + 1)
        total += best[len(cs)]
    return total


@settings(max_examples=200, deadline=None)
@given(st.lists(point, min_size=1, max_size=40), st.integers(0, 20))
def test_plan_covers_every_point_within_limits_and_is_minimal(pts, max_gap):
    codecs = codecs_of(pts)
    blocks = plan_blocks(codecs, max_gap)
    check_cover(blocks, codecs)
    assert len(blocks) == min_reads(codecs, max_gap)


@settings(max_examples=100, deadline=None)
@given(st.lists(point, min_size=1, max_size=30), st.lists(st.integers(0, 1000), max_size=12))
def test_splits_keep_the_cover(pts, picks):
    codecs = codecs_of(pts)
    plan = Plan(codecs, 10)
    for k in picks:
        plan.split(plan.blocks[k % len(plan.blocks)])
        check_cover(plan.blocks, codecs)
