"""The alarm book on a real SQLite file: lifecycle table, restart, outbox, deadlines, bad input.

Level changes are constructed (the contract's LevelChange); the records are
encoded by the real profile encoder and read back as JSON.
"""
from __future__ import annotations

import math
import sqlite3

import pytest

from alarm_support import Bench, Clock, kinds
from edge_agent.alarms import AlarmError
from edge_agent.alarms.book import AlarmBook
from edge_agent.alarms.spec import LEVELS
from test_kernel import K, T0, frame, thresholds  # noqa: F401  (K: the twins fixture)

H, M = 3600.0, 60.0

# Each step: ("change", level, previous, value, threshold[, rule]) | ("ack", by) | ("dispose",) | ("tick", s)
# then the records it must emit (kinds()) and fields of the alarm afterwards.
LIFECYCLE = {
    "open blue": [
        (("change", "blue", "none", 3.1, 3.0), ["YCBJ 009 begin", "alarm open"],
         {"level": "blue", "max_level": "blue", "state": "open", "end": None, "threshold": 3.0, "overdue": False}),
    ],
    "raise inside one anomaly code": [
        (("change", "blue", "none", 3.1, 3.0), ["YCBJ 009 begin", "alarm open"], {}),
        (("change", "yellow", "blue", 3.6, 3.5), ["alarm update"], {"level": "yellow", "max_level": "yellow",
                                                                    "threshold": 3.5}),
    ],
    "raise across codes ends one YCBJ and begins the next": [
        (("change", "yellow", "none", 3.6, 3.5), ["YCBJ 009 begin", "alarm open"], {}),
        (("change", "orange", "yellow", 4.1, 4.0), ["YCBJ 009 end", "YCBJ 001 begin", "alarm update"],
         {"level": "orange", "max_level": "orange"}),
    ],
    "jump two levels at once": [
        (("change", "orange", "none", 4.2, 4.0), ["YCBJ 001 begin", "alarm open"], {"level": "orange"}),
    ],
    "fall keeps the highest level": [
        (("change", "red", "none", 4.6, 4.5), ["YCBJ 001 begin", "alarm open"], {}),
        (("change", "yellow", "red", 3.4, 3.5), ["YCBJ 001 end", "YCBJ 009 begin", "alarm update"],
         {"level": "yellow", "max_level": "red", "threshold": 4.5}),
    ],
    "close": [
        (("change", "yellow", "none", 3.6, 3.5), ["YCBJ 009 begin", "alarm open"], {}),
        (("change", "none", "yellow", 3.3, 3.4), ["YCBJ 009 end", "alarm close"],
         {"level": "none", "state": "closed", "max_level": "yellow"}),
    ],
    "low side takes the low code": [
        (("change", "yellow", "none", 0.4, 0.5), ["YCBJ 010 begin", "alarm open"], {"extreme": None}),
    ],
    "ack": [
        (("change", "orange", "none", 4.1, 4.0), ["YCBJ 001 begin", "alarm open"], {}),
        (("ack", "值班员"), ["alarm ack"], {"state": "acked", "acked_by": "值班员"}),
    ],
    "dispose an open alarm": [
        (("change", "orange", "none", 4.1, 4.0), ["YCBJ 001 begin", "alarm open"], {}),
        (("dispose",), ["YCBJ 001 begin disposal", "disposal dispose"], {"state": "disposed", "end": None}),
        (("change", "none", "orange", 3.0, 3.9), ["YCBJ 001 end", "alarm close"], {"state": "disposed"}),
    ],
    "dispose a closed alarm": [
        (("change", "red", "none", 4.6, 4.5), ["YCBJ 001 begin", "alarm open"], {}),
        (("change", "none", "red", 3.0, 4.4), ["YCBJ 001 end", "alarm close"], {}),
        (("dispose",), ["YCBJ 001 end disposal", "disposal dispose"], {"state": "disposed"}),
    ],
    "overdue once at its deadline": [
        (("change", "red", "none", 4.6, 4.5), ["YCBJ 001 begin", "alarm open"], {}),
        (("tick", 15 * M - 1), [], {"overdue": False}),
        (("tick", 2), ["escalation overdue"], {"overdue": True, "state": "open"}),
        (("tick", H), [], {"overdue": True}),
    ],
    "acknowledged in time is never overdue": [
        (("change", "red", "none", 4.6, 4.5), ["YCBJ 001 begin", "alarm open"], {}),
        (("ack", "值班员"), ["alarm ack"], {}),
        (("tick", H), [], {"overdue": False}),
    ],
    "a raise brings the deadline nearer and escalates again": [
        (("change", "yellow", "none", 3.6, 3.5), ["YCBJ 009 begin", "alarm open"], {}),
        (("tick", 2 * H + 1), ["escalation overdue"], {"overdue": True}),
        (("change", "red", "yellow", 4.6, 4.5), ["YCBJ 009 end", "YCBJ 001 begin", "alarm update"], {}),
        (("tick", 0.1), ["escalation overdue"], {"max_level": "red"}),
    ],
    "disposed of an undisposed overdue alarm stops it being overdue": [
        (("change", "orange", "none", 4.1, 4.0), ["YCBJ 001 begin", "alarm open"], {}),
        (("tick", 30 * M + 1), ["escalation overdue"], {"overdue": True}),
        (("dispose",), ["YCBJ 001 begin disposal", "disposal dispose"], {"overdue": False}),
    ],
    "legacy alarms make no records of their own": [
        (("change", "yellow", "none", 0.85, 0.8, "legacy"), [], {"rule": "legacy"}),
        (("change", "red", "yellow", 1.6, 1.5, "legacy"), [], {"max_level": "red"}),
        (("change", "none", "red", 0.7, 0.8, "legacy"), [], {"state": "closed"}),
        (("dispose",), ["YCBJ 002 end disposal", "disposal dispose"], {"state": "disposed"}),
    ],
    "legacy escalation still goes out": [
        (("change", "orange", "none", 1.1, 1.0, "legacy"), [], {}),
        (("tick", 30 * M + 1), ["escalation overdue"], {"overdue": True}),
    ],
}


