"""Loading a compiled module's source as plain Python, under a private name (the pure twins)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).parent


def load_source(name: str, filename: str):
    """The module `filename` of this folder executed from its .py source as `edge_agent.filtering.<name>`,
    never the compiled build; loaded once."""
    full = f"edge_agent.filtering.{name}"
    mod = sys.modules.get(full)
    if mod is None:
        spec = importlib.util.spec_from_file_location(full, HERE / filename)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[full] = mod
        spec.loader.exec_module(mod)
    return mod


def pure_ladder():
    """The graded-warning pass as plain Python (what the uncompiled kernel uses)."""
    return load_source("_pure_ladder", "ladder.py")
