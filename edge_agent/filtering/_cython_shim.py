"""The few names of Cython's pure-Python mode the kernel uses, for installs without Cython.

When Cython is installed, `kernel.py` imports the real `cython` module (its
`Shadow`) instead; when the kernel is compiled, `import cython` is resolved by
the compiler and this file is never read.  Semantics here: decorators do
nothing, types convert like Python does, `nogil` is an empty context manager.
"""
from __future__ import annotations

import builtins

compiled = False


class _Type:
    """A C type: `double[:]` is itself, calling it converts (`cast`)."""

    def __init__(self, convert):
        self._convert = convert

    def __getitem__(self, _key):
        return self

    def __call__(self, value=None):
        return self._convert(value) if value is not None else self._convert()


double = _Type(float)
int = _Type(builtins.int)  # noqa: A001
longlong = schar = uchar = Py_ssize_t = int
bint = _Type(bool)
const = _Type(lambda value=None: value)   # const[int]: the value as it is


def cast(typ, value):
    return typ(value)


def declare(typ=None, value=None, **_kw):
    return value


def _decorator(func=None, *_a, **_kw):
    return func


cclass = cfunc = ccall = inline = final = _decorator


def exceptval(*_a, **_kw):
    return _decorator


class _NoGil:
    """`with cython.nogil:` and `@cython.nogil` both mean nothing in Python."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def __call__(self, func):
        return func


nogil = gil = _NoGil()
