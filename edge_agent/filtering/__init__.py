"""The threshold-filtering kernel, compiled when built, plain Python otherwise.

    from edge_agent.filtering import Kernel, COMPILED

`kernel.py` is one Cython pure-Python-mode source.  `setup.py build_ext`
compiles it into an extension next to it, which Python's import then prefers;
without that build (or with `EDGE_AGENT_PURE_PYTHON=1` in the environment) the
same file runs uncompiled.  `load_pure()` always returns the uncompiled twin,
so tests can compare the two in one process.
"""
from __future__ import annotations

import os
from pathlib import Path

from edge_agent.filtering._twins import load_source
from edge_agent.filtering.records import SLOTS, Change, Event, LevelChange, Stat

SOURCE = Path(__file__).with_name("kernel.py")
SOURCES = (SOURCE, Path(__file__).with_name("ladder.py"))    # what setup.py compiles


def load_pure():
    """The kernel module executed from kernel.py as plain Python (never the compiled build); its
    graded-warning pass (ladder.py) is plain Python too."""
    return load_source("_pure_kernel", "kernel.py")


def _load():
    if os.environ.get("EDGE_AGENT_PURE_PYTHON", "") not in ("", "0"):
        return load_pure()
    from edge_agent.filtering import kernel   # the extension if built, else kernel.py itself
    return kernel


_impl = _load()
Kernel = _impl.Kernel
COMPILED: bool = bool(_impl.COMPILED)

__all__ = ["Kernel", "COMPILED", "Event", "Stat", "Change", "LevelChange", "SLOTS", "load_pure"]
