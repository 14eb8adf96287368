"""Process-wide memory settings of `edge-agent run` (nothing here runs in a library call or a test).

- `map_large_allocations()`: with glibc, every allocation above 1 MiB gets its own mapping, returned to
  the system when it is freed.  By default glibc raises that threshold to the size of each large block
  freed (up to 32 MiB): after the start-up definitions (a 23 MB CDDY at 50,000 points) the snapshots'
  bodies and envelopes then come from the heap, whose freed space stays resident.  Measured on the
  50,000-point bench site: RSS while running 260 -> 225 MB.  A no-op without glibc.
- `settle()`: once started, the objects that live as long as the agent (the site, its catalogue, the
  kernel's and the encoder's tables) are moved out of the cyclic collector's generations
  (`gc.freeze`): no collection walks them again (a full one walks every one of them: ~0.1 s at 50,000
  points).  `unsettle()` before a reload lets the configuration it replaces be collected.
"""
from __future__ import annotations

import gc

M_MMAP_THRESHOLD = -3          # glibc's mallopt parameter
LARGE = 1 << 20


def map_large_allocations(threshold: int = LARGE) -> bool:
    """Fix glibc's mmap threshold (see the module docstring); False where there is no mallopt."""
    try:
        import ctypes
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, ImportError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return bool(mallopt(M_MMAP_THRESHOLD, threshold))


def settle() -> None:
    gc.freeze()


def unsettle() -> None:
    gc.unfreeze()