def run_step(bench: Bench, step: tuple, alarm_id: int | None) -> int | None:
    kind = step[0]
    if kind == "change":
        level, previous, value, threshold = step[1:5]
        rule = step[5] if len(step) > 5 else "level"
        bench.book.apply([bench.change(0, level, previous, rule=rule, value=value, threshold=threshold, dt=1.0)])
        return alarm_id or max(a["id"] for a in bench.book.list("all"))
    if kind == "ack":
        bench.book.ack(alarm_id, by=step[1])
    elif kind == "dispose":
        bench.book.dispose(alarm_id, handler="李工", cause="钻孔水位上涨", action="加密观测，通知水文地质")
    elif kind == "tick":
        bench.clock.advance(step[1])
        bench.book.check_deadlines()
    return alarm_id


@pytest.mark.parametrize("name", list(LIFECYCLE))
def test_lifecycle(tmp_path, name):
    bench = Bench(tmp_path)
    alarm_id = None
    for step, want_records, want_fields in LIFECYCLE[name]:
        alarm_id = run_step(bench, step, alarm_id)
        got = bench.take()
        assert kinds(got) == want_records, step
        view = bench.book.get(alarm_id)
        for key, value in want_fields.items():
            assert view[key] == value, (step, key, view)
        for typ, rec in got:
            if typ != "YCBJ":
                assert rec["id"] == alarm_id and rec["point_code"] == bench.catalog.points[0].code
    # what the book holds survives reopening its file
    bench.book.close()
    again = bench.open()
    before = {k: v for k, v in view.items() if k != "overdue"}
    assert {k: v for k, v in again.get(alarm_id).items() if k != "overdue"} == before
    assert bench.take() == []          # nothing left in the outbox


def test_records_carry_what_the_platform_needs(tmp_path):
    bench = Bench(tmp_path)
    b = bench.book
    b.apply([bench.change(0, "orange", "none", value=4.1, threshold=4.0)], values=[4.1, math.nan])
    a = b.list()[0]
    for v in (4.3, 4.5, 4.2):
        bench.clock.advance(1)
        a_obj = b.alarms[a["id"]]
        a_obj.sample(v, bench.clock.wall())
    bench.take()
    b.apply([bench.change(0, "none", "orange", value=3.8, threshold=3.9, dt=1)])
    (t1, end), (t2, close) = bench.take()
    assert (t1, t2) == ("YCBJ", "alarm")
    assert end["max"] == 4.5 and end["min"] == 4.1 and end["avg"] == pytest.approx((4.1 + 4.3 + 4.5 + 4.2) / 4, abs=0.005)
    assert close["extreme"] == 4.5 and close["level_code"] is None and close["max_level_code"] == 2
    b.dispose(a["id"], handler="李工", cause="涌水", action="排水", handled_at=bench.clock.wall() - 10)
    (_, ycbj), (_, disposal) = bench.take()
    assert (ycbj["cause"], ycbj["action"], ycbj["entered_by"]) == ("涌水", "排水", "李工")
    assert ycbj["entered_at"] == bench.encoder.times.text(bench.clock.wall() - 10)
    assert ycbj["start"] == end["start"] and ycbj["end"] == end["end"] and ycbj["anomaly"] == "001"
    assert disposal["disposal"]["handled_at"] == bench.clock.wall() - 10
    assert disposal["disposal"]["entered_at"] == bench.clock.wall()


