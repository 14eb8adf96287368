"""Giving freed memory back to the system, and process-wide memory settings of `edge-agent run`.

- `trim()`: CPython frees its small objects into its own arenas (an arena goes back when it is empty);
  everything larger (a site file's text, a dict's or list's table) goes through the C library's
  malloc, whose heap keeps freed blocks below its top for later use.  After reading a 50,000-point
  site ~13 MB of such free blocks were still counted in the RSS: glibc's `malloc_trim(0)` hands them
  back (~1 ms).
- `map_large_allocations()` (`run` only): every allocation above 1 MiB gets its own mapping, returned
  to the system when it is freed.  By default glibc raises that threshold to the size of each large
  block freed (up to 32 MiB): after the start-up definitions (a 23 MB CDDY at 50,000 points) the
  snapshots' bodies and envelopes then came from the heap, whose freed space stays resident.
  Measured on the 50,000-point bench site: RSS while running 260 -> 225 MB.
- `settle()` (`run` only): the objects that live as long as the agent (the site, its catalogue, the
  kernel's and the encoder's tables) are moved out of the cyclic collector's generations
  (`gc.freeze`): no collection walks them again (a full one walks every one of them: ~0.1 s at
  50,000 points).  `unsettle()` before a reload lets the configuration it replaces be collected.

Elsewhere (musl, macOS) `trim()` and `map_large_allocations()` do nothing.
"""
from __future__ import annotations

import gc
import sys

M_MMAP_THRESHOLD = -3          # glibc's mallopt parameter
LARGE = 1 << 20

_libc: object = None     # None: not looked up yet; False: none here


def _c_library():
    global _libc
    if _libc is None:
        _libc = False
        if sys.platform.startswith("linux"):
            try:
                import ctypes
                lib = ctypes.CDLL(None)
                lib.malloc_trim.argtypes = [ctypes.c_size_t]
                lib.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
                _libc = lib
            except (OSError, AttributeError):
                _libc = False
    return _libc


def trim() -> None:
    """Return the C heap's free memory to the system, where the C library can (glibc)."""
    lib = _c_library()
    if lib:
        lib.malloc_trim(0)


def map_large_allocations(threshold: int = LARGE) -> bool:
    """Fix glibc's mmap threshold (see the module docstring); False where there is no mallopt."""
    lib = _c_library()
    return bool(lib and lib.mallopt(M_MMAP_THRESHOLD, threshold))


def settle() -> None:
    gc.freeze()


def unsettle() -> None:
    gc.unfreeze()
