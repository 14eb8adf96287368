"""The compiled CDSS loop (edge_agent/profile/cdss.py) and its pure-Python twin give identical bodies.

Random templates (points not sent, 0 to 22 decimals, float / integer / whole-number
points, any order and subset of the value, status and time slots, `down_value: empty`
or not, a not-polled bit) and random state arrays (NaN, infinities, -0.0, ties at .5,
values too large for their decimals, below 1e-4, more than 15 digits; statuses 0..255;
times NaN, 0, negative, shared or not) go through the compiled module, the uncompiled
module's `encode` (the reference loop) and its `_fast` run as plain Python; every
body must be the same bytes.  The encoder on a real profile is checked too.
"""
from __future__ import annotations

import math
import random
import time
from array import array
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import edge_agent.profile.cdss as built
from edge_agent.profile.cdss import Templates, load_pure
from edge_agent.profile.timefmt import TimeText

NOT_BUILT = "compiled CDSS loop not built (run: python setup.py build_ext --inplace)"
T0 = 1_700_000_000.25
POW = [10.0 ** d for d in range(23)]
SPECIAL = [math.nan, math.inf, -math.inf, 0.0, -0.0, 0.5, 1.5, 2.5, -2.5, 0.125, 1e-4, 1e-5, 9.5e-5, 1e15,
           1e16, -1e16, 2.0 ** 53, 123456789.123456789, 0.1 + 0.2, 99999999999999.99, 5e-324, 1.7976931348623157e308]


@pytest.fixture(scope="module")
def twins():
    if not built.COMPILED:
        pytest.skip(NOT_BUILT)
    so = Path(built.__file__)
    source = so.with_name("cdss.py")
    if so.stat().st_mtime < source.stat().st_mtime:
        pytest.fail(f"{so.name} is older than cdss.py: rebuild it (python setup.py build_ext --inplace)")
    return built, load_pure()


def templates(rnd: random.Random, n: int, order: tuple, empty_down: bool, not_polled: int, highest: bool):
    parts, pows, modes, ipows, decs = [], [], [], [], []
    for i in range(n):
        d = rnd.choice([0, 0, 1, 2, 2, 2, 3, 4, 5, 6, 9, 15, 17, 19, 22, -1])
        integral = rnd.random() < 0.3
        p = POW[d] if d > 0 else 1.0
        pows.append(p)
        modes.append(1 if d <= 0 else 2 if integral else 0)
        ipows.append(int(p))
        decs.append(d)
        if rnd.random() < 0.1:
            parts.append(None)
        else:
            head = b'{"p%d":"%s"' % (i, b"x" * rnd.randint(0, 40))
            keys = [b',"f%d":' % k for k in range(len(order))]
            parts.append((head + keys[0], *keys[1:], b"}") if keys else (head + b"}",))
    table = list(range(256)) if not highest else [0] + [1 << (m.bit_length() - 1) for m in range(1, 256)]
    text = [b"%d" % s for s in table]
    return Templates(parts, pows, modes, ipows, decs, text, table, not_polled, empty_down, order)


def value(rnd: random.Random, d: int) -> float:
    r = rnd.random()
    if r < 0.15:
        return rnd.choice(SPECIAL)
    if r < 0.3:                     # exact ties and near ties at the point's decimals
        p = POW[d] if d > 0 else 1.0
        return (rnd.randint(-10**6, 10**6) + 0.5) / p
    if r < 0.45:
        return rnd.choice([-1, 1]) * 10 ** rnd.uniform(-12, 20)
    if r < 0.55:
        return float(rnd.randint(-10**9, 10**9))
    return rnd.uniform(-5, 120)


def case(seed: int):
    rnd = random.Random(seed)
    n = rnd.randint(1, 60)
    order = rnd.choice([(0, 1, 2), (0, 1, 2), (2, 0, 1), (1, 2, 0), (0, 2), (1,), (), (2, 1, 0)])
    tpl = templates(rnd, n, order, rnd.random() < 0.5, rnd.choice([0, 4, 32, 64, 256]), rnd.random() < 0.3)
    decs = [rnd.choice([0, 2, 5]) for _ in range(n)]
    values = array("d", [value(rnd, d) for d in decs])
    statuses = array("B", [rnd.choice([0, 0, 0, 1, 3, 16, 17, 128, 255]) for _ in range(n)])
    shared = rnd.choice([T0, T0 + 0.9, math.nan, 0.0])
    times = array("d", [shared if rnd.random() < 0.7 else rnd.choice([T0 - 3.5, math.nan, 0.0, -1.0, T0 + 17.2])
                        for _ in range(n)])
    k = rnd.randint(0, 2 * n)
    indices = array("i", [rnd.randrange(n) for _ in range(k)])
    return tpl, indices, values, statuses, times


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1))
def test_twins_same_bytes(twins, seed):
    fast, pure = twins
    tpl, indices, values, statuses, times = case(seed)
    text = TimeText("%Y-%m-%d %H:%M:%S", None)
    want = pure.encode(tpl, indices, values, statuses, times, T0 + 1, text)
    assert fast.encode(tpl, indices, values, statuses, times, T0 + 1, text) == want
    assert pure._fast(tpl, indices, values, statuses, times, T0 + 1, text) == want
    if want != b"[]":
        orjson.loads(want)          # and it is JSON