def test_restart_mid_alarm_gives_no_second_begin_and_the_end_still_comes(tmp_path):
    bench = Bench(tmp_path)
    bench.book.apply([bench.change(0, "orange", "none", value=4.1, threshold=4.0)])
    assert kinds(bench.take()) == ["YCBJ 001 begin", "alarm open"]
    bench.book.close()
    book = bench.open()                      # the kernel starts again from level 0: 0 -> orange again
    book.apply([bench.change(0, "orange", "none", value=4.2, threshold=4.0, dt=5)])
    assert bench.take() == [] and len(book.list()) == 1
    book.apply([bench.change(0, "none", "orange", value=3.0, threshold=3.9, dt=5)])
    assert kinds(bench.take()) == ["YCBJ 001 end", "alarm close"]


class _Frame:
    def __init__(self, device: int, wall: float):
        self.device, self.wall = device, wall


def test_restored_alarm_closes_at_the_first_valid_sample_at_level_0(tmp_path):
    bench = Bench(tmp_path)
    bench.book.apply([bench.change(1, "yellow", "none", value=0.4, threshold=0.5)])
    bench.take()
    bench.book.close()
    book = bench.open()
    bench.clock.advance(10)
    t = bench.clock.wall()
    values, status, times = [1.0, 0.9], [0, 0], [t, t]
    book.observe(_Frame(0, t), values, [0, 128], times, lambda i: 0)    # a faulted sample settles nothing
    assert bench.take() == [] and book.list()
    book.observe(_Frame(0, t), values, status, times, lambda i: 0)
    recs = bench.take()
    assert kinds(recs) == ["YCBJ 010 end", "alarm close"]
    assert recs[0][1]["end"] == bench.encoder.times.text(t)


def test_a_crash_between_book_and_buffer_sends_the_records_at_the_next_start(tmp_path):
    bench = Bench(tmp_path)

    def crash(records):
        raise SystemExit("killed before the buffer committed")

    bench.book.emit = crash
    with pytest.raises(SystemExit):
        bench.book.apply([bench.change(0, "red", "none", value=4.6, threshold=4.5)])
    bench.book.file.close()
    bench.open()                             # the records in the outbox go out now, once
    assert kinds(bench.take()) == ["YCBJ 001 begin", "alarm open"]
    bench.open()
    assert bench.take() == []


def test_item_alarms_have_no_ycbj(tmp_path):
    from edge_agent.rollup import ItemLevelChange   # the contract's roll-up change: `item` instead of `point`

    bench = Bench(tmp_path)
    bench.book.apply([ItemLevelChange("浸润线-1断面", 2, 0, "rollup", math.nan, 4, bench.clock.wall())])
    recs = bench.take()
    assert kinds(recs) == ["alarm open"] and recs[0][1]["item"] == "浸润线-1断面"
    a = recs[0][1]
    bench.book.dispose(a["id"], handler="李工", cause="多点黄色", action="巡查")
    assert kinds(bench.take()) == ["disposal dispose"]


def test_wall_clock_steps_neither_fire_nor_delay_an_escalation(tmp_path):
    clock = Clock()
    bench = Bench(tmp_path, clock, deadlines={"red": 60.0})
    bench.book.apply([bench.change(0, "red", "none", value=4.6, threshold=4.5)])
    bench.take()
    clock.step_wall(+H)                  # NTP jumps an hour ahead
    assert bench.book.check_deadlines() == 0
    clock.advance(59)
    assert bench.book.check_deadlines() == 0
    clock.step_wall(-2 * H)              # and back
    clock.advance(2)
    assert bench.book.check_deadlines() == 1


