"""Configuration fuzz: the example site file and a CSV point table, mutated a thousand times (fixed seed).

Each case writes the mutated files and runs `edge-agent check` in-process (`cli.main`, so a thousand
cases take seconds, not a thousand interpreter starts), bounded by a SIGALRM timer. Whatever the
mutation (types changed, keys dropped, BOMs, GBK bytes, tabs, huge numbers, NaN, duplicate keys, YAML
anchors, alias bombs and recursive aliases, truncation, flipped bytes, CSV cells and columns): no
exception leaves `main` (no traceback), no case hangs, the exit status is 0 or 1, and every line on
stderr is `file:line: field: reason` (or `file: reason` for what concerns the whole file).

`pytest -m slow tests/test_config_fuzz.py` runs 10,000 cases with another seed.
"""
from __future__ import annotations

import contextlib
import copy
import datetime
import io
import random
import re
import signal
from pathlib import Path

import pytest
import yaml

from edge_agent.cli import main
from edge_agent.pointtable import render_template

ROOT = Path(__file__).resolve().parents[1]
CASE_SECONDS = 5          # one case is a few ms; a hang is anything near this
FILE_LEVEL = ("file not found", "the file is empty", "the file is UTF-16", "not a readable CSV table",
              "the site file must be a mapping")


def base_site() -> str:
    text = (ROOT / "config" / "example-site.yaml").read_text(encoding="utf-8")
    text = text.replace("/var/lib/edge-agent/", "state/")
    return text.replace("    # larger tables live in a CSV (same columns as below):\n", "    points_file: pts.csv\n", 1)


def base_table() -> str:
    rows = render_template("0001", 4).splitlines()
    rows = [rows[0]] + [("P" + r[1:]).replace("hr:", "hr:1", 1) for r in rows[1:]]  # clear of the inline points
    return "\n".join(rows) + "\n"


ODD_VALUES = [None, True, False, 0, -1, 1e308, -1e308, 10**400, float("nan"), float("inf"), "", " ", "\t",
              "x" * 5000, "示例", "1e999", "-0", "0x10", "NaN", "hr:99999999", "1s", "-5m", [], {}, [1, "a"],
              {"a": 1}, "0001", "2000-01-01", "99999999999999999999", b"\xd6\xd0", {1, 2},
              datetime.date(2000, 1, 1), datetime.datetime(2000, 1, 1, 0, 0), [[[[[]]]]], -(2**63)]


def _paths(node, path=()):
    yield path
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, path + (i,))


def _mutate_data(rng: random.Random, data):
    data = copy.deepcopy(data)
    for _ in range(rng.randint(1, 3)):
        paths = [p for p in _paths(data) if p]
        path = rng.choice(paths)
        parent = data
        for part in path[:-1]:
            parent = parent[part]
        op = rng.random()
        if op < 0.3 and isinstance(parent, dict):
            del parent[path[-1]]
        elif op < 0.35 and isinstance(parent, dict):
            parent[rng.choice([1, None, True, 1.5, "", "id", "points", "driver"])] = parent.pop(path[-1])
        elif op < 0.4 and isinstance(parent, list) and len(parent) > 1:
            parent.append(copy.deepcopy(parent[path[-1]]))      # a duplicated device or point
        else:
            parent[path[-1]] = copy.deepcopy(rng.choice(ODD_VALUES))
    return data


def _dump(data) -> str:
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False, width=10_000)


BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8))


def _mutate_text(rng: random.Random, text: str) -> str:
    lines = text.split("\n")
    op = rng.randrange(12)
    i = rng.randrange(len(lines))
    if op == 0:
        lines.insert(i, "\ufeff" + lines.pop(i))
    elif op == 1:
        return "\ufeff" + text
    elif op == 2:
        lines[i] = lines[i].replace("  ", "\t", 1)
    elif op == 3 and lines[i].strip() and not lines[i].lstrip().startswith("-"):
        lines.insert(i, lines[i])                               # the same key twice
    elif op == 4:
        return text + "\n" + BOMB
    elif op == 5:
        return text.replace("site:\n", "site: &s\n", 1) + "\nother: *s\nloop: &l [*l]\n"
    elif op == 6:
        return text[:rng.randrange(len(text))]
    elif op == 7:
        lines[i] = re.sub(r"(\d+(\.\d+)?)", rng.choice(["1e400", ".nan", "-.inf", "99999999999999999999",
                                                          "0b1", "1_000"]), lines[i], count=1)
    elif op == 8 and rng.random() < 0.3:
        lines.insert(i, "  <<: *nothing" if rng.random() < 0.5 else "? [complex, key]\n: value")
    elif op == 8:
        lines[i] += " &x" if ":" in lines[i] else ""
        lines.insert(rng.randrange(len(lines)), "dup: *x")
    elif op == 9:
        lines[i] = lines[i] + rng.choice([" {", " [", " '", ' "', ": :", " !!python/object:os.system", " *nope"])
    elif op == 10 and rng.random() < 0.5:
        lines[i] += rng.choice([" !!binary aGVsbG8=", " !!set {a, b}", " !!timestamp 2001-12-14", " !!float",
                                " !!str", " !!map {}", " !!omap [a: 1]", " ? [a]", " <<: {a: 1}"])
    elif op == 10:
        lines[i] = " " + lines[i]
    else:
        lines[i] = lines[i].replace(":", "", 1)
    return "\n".join(lines)


