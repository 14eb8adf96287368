"""Golden fixtures: fixed inputs give byte-identical MQTT payloads and spec text files.

Regenerate (after an intended format change, then review the diff):
    python tests/golden/make_golden.py
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import orjson

GOLDEN = Path(__file__).resolve().parent / "golden"


def _generator():
    spec = importlib.util.spec_from_file_location("make_golden", GOLDEN / "make_golden.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["make_golden"] = mod
    spec.loader.exec_module(mod)
    return mod


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_generated_fixtures_are_byte_identical(tmp_path):
    _generator().generate(tmp_path)
    got, want = _tree(tmp_path), _tree(GOLDEN / "expected")
    assert sorted(got) == sorted(want), "a different set of files; regenerate and review"
    for name in want:
        assert got[name] == want[name], f"{name} differs from the golden fixture"


def test_payloads_carry_the_envelope_and_profile_keys_in_order(tmp_path):
    gen = _generator()
    site, profile, enc, messages = gen.inputs()
    for seq, typ, t, body in messages:
        payload = orjson.loads(enc.envelope(seq, typ, t, body))
        assert list(payload) == ["seq", "type", "mine_code", "gateway", "time", "ts", "records"]
        assert payload["ts"] == round(t, 3)
        assert (payload["seq"], payload["type"], payload["mine_code"], payload["gateway"]) == \
            (seq, typ, "140211001234", "gw-01")
        assert payload["records"], typ
        for rec in payload["records"]:
            assert tuple(rec) == profile.records[typ]


def test_same_second_collision_takes_the_next_second_in_name_and_header(tmp_path):
    files = sorted(p.name for p in (GOLDEN / "expected" / "files").iterdir())
    # seq 8 (10:00:20) and seq 12 (10:00:20.4) are both CDSS
    assert "140211001234_CDSS_20261129100020.txt" in files
    assert "140211001234_CDSS_20261129100021.txt" in files
    text = (GOLDEN / "expected" / "files" / "140211001234_CDSS_20261129100021.txt").read_text(encoding="utf-8")
    assert text.split("~")[0].endswith(";2026-11-29 10:00:21")
