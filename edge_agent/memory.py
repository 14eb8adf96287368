"""Giving freed memory back to the system: `trim()`.

CPython frees its small objects into its own arenas (an arena goes back when it is empty);
everything larger (a site file's text, a dict's or list's table) goes through the C library's
malloc, whose heap keeps freed blocks below its top for later use.  After reading a
50,000-point site ~13 MB of such free blocks were still counted in the RSS: glibc's
`malloc_trim(0)` hands them back (~1 ms).  Elsewhere (musl, macOS) `trim()` does nothing.
"""
from __future__ import annotations

import sys

_trim: object = None     # None: not looked up yet; False: none here


def trim() -> None:
    """Return the C heap's free memory to the system, where the C library can (glibc)."""
    global _trim
    if _trim is None:
        _trim = False
        if sys.platform.startswith("linux"):
            try:
                import ctypes
                _trim = ctypes.CDLL(None).malloc_trim
                _trim.argtypes = [ctypes.c_size_t]
            except (OSError, AttributeError):
                _trim = False
    if _trim:
        _trim(0)
