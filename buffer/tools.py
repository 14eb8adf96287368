"""Inspection and maintenance of a buffer file: stats, export, purge.

Library calls behind `edge-agent buffer stats|export|purge`; they work on a
file the running agent holds open (WAL readers do not block it, purge waits
briefly for its lock).  They never move, migrate or create a buffer file
(`export_sqlite` creates its own output file, with sqlite-utils).
"""
from __future__ import annotations

import base64
import csv
import io
import sqlite3
import time
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterable, TextIO

import orjson

from edge_agent.buffer import counts, sinks as sink_table
from edge_agent.buffer.schema import ADD_DROPS, stored_priority, transaction
from edge_agent.errors import EdgeAgentError
from edge_agent.units import format_age, parse_duration


def table_stats(db: sqlite3.Connection, now: float | None = None) -> dict:
    """Rows, body bytes and oldest age per type; per-sink backlog; drops stored in the file.

    Reads the running counts (schema 2); a file of an older schema is scanned instead.
    """
    now = time.time() if now is None else now
    try:
        by_type, backlog = counts.read(db)
        oldest = {t: db.execute("SELECT time FROM messages WHERE prio = ? AND type = ? ORDER BY seq LIMIT 1",
                                (stored_priority(t), t)).fetchone() for t in by_type}
        types = {t: (n, b, oldest[t][0] if oldest[t] else now) for t, (n, b) in by_type.items()}
    except sqlite3.OperationalError:     # no counts tables: an older file the agent has not opened yet
        types = {t: (n, b or 0, tm) for t, n, b, tm in db.execute(
            "SELECT type, count(*), sum(length(body)), min(time) FROM messages GROUP BY type ORDER BY type")}
        backlog = {s: db.execute("SELECT count(*) FROM messages WHERE sinks & ?", (bit,)).fetchone()[0]
                   for s, bit in sink_table.read(db).items()}
    by_type = {t: {"rows": n, "bytes": b, "oldest_age": max(0.0, now - tm)} for t, (n, b, tm) in types.items()}
    try:
        drops = {t: n for t, n in db.execute("SELECT type, total FROM drops WHERE total > 0 ORDER BY type")}
    except sqlite3.OperationalError:     # a schema-0 file has no drops table
        drops = {}
    return {
        "rows": sum(v["rows"] for v in by_type.values()),
        "bytes": sum(v["bytes"] for v in by_type.values()),
        "by_type": by_type,
        "oldest_age": max((v["oldest_age"] for v in by_type.values()), default=0.0),
        "backlog": backlog,
        "drops": drops,
    }


def _open(path: str | Path, *, write: bool = False) -> sqlite3.Connection:
    p = Path(path)
    if not p.exists():
        raise EdgeAgentError(f"{p}: no buffer file here (has the agent run with this site file?)")
    try:
        db = sqlite3.connect(f"file:{p}?mode={'rw' if write else 'ro'}", uri=True, isolation_level=None)
        db.execute("PRAGMA busy_timeout=5000")
        db.execute("SELECT count(*) FROM messages").fetchone()
    except sqlite3.DatabaseError as exc:
        raise EdgeAgentError(f"{p}: cannot read the buffer ({exc}); if it is corrupt, the agent moves it "
                             "aside at its next start") from exc
    return db


def stats(path: str | Path) -> dict:
    """`table_stats` of a buffer file, plus its path, size on disk and next seq."""
    db = _open(path)
    try:
        out = {"path": str(path)}
        out.update(table_stats(db))
        row = db.execute("SELECT value FROM meta WHERE key='next_seq'").fetchone()
        top = db.execute("SELECT max(seq) FROM messages").fetchone()[0] or 0
        out["next_seq"] = max(int(row[0]) if row else 1, top + 1)
        out["file_bytes"] = sum(Path(str(path) + s).stat().st_size for s in ("", "-wal")
                                if Path(str(path) + s).exists())
        return out
    finally:
        db.close()


def parse_since(text: str, now: float | None = None) -> float:
    """Epoch seconds from a duration ago (`2h`), a local date/time (`2026-11-29 10:00`) or epoch seconds."""
    now = time.time() if now is None else now
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        raise EdgeAgentError(f"--since {text!r}: write a duration (30m, 2h, 1d) or a local time "
                             "(2026-11-29 10:00)") from None


def _where(since: float | None, types: Iterable[str] | None) -> tuple[str, list]:
    clauses, params = [], []
    if since is not None:
        clauses.append("time >= ?")
        params.append(since)
    types = list(types or [])
    if types:
        # a type without a system (`CDSS`) also names every system's (`aqjk/CDSS`, `sbjk/CDSS`: systems:)
        plain = [t for t in types if "/" not in t]
        clauses.append("(" + " OR ".join([f"type IN ({','.join('?' * len(types))})"]
                                         + ["substr(type, -?) = ?"] * len(plain)) + ")")
        params.extend(types)
        for t in plain:
            params.extend([len(t) + 1, "/" + t])
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def _body(body: bytes) -> tuple[str, object]:
    try:
        return "body", orjson.loads(body)
    except orjson.JSONDecodeError:
        try:
            return "body_text", body.decode("utf-8")
        except UnicodeDecodeError:
            return "body_b64", base64.b64encode(body).decode("ascii")