def test_site_deadlines_override_the_profile(tmp_path):
    bench = Bench(tmp_path, deadlines={"blue": 5.0})
    bench.book.apply([bench.change(0, "blue", "none", value=3.1, threshold=3.0)])
    assert bench.book.list()[0]["deadline"] == bench.clock.wall() + 5.0


BAD = [
    ("unknown alarm", dict(alarm=999), 404, "no such alarm"),
    ("empty handler", dict(handler="  "), 400, "handler: empty"),
    ("handler not text", dict(handler=7), 400, "handler: must be text"),
    ("semicolon", dict(cause="水位;上涨"), 400, "cause: contains ';'"),
    ("tilde", dict(action="排水~"), 400, "action: contains '~'"),
    ("bar", dict(handler="李|工"), 400, "handler: contains '|'"),
    ("line break", dict(action="排水\n加固"), 400, "action: contains a line break"),
    ("over-long", dict(cause="涌" * 201), 400, "cause: 201 characters"),
    ("handled in the future", dict(handled_at=+3600), 400, "handled_at:"),
    ("handled before it began", dict(handled_at=-86400), 400, "before the alarm began"),
    ("handled_at not a number", dict(handled_at="soon"), 400, "handled_at:"),
]


@pytest.mark.parametrize("name,kw,status,text", BAD, ids=[b[0] for b in BAD])
def test_bad_disposal_is_one_error_and_nothing_recorded(tmp_path, name, kw, status, text):
    bench = Bench(tmp_path)
    bench.book.apply([bench.change(0, "orange", "none", value=4.1, threshold=4.0)])
    bench.take()
    alarm_id = bench.book.list()[0]["id"]
    args = dict(handler="李工", cause="涌水", action="排水")
    target = kw.pop("alarm", alarm_id)
    if isinstance(kw.get("handled_at"), int):
        kw["handled_at"] = bench.clock.wall() + kw["handled_at"]
    args.update(kw)
    before = sqlite3.connect(bench.path).execute("SELECT doc FROM alarms").fetchall()
    with pytest.raises(AlarmError) as info:
        bench.book.dispose(target, **args)
    assert info.value.status == status and text in info.value.message and "\n" not in info.value.message
    assert bench.take() == []
    assert sqlite3.connect(bench.path).execute("SELECT doc FROM alarms").fetchall() == before
    assert bench.book.get(alarm_id)["disposal"] is None


def test_twice_is_refused(tmp_path):
    bench = Bench(tmp_path)
    bench.book.apply([bench.change(0, "orange", "none", value=4.1, threshold=4.0)])
    i = bench.book.list()[0]["id"]
    bench.book.ack(i, by="值班员")
    with pytest.raises(AlarmError) as info:
        bench.book.ack(i, by="值班员")
    assert info.value.status == 409 and "already acknowledged" in info.value.message
    bench.book.dispose(i, handler="李工", cause="涌水", action="排水")
    bench.take()
    for call in (lambda: bench.book.dispose(i, handler="李工", cause="涌水", action="排水"),
                 lambda: bench.book.ack(i, by="x")):
        with pytest.raises(AlarmError) as info:
            call()
        assert info.value.status == 409 and "already disposed of by 李工" in info.value.message
    assert bench.take() == []


def test_an_unwritable_book_refuses_operator_actions(tmp_path):
    bench = Bench(tmp_path)
    bench.book.apply([bench.change(0, "orange", "none", value=4.1, threshold=4.0)])
    bench.take()
    i = bench.book.list()[0]["id"]
    bench.book.file.db.execute("PRAGMA query_only=1")      # the file refuses writes from now on
    with pytest.raises(AlarmError) as info:
        bench.book.dispose(i, handler="李工", cause="涌水", action="排水")
    assert info.value.status == 503 and "nothing recorded" in info.value.message
    assert bench.take() == [] and bench.book.get(i)["disposal"] is None


