"""The CDSS hot loop: the kernel's arrays + per-point byte templates -> one message body.

One Cython pure-Python-mode source, like the filtering kernel: `setup.py build_ext`
compiles it into an extension beside it, which Python's import prefers; without that
build (or with `EDGE_AGENT_PURE_PYTHON=1`) the same file runs as plain Python.
`load_pure()` always returns the uncompiled twin, so tests compare the two.

    tpl = Templates(parts, pows, modes, ipows, decimals, status_text, status_map, not_polled, empty_down, order)
    body = encode(tpl, indices, values, statuses, times, now, times_text)

`encode` is `Encoder.cdss` (edge_agent/profile/encode.py says what the records hold).
Uncompiled it runs `_reference`, the per-record loop of byte templates that defines the
output.  Compiled, given the kernel's arrays (indices array('i'), values and times
array('d'), statuses array('B')), it runs `_fast`: the same records written straight
into one buffer, numbers formatted in C; any value the C formatting does not cover
exactly (non-finite or too large for its decimals, below 1e-4, more than 15 digits,
more than 18 decimals) is formatted by the reference's own code.  Other inputs (lists)
take `_reference` either way.
"""
from array import array

try:
    import cython
except ImportError:  # an install without Cython runs this file as plain Python
    from edge_agent.filtering import _cython_shim as cython

import orjson

COMPILED = cython.compiled
_EXACT = 2.0 ** 53
_DIGITS15 = 1e15          # below this a value's decimal digits are its shortest round-trip form
_IPOW_MAX = 10 ** 18      # 10**decimals that fits a signed 64-bit integer
NULL = b"null"


class Templates:
    """What `encode` needs of one encoder, per point (global index) and per profile.

    `parts[i]`: the record's constant bytes around its slots (None: the point is not
    sent); `pows[i]` 10**decimals (1.0 for <= 0), `modes[i]` 0 float, 1 integer (0
    decimals), 2 whole-number point with decimals, `ipows[i]` int(pows[i]),
    `decimals[i]`; `status_text[s]` the bytes of status s (0..255) as sent, `status_map`
    the numbers behind them; `not_polled` the status bit of a point never sampled;
    `empty_down`: null value while the device is down (status bit 16); `order`: the
    slots (0 value, 1 status, 2 time) in the profile's field order."""

    def __init__(self, parts, pows, modes, ipows, decimals, status_text, status_map, not_polled: int,
                 empty_down: bool, order: tuple):
        self.parts = parts
        self.pows, self.modes, self.ipows = pows, modes, ipows
        self.status_text = status_text
        self.not_polled = not_polled
        self.empty_down = bool(empty_down)
        self.order = tuple(order)
        self.usual = self.order == (0, 1, 2)
        # the compiled loop's view of the same: every point's parts in one blob, with bounds
        nparts = len(self.order) + 1
        blob = bytearray()
        bounds = array("q")
        for p in parts:
            if p is None:
                bounds.extend([-1] * (nparts + 1))
                continue
            bounds.append(len(blob))
            for b in p:
                blob += b
                bounds.append(len(blob))
        self.blob = blob if blob else bytearray(1)
        self.bounds = bounds if len(bounds) else array("q", [-1])
        self.nparts = nparts
        self.fpows = array("d", pows) if pows else array("d", [1.0])
        self.fmodes = array("b", modes) if modes else array("b", [0])
        self.fipows = array("q", [q if 0 < q <= _IPOW_MAX else 0 for q in ipows]) if ipows else array("q", [0])
        self.fdec = array("b", [min(max(int(d), 0), 100) for d in decimals]) if decimals else array("b", [0])
        self.fstatus = array("q", status_map) if status_map else array("q", [0])
        self.forder = array("b", self.order) if self.order else array("b", [0])
        # the longest a record can get beyond its constant parts: a value, a status, separators
        self.slack = 64
        self.every = array("i", range(len(parts)))      # a snapshot's indices
        if cython.compiled:     # the blob holds the same bytes again (11 MB at 50,000 points): keep only it
            self.parts = _Parts(self.blob, self.bounds, nparts)


class _Parts:
    """`Templates.parts` read back from the blob and its bounds (`_reference` takes the few inputs the
    compiled loop does not): a point's parts, or None, as the list had them."""
    __slots__ = ("blob", "bounds", "n")

    def __init__(self, blob, bounds, n: int):
        self.blob, self.bounds, self.n = blob, bounds, n

    def __len__(self) -> int:
        return len(self.bounds) // (self.n + 1)

    def __getitem__(self, i: int):
        k = i * (self.n + 1)
        b = self.bounds
        if b[k] < 0:
            return None
        return tuple(bytes(self.blob[b[k + j]:b[k + j + 1]]) for j in range(self.n))