def _local(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def export(path: str | Path, out: TextIO, *, since: float | None = None, types: Iterable[str] | None = None,
           fmt: str = "jsonl", progress: Callable[[int, int], None] | None = None) -> int:
    """Write matching rows, oldest first, as JSON lines or CSV; return how many.

    JSON lines: {"seq", "type", "time" (local), "epoch", "pending" (sinks still owed), "body"}
    where body is the stored JSON (or body_text / body_b64 if it is not JSON).
    CSV: seq, type, time, epoch, pending, bytes, body (as UTF-8 text).
    """
    if fmt not in ("jsonl", "csv"):
        raise EdgeAgentError(f"--format {fmt!r}: use jsonl or csv")
    db = _open(path)
    try:
        where, params = _where(since, types)
        total = db.execute("SELECT count(*) FROM messages" + where, params).fetchone()[0]
        writer = csv.writer(out, lineterminator="\n") if fmt == "csv" else None
        if writer:
            writer.writerow(["seq", "type", "time", "epoch", "pending", "bytes", "body"])
        done = 0
        table = sink_table.read(db)
        for seq, t, tm, sinks, body in db.execute(
                "SELECT seq, type, time, sinks, body FROM messages" + where + " ORDER BY seq", params):
            if writer:
                writer.writerow([seq, t, _local(tm), f"{tm:.3f}", "+".join(sink_table.names(sinks, table)), len(body),
                                 body.decode("utf-8", "replace")])
            else:
                key, value = _body(body)
                out.write(orjson.dumps({"seq": seq, "type": t, "time": _local(tm), "epoch": tm,
                                        "pending": sink_table.names(sinks, table), key: value}).decode())
                out.write("\n")
            done += 1
            if progress and (done % 1000 == 0 or done == total):
                progress(done, total)
        return done
    finally:
        db.close()


def export_sqlite(path: str | Path, dest: str | Path, *, since: float | None = None,
                  types: Iterable[str] | None = None) -> int:
    """Write matching rows into table `messages` of the SQLite file `dest` (made by sqlite-utils; a seq
    already there is replaced), columns as the CSV export; return how many.  For a vendor or `sqlite3`."""
    import sqlite_utils

    db = _open(path)
    try:
        where, params = _where(since, types)
        table = sink_table.read(db)
        done = 0

        def rows():
            nonlocal done
            for seq, t, tm, sinks, body in db.execute(
                    "SELECT seq, type, time, sinks, body FROM messages" + where + " ORDER BY seq", params):
                done += 1
                yield {"seq": seq, "type": t, "time": _local(tm), "epoch": tm,
                       "pending": "+".join(sink_table.names(sinks, table)), "bytes": len(body),
                       "body": body.decode("utf-8", "replace")}

        out = sqlite_utils.Database(dest)
        try:
            out["messages"].insert_all(rows(), pk="seq", replace=True, batch_size=1000)
        finally:
            out.close()
        return done
    finally:
        db.close()


def count(path: str | Path, types: Iterable[str]) -> dict[str, tuple[int, int]]:
    """{type: (rows, body bytes)} that `purge(path, types)` would delete."""
    db = _open(path)
    try:
        where, params = _where(None, types)
        return {t: (n, b or 0) for t, n, b in db.execute(
            "SELECT type, count(*), sum(length(body)) FROM messages" + where + " GROUP BY type", params)}
    finally:
        db.close()


def purge(path: str | Path, types: Iterable[str]) -> dict[str, tuple[int, int]]:
    """Delete every row of these types (one transaction); counted as drops.  Returns {type: (rows, bytes)}."""
    types = list(types)
    if not types:
        raise EdgeAgentError("purge: name at least one --type (CDSS, TJSJ, YCBJ, ...)")
    db = _open(path, write=True)
    try:
        where, params = _where(None, types)
        try:
            with transaction(db):
                gone = db.execute("DELETE FROM messages" + where + " RETURNING type, sinks, length(body)",
                                  params).fetchall()
                done: dict[str, tuple[int, int]] = {}
                for t, _, size in gone:
                    n, b = done.get(t, (0, 0))
                    done[t] = (n + 1, b + size)
                if db.execute("PRAGMA user_version").fetchone()[0] >= 2:
                    counts.add(db, gone, sign=-1)
                db.executemany(ADD_DROPS, [(t, n, b, n) for t, (n, b) in done.items()])
        except sqlite3.OperationalError as exc:
            raise EdgeAgentError(f"{path}: purge failed ({exc}); nothing was deleted") from exc
        return done
    finally:
        db.close()


def format_stats(st: dict) -> str:
    """Human-readable `buffer stats`."""
    buf = io.StringIO()
    w = buf.write
    w(f"buffer      {st['path']}\n")
    w(f"next seq    {st['next_seq']}\n")
    w(f"file        {format_size(st.get('file_bytes', 0))}\n")
    w(f"rows        {st['rows']} ({format_size(st['bytes'])} of records), oldest {format_age(st['oldest_age'])} ago\n")
    for t, v in st["by_type"].items():
        w(f"  {t:<6} {v['rows']:>9} rows {format_size(v['bytes']):>10}   oldest {format_age(v['oldest_age'])} ago\n")
    w("backlog     " + ", ".join(f"{s} {n}" for s, n in st["backlog"].items()) + "\n")
    drops = st.get("drops") or {}
    w("drops       " + (", ".join(f"{t} {n}" for t, n in drops.items()) if drops else "none") + "\n")
    return buf.getvalue()


def format_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"
