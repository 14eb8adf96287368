"""Spec text files read back by a parser written here, independent of the encoder.

The parser follows PROFILE.md only: UTF-8 without BOM, split on `~`, then `;`,
the header first, `||` last.  Field counts and positions are PROFILE.md's;
code values are checked against the profile's tables.
"""
from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import orjson
import pytest

from edge_agent.config import load_site
from edge_agent.points import Catalog
from edge_agent.profile import load_profile
from edge_agent.profile.encode import Encoder
from edge_agent.profile.textfile import field_text, write_text_file

GOLDEN = Path(__file__).resolve().parent / "golden"
TZ = ZoneInfo("Asia/Shanghai")
T0 = dt.datetime(2026, 11, 29, 10, 0, 20, tzinfo=TZ).timestamp()

# PROFILE.md: fields per record, and where the times are
FIELDS = {"CDDY": 24, "CDSS": 7, "TJSJ": 12, "YCBJ": 17, "FZDY": 5, "FZSS": 4}
HEADER = {"CDDY": 7, "CDSS": 3, "TJSJ": 3, "YCBJ": 3, "FZDY": 3, "FZSS": 3}
TIMES = {"CDDY": [23], "CDSS": [6], "TJSJ": [4, 5, 7, 9, 11], "YCBJ": [5, 6, 8, 10, 16], "FZDY": [],
         "FZSS": [3]}
# (CDDY 17/18, the on/off descriptions, are texts: SYSTEMS.md, receiver rules)
NUMBERS = {"CDDY": [6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 19, 20, 21], "CDSS": [3],
           "TJSJ": [6, 8, 10], "YCBJ": [7, 9, 11], "FZDY": [2, 3, 4], "FZSS": [1, 2]}
TIME_RE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")
NUMBER_RE = re.compile(r"^-?\d+(\.\d+)?$")
NAME_RE = re.compile(r"^(\d{12})_([A-Z]+)_(\d{14})\.txt$")


def parse(data: bytes) -> tuple[list[str], list[list[str]]]:
    """(header fields, records' fields) of one spec file; asserts the framing."""
    assert not data.startswith(b"\xef\xbb\xbf"), "BOM"
    text = data.decode("utf-8")
    assert text.endswith("||"), "no file terminator: receivers treat the file as incomplete"
    assert "；" not in text, "full-width separator"
    segments = text[:-2].split("~")
    assert segments[-1] == "", "the last record is not terminated by ~"
    header, *records = segments[:-1]
    return header.split(";"), [r.split(";") for r in records]


def check_file(path: Path, profile) -> tuple[str, list[list[str]]]:
    """Everything a receiver checks, against PROFILE.md and the profile's code tables."""
    m = NAME_RE.match(path.name)
    assert m, path.name
    mine, typ, stamp = m.groups()
    header, records = parse(path.read_bytes())
    assert len(header) == HEADER[typ] == len(profile.headers[typ])
    assert header[0] == mine
    assert TIME_RE.match(header[-1]) and re.sub(r"\D", "", header[-1]) == stamp, "header time != name time"
    assert records, f"{path.name}: no records"
    status_mask = sum(profile.status_bits)
    for rec in records:
        assert len(rec) == FIELDS[typ] == len(profile.records[typ]), (path.name, rec)
        for i in TIMES[typ]:
            assert rec[i] == "" or TIME_RE.match(rec[i]), (path.name, i, rec[i])
        if TIMES[typ]:
            assert TIME_RE.match(rec[TIMES[typ][-1]]), "the data time is never empty"
        for i in NUMBERS[typ]:
            assert rec[i] == "" or NUMBER_RE.match(rec[i]), (path.name, i, rec[i])
        if typ in ("CDDY", "CDSS", "TJSJ", "YCBJ") and not (typ == "YCBJ" and len(rec[0]) == 3):
            code = rec[0]
            assert code.startswith(mine + "01") and code[14:16] in ("MN", "KG", "LJ", "DT"), code
            assert code[16:20] in profile.sensors, code
        if typ == "CDSS":
            st = int(rec[5])
            assert st >= 0 and st & ~status_mask == 0, st
        if typ == "YCBJ":
            assert rec[4] in profile.anomalies
        if typ == "FZSS":
            assert int(rec[1]) in profile.run_status and int(rec[2]) in profile.power_status
        if typ == "CDDY":
            assert rec[1] in profile.system_codes and rec[4] in profile.value_kinds.values()
            assert rec[3] in profile.sensors
    return typ, records


@pytest.fixture(scope="module")
def golden_site():
    site = load_site(GOLDEN / "site.yaml")
    profile = load_profile(site.profile)
    return site, profile, Catalog(site, profile)


@pytest.mark.parametrize("folder", ["files", "kernel/files"])
def test_every_golden_file_parses_and_matches_the_tables(golden_site, folder):
    _, profile, _ = golden_site
    seen = set()
    for path in sorted((GOLDEN / "expected" / folder).iterdir()):
        typ, _ = check_file(path, profile)
        seen.add(typ)
    assert seen == (set(FIELDS) if folder == "files" else {"CDSS", "YCBJ", "TJSJ"})


