"""A slope system's GNSS motion history on disk, so a restart carries speed and acceleration on.

A reload keeps each station's `Motion` in the system view's memory; a restart would start it empty,
and a station's speed would be missing for half a window (30 min by default) after every restart.
So after each gnssrealtime round the view's histories go to one small JSON file per system beside
the buffer (`buffer.gnss-07.json` for system code 07), written whole or not at all
(`fsutil.replace_file`), and a view reads it once, the first time it needs a station's history.

A history is a few samples per window per station (samples older than two windows are dropped), so
the file stays a few kB.  A file that cannot be read (corrupt, foreign) or written (read-only, disk
full) costs only the history: one log line when it starts failing and one when it works again; the
records are sent either way.  A changed `gnss.window` or `per` starts a station afresh, as a reload does.
"""
from __future__ import annotations

import logging
from pathlib import Path

import orjson

from edge_agent.fsutil import make_dirs, replace_file
from edge_agent.gnssmotion import Motion

log = logging.getLogger("edge_agent.gnss")
LOADED, FAILING = ("gnss-motion", "loaded"), ("gnss-motion", "failing")


def path_of(view) -> Path:
    site = view.pipeline.site
    buf = site.path(site.buffer.path)
    return buf.with_name(f"{buf.stem}.gnss-{view.system.code}.json")


def saved(view) -> dict:
    """The histories on disk for this view's system, read once per view ({} when there is no file)."""
    got = view.memory.get(LOADED)
    if got is None:
        path = path_of(view)
        got = {}
        try:
            doc = orjson.loads(path.read_bytes())
            if not isinstance(doc, dict):
                raise ValueError("not a mapping of stations")
            got = doc
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as exc:
            log.warning("GNSS history %s cannot be read (%s): speed and acceleration start afresh, "
                        "the file is rewritten at the next round", path, exc)
        view.memory[LOADED] = got
    return got


def motion(view, station: str, window: float, per: float) -> Motion:
    """The station's history: from the file after a restart, else a new one."""
    state = saved(view).get(station)
    if state is not None:
        try:
            return Motion.restore(state, window, per)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("GNSS history of station %s in %s is unusable (%s): it starts afresh",
                        station, path_of(view), exc)
    return Motion(window, per)


def save(view) -> None:
    """Write every station's history of this view's system (one file, whole or not at all): those in
    memory, and those read from the file that no round has needed yet."""
    states = dict(saved(view))
    for key, m in view.memory.items():
        if isinstance(m, Motion) and isinstance(key, tuple) and key[0] == "gnss-motion":
            states[key[1]] = m.state()
    path = path_of(view)
    try:
        make_dirs(path.parent)
        replace_file(path, orjson.dumps(states))
    except OSError as exc:
        if not view.memory.get(FAILING):
            log.warning("GNSS history %s cannot be written (%s): a restart would start speed and "
                        "acceleration afresh; the records are sent as before", path, exc.strerror or exc)
        view.memory[FAILING] = True
        return
    if view.memory.pop(FAILING, False):
        log.info("GNSS history %s is written again", path)