def test_old_ladder_alarms_come_from_the_kernels_level_changes(tmp_path, K):
    """The book takes the kernel's own level changes for warn/alarm/cutoff points (rule "legacy",
    coloured by the profile's legacy_levels): tracked, thresholds kept, no YCBJ of its own."""
    bench = Bench(tmp_path)
    k = K(2, thresholds(2, warn_high=0.8, alarm_high=1.0, alarm_high_clear=0.9, cutoff_high=1.5,
                        cutoff_restore=1.0))
    seen = []
    for t, v in enumerate([0.5, 0.85, 1.1, 1.6, 0.95, 0.7]):
        k.process(frame(T0 + t, [v], [0]))
        changes = k.take_level_changes()
        bench.book.apply(changes, k.value)
        seen += [(c.rule, LEVELS[c.level], c.threshold) for c in changes]
    assert seen == [("legacy", "yellow", 0.8), ("legacy", "orange", 1.0), ("legacy", "red", 1.5),
                    ("legacy", "orange", 1.0), ("legacy", "none", 0.9)]
    assert bench.take() == []                      # the kernel's YCBJ 009/001/002 are those records
    (a,) = bench.book.list("closed")
    assert (a["rule"], a["max_level"], a["threshold"], a["start"], a["end"]) == ("legacy", "red", 1.5, T0 + 1,
                                                                                  T0 + 5)


def _without_second_point(bench: Bench, folder):
    """The bench's site, catalogue and encoder without point 00000302 (a reload that removed it)."""
    from alarm_support import SITE
    from edge_agent.drivers.sim.harness import site_from_yaml
    from edge_agent.points import Catalog
    from edge_agent.profile import Encoder
    folder.mkdir()
    site = site_from_yaml(SITE.split('      - {id: "00000302"')[0], folder)
    catalog = Catalog(site, bench.profile)
    return site, catalog, Encoder(site, catalog, bench.profile)


def test_alarms_of_points_and_items_a_reload_removed_end_with_their_records(tmp_path):
    from edge_agent.rollup import ItemLevelChange
    bench = Bench(tmp_path)
    bench.book.apply([bench.change(1, "red", "none", value=4.6, threshold=4.5),
                      bench.change(0, "blue", "none", value=3.1, threshold=3.0),
                      ItemLevelChange("水文孔", 2, 0, "rollup", math.nan, 4, bench.clock.wall())])
    bench.take()
    site, catalog, encoder = _without_second_point(bench, tmp_path / "reloaded")
    bench.clock.advance(60)
    bench.book.bind(catalog, encoder, site)
    got = bench.take()
    assert kinds(got) == ["YCBJ 001 end", "alarm close", "alarm close"], got
    assert got[0][1]["point_code"] == bench.catalog.points[1].code       # the old configuration's code
    assert got[1][1]["point"] == "00000302" and got[2][1]["item"] == "水文孔"
    assert [a["point"] for a in bench.book.list("open")] == ["00000301"]    # still configured: still open
    ended = {a["point"] or a["item"]: a for a in bench.book.list("closed")}
    assert ended["00000302"]["end"] == ended["水文孔"]["end"] == bench.clock.wall()


def test_an_alarm_whose_point_went_while_the_agent_was_down_ends_at_the_start(tmp_path):
    bench = Bench(tmp_path)
    bench.book.apply([bench.change(1, "orange", "none", value=4.1, threshold=4.0)])
    bench.take()
    bench.book.close()
    site, catalog, encoder = _without_second_point(bench, tmp_path / "changed")
    book = AlarmBook(bench.path, bench.spec, emit=bench.records.extend, clock=bench.clock.wall,
                     mono=bench.clock.mono)
    book.bind(catalog, encoder, site)
    got = bench.take()
    assert kinds(got) == ["alarm close"] and got[0][1]["point"] == "00000302"   # no point code to end a YCBJ
    assert book.list("open") == []
    book.close()
    again = AlarmBook(bench.path, bench.spec, emit=bench.records.extend, clock=bench.clock.wall,
                      mono=bench.clock.mono)
    again.bind(catalog, encoder, site)
    assert bench.take() == [] and again.list("open") == []


def test_the_book_reads_the_agents_clock_by_default(tmp_path):
    """Without a clock of its own the book takes edge_agent.clock.now: a stepped wall clock (NTP, `date -s`)
    moves an acknowledgement's time the way it moves every other timestamp of the agent."""
    import time

    from edge_agent import clock

    b = Bench(tmp_path)
    book = AlarmBook(tmp_path / "own.sqlite", b.spec, emit=lambda records: None)
    book.bind(b.catalog, b.encoder, b.site)
    try:
        book.apply([b.change(0, "orange", "none", threshold=4.0, value=4.1)])
        (alarm_id,) = book.alarms
        clock.step(-86400.0)
        low = time.time() - 86400.0
        acked_at = book.ack(alarm_id, by="值班员")["acked_at"]
        high = time.time() - 86400.0
    finally:
        clock.reset()
        book.close()
    assert low <= acked_at <= high, (low, acked_at, high)