def test_every_number_form(twins):
    """Each decimals count against values across the whole range, one point per value."""
    fast, pure = twins
    rnd = random.Random(7)
    text = TimeText("%Y-%m-%d %H:%M:%S", None)
    for d in range(-1, 23):
        for mode in (0, 2) if d > 0 else (1,):
            vals = [rnd.choice(SPECIAL) if rnd.random() < 0.1 else rnd.choice([-1, 1]) * 10 ** rnd.uniform(-8, 17)
                    for _ in range(3000)]
            vals += [(k + 0.5) / (POW[d] if d > 0 else 1.0) for k in range(-50, 50)]
            vals += [float(k) for k in range(-20, 20)]
            n = len(vals)
            p = POW[d] if d > 0 else 1.0
            tpl = Templates([(b'{"v":', b',"s":', b',"t":', b"}")] * n, [p] * n, [mode] * n, [int(p)] * n, [d] * n,
                            [b"%d" % s for s in range(256)], list(range(256)), 0, False, (0, 1, 2))
            args = (array("i", range(n)), array("d", vals), array("B", bytes(n)), array("d", [T0] * n), T0, text)
            assert fast.encode(tpl, *args) == pure.encode(tpl, *args), (d, mode)


def test_lists_and_ranges_take_the_same_path_result(twins):
    """Callers may pass lists and ranges (tests, the receiver): converted for the compiled loop, or
    left to the reference loop when they do not convert (a status above 255)."""
    fast, pure = twins
    tpl, _, values, statuses, times = case(11)
    n = len(tpl.parts)
    text = TimeText("%Y-%m-%d %H:%M:%S", None)
    for idx, st_ in ((range(n), list(statuses)), (list(range(n)), [300] * n), (range(n), statuses)):
        want = pure.encode(tpl, idx, list(values), st_, list(times), T0, text)
        assert fast.encode(tpl, idx, list(values), st_, list(times), T0, text) == want


def test_the_compiled_build_keeps_the_parts_only_in_its_blob(twins):
    """Compiled, Templates.parts reads each point's parts back from the blob: the same tuples (or None)."""
    fast, pure = twins
    for order in ((0, 1, 2), (2, 0, 1), (1,), ()):
        keys = [b',"f%d":' % k for k in range(len(order))]
        parts = [None if i % 7 == 3 else (b'{"p%d"' % i + keys[0], *keys[1:], b"}") if keys else (b'{"p%d"}' % i,)
                 for i in range(40)]
        args = ([1.0] * 40, [1] * 40, [1] * 40, [0] * 40, [b"0"] * 256, list(range(256)), 0, False, order)
        for module in (fast, pure):
            tpl = module.Templates(list(parts), *args)
            assert len(tpl.parts) == 40 and [tpl.parts[i] for i in range(40)] == parts
        assert type(fast.Templates(list(parts), *args).parts) is not list or not fast.COMPILED


def test_encoder_on_a_profile(twins, tmp_path, monkeypatch):
    """The encoder of a real site (the default profile) gives the reference's bytes from the compiled loop."""
    import edge_agent.profile.encode as encode_mod
    from edge_agent.config import load_site
    from edge_agent.points import Catalog
    from edge_agent.profile.encode import Encoder

    fast, pure = twins
    pts = [{"id": f"P{i}", "sensor": ["0001", "0004", "0003", "1004"][i % 4],
            "address": f"hr:{i}" if i % 4 != 3 else f"co:{i}", "location": f"测点{i}"} for i in range(40)]
    site_file = tmp_path / "site.yaml"
    site_file.write_text(orjson.dumps({"site": {"mine_code": "140211001234", "mine_name": "m", "gateway": "gw"},
                                       "devices": [{"name": "d0", "driver": "modbus-tcp", "host": "127.0.0.1",
                                                    "port": 502, "points": pts}]}).decode(), encoding="utf-8")
    site = load_site(site_file)
    catalog = Catalog(site, site.loaded_profile)
    enc = Encoder(site, catalog, site.loaded_profile)
    rnd = random.Random(3)
    n = len(catalog)
    now = time.time()
    values = array("d", [value(rnd, 2) for _ in range(n)])
    statuses = array("B", [rnd.choice([0, 1, 16, 128]) for _ in range(n)])
    times = array("d", [now - rnd.choice([0, 0, 1.5]) for _ in range(n)])
    got = enc.cdss(range(n), values, statuses, times, now)
    monkeypatch.setattr(encode_mod, "_cdss", pure)
    assert enc.cdss(range(n), values, statuses, times, now) == got