def test_ycbj_lifecycle_through_the_kernel(golden_site):
    """The kernel set: CH4 0.5 -> 1.05 (alarm) -> 1.62 (cut-off) -> 0.85 (clear): 001 begin, then end."""
    _, profile, _ = golden_site
    rows = []
    for path in sorted((GOLDEN / "expected" / "kernel" / "files").glob("*_YCBJ_*.txt")):
        rows += [r for r in check_file(path, profile)[1] if r[0] == "14021100123401MN000101"]
    by = {(r[4], r[6] == ""): r for r in rows}
    begin, end = by[("001", True)], by[("001", False)]
    assert begin[5] == end[5] == "2026-11-29 09:56:01", "start: the first sample at or above 1.0"
    assert (begin[7], begin[8]) == ("1.05", "2026-11-29 09:56:01")
    assert end[6] == "2026-11-29 09:56:51", "end: the first sample below the clear level 0.9"
    assert (end[7], end[8]) == ("1.62", "2026-11-29 09:56:21"), "max and the time of max"
    assert [r[4] for r in rows] == ["009", "001", "002", "002", "001", "009"]


def test_ycbj_lifecycle_of_a_ch4_excursion(tmp_path, golden_site):
    """Begin record with an empty end, then an end record with the max and its time."""
    site, profile, catalog = golden_site
    enc = Encoder(site, catalog, profile, tz=TZ)
    begin_t, peak_t, end_t = T0 - 300, T0 - 170.4, T0 - 20
    ev = dict(point=0, anomaly="001", side="high", start=begin_t, value=1.05)
    begin = SimpleNamespace(**ev, begin=True, end=None, max=1.05, max_time=begin_t, min=1.05, min_time=begin_t,
                            avg=1.05)
    end = SimpleNamespace(**ev, begin=False, end=end_t, max=1.6199999, max_time=peak_t, min=0.95,
                          min_time=end_t - 1, avg=1.31)
    out = {}
    for name, e, t in (("begin", begin, begin_t), ("end", end, end_t)):
        body = enc.ycbj([e], t)
        path = write_text_file(profile, site, "YCBJ", t, orjson.loads(body), tmp_path, tz=TZ)
        _, records = check_file(path, profile)
        out[name] = records[0]
    b, e = out["begin"], out["end"]
    assert b[0] == e[0] == "14021100123401MN000101"
    assert b[4] == e[4] == "001"
    assert b[5] == e[5] == "2026-11-29 09:55:20"
    assert b[6] == "" and e[6] == "2026-11-29 10:00:00"
    assert e[7] == "1.62" and e[8] == "2026-11-29 09:57:29"
    assert (e[9], e[11]) == ("0.95", "1.31")


def test_write_is_atomic_idempotent_and_stamped(tmp_path, golden_site):
    site, profile, _ = golden_site
    recs = [{"substation_code": "001", "run_status": 0, "power_status": 1, "time": "2026-11-29 10:00:20"}]
    p1 = write_text_file(profile, site, "FZSS", T0 + 0.9, recs, tmp_path, tz=TZ, mtime_ns=1_000_000_007)
    assert p1.name == "140211001234_FZSS_20261129100020.txt"
    assert p1.stat().st_mtime_ns == 1_000_000_007
    assert os.listdir(tmp_path) == [p1.name], "the temp file is renamed, nothing left behind"
    # the same message again (a crash before the buffer ack): no second file
    assert write_text_file(profile, site, "FZSS", T0, recs, tmp_path, tz=TZ) == p1
    assert len(os.listdir(tmp_path)) == 1
    # a different message in the same second: the next second, in name and header
    slept = []
    p2 = write_text_file(profile, site, "FZSS", T0, [dict(recs[0], run_status=1)], tmp_path, tz=TZ,
                         clock=lambda: T0 + 0.5, sleep=slept.append)
    assert p2.name == "140211001234_FZSS_20261129100021.txt"
    assert parse(p2.read_bytes())[0][-1] == "2026-11-29 10:00:21"
    assert slept and 0 < slept[0] <= 0.5, "waits until that second has come: headers never in the future"


def test_field_text_never_uses_an_exponent():
    assert field_text(0.00001) == "0.00001"
    assert field_text(1e16) == "10000000000000000"
    assert field_text(0.42) == "0.42"
    assert field_text(None) == "" and field_text(float("nan")) == ""
    assert field_text(12) == "12" and field_text(True) == "1"


def test_line_breaks_variant_still_parses(tmp_path, golden_site):
    site, profile, _ = golden_site
    variant = profile.__class__(**{**profile.__dict__, "files": {**profile.files, "line_breaks": True}})
    recs = [{"substation_code": "001", "run_status": 0, "power_status": 1, "time": "2026-11-29 10:00:20"}]
    p = write_text_file(variant, site, "FZSS", T0, recs, tmp_path, tz=TZ)
    data = p.read_bytes()
    assert data.count(b"~\n") == 2
    header, records = parse(data.replace(b"\n", b""))
    assert records == [["001", "0", "1", "2026-11-29 10:00:20"]]


def test_framing_characters_in_a_record_are_refused(tmp_path, golden_site):
    site, profile, _ = golden_site
    with pytest.raises(ValueError, match="framing"):
        write_text_file(profile, site, "FZDY", T0, [{"substation_code": "001", "location": "a;b"}], tmp_path,
                        tz=TZ)
    assert os.listdir(tmp_path) == []
