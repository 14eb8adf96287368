"""The threshold-filtering kernel, compiled when built, plain Python otherwise.

    from edge_agent.filtering import Kernel, COMPILED

`kernel.py` is one Cython pure-Python-mode source.  `setup.py build_ext`
compiles it into an extension next to it, which Python's import then prefers;
without that build (or with `EDGE_AGENT_PURE_PYTHON=1` in the environment) the
same file runs uncompiled.  `load_pure()` always returns the uncompiled twin,
so tests can compare the two in one process.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from edge_agent.filtering.records import SLOTS, Change, Event, Stat

SOURCE = Path(__file__).with_name("kernel.py")
_PURE_NAME = "edge_agent.filtering._pure_kernel"


def load_pure():
    """The kernel module executed from kernel.py as plain Python (never the compiled build)."""
    mod = sys.modules.get(_PURE_NAME)
    if mod is None:
        spec = importlib.util.spec_from_file_location(_PURE_NAME, SOURCE)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[_PURE_NAME] = mod
        spec.loader.exec_module(mod)
    return mod


def _load():
    if os.environ.get("EDGE_AGENT_PURE_PYTHON", "") not in ("", "0"):
        return load_pure()
    from edge_agent.filtering import kernel   # the extension if built, else kernel.py itself
    return kernel


_impl = _load()
Kernel = _impl.Kernel
COMPILED: bool = bool(_impl.COMPILED)

__all__ = ["Kernel", "COMPILED", "Event", "Stat", "Change", "SLOTS", "load_pure"]