def encode(tpl: Templates, indices, values, statuses, times, now: float, times_text) -> bytes:
    """The CDSS body (a JSON array of records) of these points (see the module docstring)."""
    if cython.compiled:
        args = _arrays(tpl, indices, values, statuses, times)
        if args is not None:
            return _fast(tpl, *args, now, times_text)
    return _reference(tpl, indices, values, statuses, times, now, times_text)


def _arrays(tpl: Templates, indices, values, statuses, times):
    """The inputs as the arrays `_fast` reads (the kernel's already are), or None if they do not
    convert exactly (then `_reference` takes them as they are)."""
    if not all(type(a) in (array, list, tuple, range) for a in (indices, values, statuses, times)):
        return None
    try:
        if type(indices) is not array or indices.typecode != "i":
            indices = tpl.every if indices == range(len(tpl.parts)) else array("i", indices)
        if type(values) is not array or values.typecode != "d":
            values = array("d", values)
        if type(statuses) is not array or statuses.typecode != "B":
            statuses = array("B", statuses)
        if type(times) is not array or times.typecode != "d":
            times = array("d", times)
    except (TypeError, ValueError, OverflowError):
        return None
    return indices, values, statuses, times


def _reference(tpl: Templates, indices, values, statuses, times, now: float, times_text) -> bytes:
    """The definition of the output: one record per sent point, its template's parts around its slots."""
    parts_of, pows, ints, ipows = tpl.parts, tpl.pows, tpl.modes, tpl.ipows
    tjson = times_text.json
    tcache = times_text.json_cache
    dumps = orjson.dumps
    empty_down = tpl.empty_down
    order = tpl.order
    usual = tpl.usual
    now_json = tjson(now)
    status_text = tpl.status_text
    not_polled = tpl.not_polled
    out = []
    append = out.append
    join = b"".join
    last_t, tb = None, now_json
    # the same numbers as Encoder.number(), inlined: this loop runs per point per report.  Each
    # record is joined at once: keeping orjson's outputs alive until one big join costs 10x more
    # (every dumps() then gets a fresh over-allocated buffer)
    for i in indices:
        parts = parts_of[i]
        if parts is None:
            continue
        v = float(values[i])
        st = int(statuses[i])
        if empty_down and st & 16:
            vb = NULL
        else:
            p = pows[i]
            x = v * p
            if -_EXACT < x < _EXACT:
                mode = ints[i]
                if mode == 0:
                    vb = dumps(round(x) / p)
                elif mode == 1:
                    vb = b"%d" % round(x)
                else:
                    k = round(x)
                    vb = b"%d" % (k // ipows[i]) if k % ipows[i] == 0 else dumps(k / p)
            elif v - v == 0.0:       # finite, too large for the decimals: as it is (whole: an int)
                vb = b"%d" % v if ints[i] == 2 and v.is_integer() and -_EXACT < v < _EXACT else dumps(v)
            else:
                vb = NULL
        t = times[i]
        if t != last_t:              # the points of one frame share their time
            last_t = t
            tb = (tcache.get(int(t)) or tjson(t)) if t > 0 else now_json
        if not t > 0:
            st |= not_polled
        sb = status_text[st] if 0 <= st < 256 else b"%d" % st
        if usual:
            append(join((parts[0], vb, parts[1], sb, parts[2], tb, parts[3])))
        else:
            slot = (vb, sb, tb)
            append(join([parts[0], *(b for k, j in enumerate(order) for b in (slot[j], parts[k + 1]))]))
    return b"[" + b",".join(out) + b"]"


def _value_slow(tpl: Templates, i: int, v: float) -> bytes:
    """One value as `_reference` writes it (the cases the compiled loop leaves to it)."""
    p = tpl.pows[i]
    x = v * p
    if -_EXACT < x < _EXACT:
        mode = tpl.modes[i]
        if mode == 0:
            return orjson.dumps(round(x) / p)
        if mode == 1:
            return b"%d" % round(x)
        k = round(x)
        return b"%d" % (k // tpl.ipows[i]) if k % tpl.ipows[i] == 0 else orjson.dumps(k / p)
    if v - v == 0.0:
        return b"%d" % v if tpl.modes[i] == 2 and v.is_integer() and -_EXACT < v < _EXACT else orjson.dumps(v)
    return NULL


@cython.cfunc
@cython.inline
@cython.exceptval(check=False)
def _put(o: cython.uchar[::1], pos: cython.Py_ssize_t, src: cython.uchar[::1], a: cython.Py_ssize_t,
         b: cython.Py_ssize_t) -> cython.Py_ssize_t:
    """src[a:b] at o[pos:]; the position after it."""
    while a < b:
        o[pos] = src[a]
        pos += 1
        a += 1
    return pos


@cython.cfunc
@cython.inline
@cython.exceptval(check=False)
def _ndigits(m: cython.longlong) -> cython.int:
    """Decimal digits of m >= 0."""
    n: cython.int = 1
    while m >= 10:
        m //= 10
        n += 1
    return n


@cython.cfunc
@cython.inline
@cython.exceptval(check=False)
def _put_int(o: cython.uchar[::1], pos: cython.Py_ssize_t, k: cython.longlong) -> cython.Py_ssize_t:
    """k in decimal (|k| < 2**63); the position after it."""
    if k < 0:
        o[pos] = 45           # -
        pos += 1
        k = -k
    n: cython.int = _ndigits(k)
    j: cython.Py_ssize_t = pos + n - 1
    while j >= pos:
        o[j] = 48 + k % 10
        k //= 10
        j -= 1
    return pos + n


@cython.cfunc
@cython.inline
@cython.exceptval(check=False)
def _put_fixed(o: cython.uchar[::1], pos: cython.Py_ssize_t, k: cython.longlong, d: cython.int) -> cython.Py_ssize_t:
    """k / 10**d in its shortest form (Python's repr, at least one decimal); -1 when that form would
    not be plain digits (|k| >= 1e15, or below 1e-4): then the caller formats it the slow way.

    Below 1e15 a number's decimal digits are also its shortest round-trip form: any two decimals
    of at most 15 significant digits are different doubles."""
    neg: cython.bint = k < 0
    m: cython.longlong = -k if neg else k
    if m >= 1000000000000000:
        return -1
    if m == 0:
        o[pos] = 48           # 0.0
        o[pos + 1] = 46
        o[pos + 2] = 48
        return pos + 3
    while d > 0 and m % 10 == 0:
        m //= 10
        d -= 1
    n: cython.int = _ndigits(m)
    if d >= n + 4:            # below 1e-4: Python and orjson may write an exponent
        return -1
    if neg:
        o[pos] = 45
        pos += 1
    j: cython.Py_ssize_t
    end: cython.Py_ssize_t
    if d == 0:                # 12.0
        end = pos + n
        j = end - 1
        while j >= pos:
            o[j] = 48 + m % 10
            m //= 10
            j -= 1
        o[end] = 46
        o[end + 1] = 48
        return end + 2
    if n <= d:                # 0.0042
        o[pos] = 48
        o[pos + 1] = 46
        pos += 2
        end = pos + d
        while pos < end - n:
            o[pos] = 48
            pos += 1
        j = end - 1
        while j >= pos:
            o[j] = 48 + m % 10
            m //= 10
            j -= 1
        return end
    end = pos + n + 1         # 12.34: the digits right to left, the point after d of them
    j = end - 1
    while j > end - 1 - d:
        o[j] = 48 + m % 10
        m //= 10
        j -= 1
    o[j] = 46
    j -= 1
    while j >= pos:
        o[j] = 48 + m % 10
        m //= 10
        j -= 1
    return end


@cython.cfunc
@cython.inline
@cython.exceptval(check=False)
def _round_even(x: cython.double) -> cython.longlong:
    """Python's round(x) for |x| < 2**53: to the nearest integer, ties to even."""
    t: cython.longlong = cython.cast(cython.longlong, x)      # toward zero
    if x < t:
        t -= 1                                              # floor
    d: cython.double = x - t                                # exact below 2**53
    if d > 0.5:
        return t + 1
    if d < 0.5:
        return t
    return t + (t & 1)


def _grow(out: bytearray, need: int) -> bytearray:
    bigger = bytearray(max(2 * len(out), need))
    bigger[:len(out)] = out
    return bigger


def _fast(tpl: Templates, indices, values, statuses, times, now: float, times_text) -> bytes:
    """`_reference`'s output, written into one buffer (compiled; as plain Python it runs too, slowly)."""
    idx: cython.int[::1] = indices
    val: cython.double[::1] = values
    sts: cython.uchar[::1] = statuses
    tim: cython.double[::1] = times
    blob: cython.uchar[::1] = tpl.blob
    bnd: cython.longlong[::1] = tpl.bounds
    pows: cython.double[::1] = tpl.fpows
    modes: cython.schar[::1] = tpl.fmodes
    ipows: cython.longlong[::1] = tpl.fipows
    decs: cython.schar[::1] = tpl.fdec
    smap: cython.longlong[::1] = tpl.fstatus
    order: cython.schar[::1] = tpl.forder
    nparts: cython.Py_ssize_t = tpl.nparts
    stride: cython.Py_ssize_t = nparts + 1
    npoints: cython.Py_ssize_t = len(tpl.parts)
    have: cython.Py_ssize_t = min(npoints, len(val), len(sts), len(tim))
    empty_down: cython.bint = tpl.empty_down
    not_polled: cython.longlong = tpl.not_polled
    slack: cython.Py_ssize_t = tpl.slack
    n: cython.Py_ssize_t = len(idx)
    r: cython.Py_ssize_t
    i: cython.Py_ssize_t
    b0: cython.Py_ssize_t
    k: cython.Py_ssize_t
    pos: cython.Py_ssize_t
    at: cython.Py_ssize_t
    room: cython.Py_ssize_t
    st: cython.longlong
    kk: cython.longlong
    q: cython.longlong
    v: cython.double
    x: cython.double
    t: cython.double
    last_t: cython.double = 0.0
    have_t: cython.bint = False
    tlen: cython.Py_ssize_t

    now_json = times_text.json(now)
    tjson = times_text.json
    tcache = times_text.json_cache
    tb = bytearray(now_json)
    tview: cython.uchar[::1] = tb
    tlen = len(now_json)
    size: cython.Py_ssize_t = 2
    for r in range(n):                        # the constant parts of every record, and room for the rest
        i = idx[r]
        if 0 <= i < npoints and bnd[i * stride] >= 0:
            size += bnd[i * stride + nparts] - bnd[i * stride] + slack + tlen
    out = bytearray(size)
    o: cython.uchar[::1] = out
    o[0] = 91                                 # [
    pos = 1
    for r in range(n):
        i = idx[r]
        if i < 0 or i >= have:
            raise IndexError(f"point index {i} out of range")
        b0 = i * stride
        if bnd[b0] < 0:                       # not sent
            continue
        v = val[i]
        st = sts[i]
        t = tim[i]
        if not have_t or t != last_t:         # the points of one frame share their time
            have_t, last_t = True, t
            tt = (tcache.get(int(t)) or tjson(t)) if t > 0 else now_json
            if len(tt) > len(tb):
                tb = bytearray(len(tt))
                tview = tb
            tb[:len(tt)] = tt
            tlen = len(tt)
        if not t > 0:
            st |= not_polled
        room = pos + (bnd[b0 + nparts] - bnd[b0]) + slack + tlen
        if room > len(o):
            out = _grow(out, room)
            o = out
        if pos > 1:
            o[pos] = 44                       # ,
            pos += 1
        pos = _put(o, pos, blob, bnd[b0], bnd[b0 + 1])
        for k in range(nparts - 1):
            if order[k] == 0:                 # the value
                at = -2                       # -2 null, -1 the slow way
                if not (empty_down and sts[i] & 16):
                    x = v * pows[i]
                    if -_EXACT < x < _EXACT:
                        kk = _round_even(x)
                        if modes[i] == 1:
                            at = _put_int(o, pos, kk)
                        elif modes[i] == 2:
                            q = ipows[i]
                            if q == 0:
                                at = -1
                            elif kk % q == 0:
                                at = _put_int(o, pos, kk // q)
                            else:
                                at = _put_fixed(o, pos, kk, decs[i])
                        else:
                            at = _put_fixed(o, pos, kk, decs[i])
                    elif v - v == 0.0:        # finite, too large for the decimals
                        at = -1
                if at >= 0:
                    pos = at
                elif at == -2:
                    o[pos] = 110              # null
                    o[pos + 1] = 117
                    o[pos + 2] = 108
                    o[pos + 3] = 108
                    pos += 4
                else:
                    vb = _value_slow(tpl, i, v)
                    room = pos + len(vb) + (bnd[b0 + nparts] - bnd[b0]) + slack + tlen
                    if room > len(o):
                        out = _grow(out, room)
                        o = out
                    out[pos:pos + len(vb)] = vb
                    pos += len(vb)
            elif order[k] == 1:               # the status as the profile sends it
                pos = _put_int(o, pos, smap[st] if 0 <= st < 256 else st)
            else:                             # the time
                pos = _put(o, pos, tview, 0, tlen)
            pos = _put(o, pos, blob, bnd[b0 + k + 1], bnd[b0 + k + 2])
    if pos + 1 > len(o):
        out = _grow(out, pos + 1)
        o = out
    o[pos] = 93                               # ]
    return bytes(memoryview(out)[:pos + 1])


def load_pure():
    """This module executed from cdss.py as plain Python (never the compiled build); loaded once."""
    import importlib.util
    import sys
    from pathlib import Path

    name = "edge_agent.profile._pure_cdss"
    mod = sys.modules.get(name)
    if mod is None:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("cdss.py"))
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return mod


def implementation():
    """The module Encoder uses: this one (compiled if built), or the plain-Python twin with
    EDGE_AGENT_PURE_PYTHON=1 in the environment (as for the kernel)."""
    import os

    if os.environ.get("EDGE_AGENT_PURE_PYTHON", "") not in ("", "0"):
        return load_pure()
    import sys
    return sys.modules[__name__]