def _mutate_table(rng: random.Random, table: str) -> str:
    rows = [r.split(",") for r in table.rstrip("\n").split("\n")]
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(7)
        r = rng.randrange(len(rows))
        c = rng.randrange(max(1, min(len(rows[0]), len(rows[r]))))
        if not rows[0] or not rows[r]:
            rows[r] = ["x"]
        elif op == 0 and r > 0:
            rows[r][c] = str(rng.choice(ODD_VALUES)).replace(",", ";").replace("\n", " ")
        elif op == 1:
            for row in rows:
                if c < len(row):
                    del row[c]
        elif op == 2:
            rows[r].append("extra")
        elif op == 3:
            rows.insert(r + 1, list(rows[max(r, 1)]) if len(rows) > 1 else ["x"])
        elif op == 4:
            rows[r][c] = '"' + rows[r][c]
        elif op == 5 and r > 0:
            rows[r] = rows[r][:c]
        else:
            rows[0][c] = rows[0][c].upper()
    return "\n".join(",".join(row) for row in rows) + "\n"


def _encode(rng: random.Random, text: str) -> bytes:
    op = rng.random()
    if op < 0.06:
        return text.encode("gbk", errors="replace")
    if op < 0.09:
        raw = bytearray(text.encode("utf-8"))
        raw[rng.randrange(len(raw))] = rng.randrange(128, 256)
        return bytes(raw)
    if op < 0.11:
        return text.encode("utf-16")
    if op < 0.14:
        return b"\xef\xbb\xbf" + text.encode("utf-8")
    return text.encode("utf-8")


def make_case(rng: random.Random, site_data, site_text: str, table: str) -> tuple[bytes, bytes]:
    kind = rng.random()
    if kind < 0.4:
        site = _dump(_mutate_data(rng, site_data))
    elif kind < 0.75:
        site = _mutate_text(rng, site_text)
    else:
        site = site_text
    if kind >= 0.6:
        table = _mutate_table(rng, table)
    return _encode(rng, site), _encode(rng, table)


class Hang(BaseException):
    pass


def _alarm(signum, frame):
    raise Hang()


LINE = re.compile(r"^(?P<file>[^:]+?)(?::(?P<line>\d+))?: (?P<rest>.+)$")


def run_case(tmp: Path, site: bytes, table: bytes) -> tuple[int, str, str]:
    (tmp / "site.yaml").write_bytes(site)
    (tmp / "pts.csv").write_bytes(table)
    out, err = io.StringIO(), io.StringIO()
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(CASE_SECONDS)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["check", "-c", str(tmp / "site.yaml")])
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    return code, out.getvalue(), err.getvalue()


def fuzz(tmp_path: Path, seed: int, cases: int) -> dict[str, int]:
    rng = random.Random(seed)
    site_text, table = base_site(), base_table()
    site_data = yaml.safe_load(site_text)
    # the unmutated pair is valid: every refusal below is the mutation's doing
    code, _, err = run_case(tmp_path, site_text.encode(), table.encode())
    assert code == 0, err
    tally = {"ok": 0, "refused": 0}
    for n in range(cases):
        site, tbl = make_case(rng, site_data, site_text, table)
        try:
            code, out, err = run_case(tmp_path, site, tbl)
        except Hang:
            pytest.fail(f"case {n} (seed {seed}) ran over {CASE_SECONDS} s; site file:\n{site[:2000]!r}")
        except BaseException as exc:       # what would be a traceback on the command line
            raise AssertionError(f"case {n} (seed {seed}) raised; site file:\n{site[:3000]!r}\n"
                                 f"table:\n{tbl[:1000]!r}") from exc
        assert code in (0, 1), (n, code, err)
        assert "Traceback" not in out + err, (n, err)
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert (code == 0) == (not lines), (n, code, err)
        for ln in lines:
            m = LINE.match(ln)
            assert m is not None, (n, ln)
            assert Path(m["file"]).name in ("site.yaml", "pts.csv") or m["file"].endswith(".yaml"), (n, ln)
            if m["line"] is None:
                assert any(m["rest"].startswith(t) or t in m["rest"] for t in FILE_LEVEL), (n, ln)
        tally["ok" if code == 0 else "refused"] += 1
    return tally


def test_a_thousand_mutated_site_files_and_tables_never_give_a_traceback(tmp_path):
    tally = fuzz(tmp_path, seed=20, cases=1000)
    # the mutations reach past the parser: most are refused, some still pass
    assert tally["refused"] > 500 and tally["ok"] > 20, tally


@pytest.mark.slow
def test_ten_thousand_mutations(tmp_path):
    fuzz(tmp_path, seed=2020, cases=10_000)
