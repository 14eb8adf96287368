"""`edge-agent buffer stats|export|purge -c SITE.yaml`: thin skins over `edge_agent.buffer.tools`.

`register(subparsers)` adds the `buffer` command; each handler returns an exit
status: 0 done, 1 bad site file or arguments, 2 the buffer file cannot be used,
3 purge not confirmed.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from edge_agent.buffer import tools
from edge_agent.errors import ConfigError, EdgeAgentError


def register(subparsers) -> None:
    b = subparsers.add_parser("buffer", help="inspect, export or purge the store-and-forward buffer")
    sub = b.add_subparsers(dest="buffer_command", required=True, metavar="ACTION")

    s = sub.add_parser("stats", help="rows and bytes per type, oldest age, per-sink backlog, drops")
    s.add_argument("-c", "--config", required=True, metavar="SITE.yaml")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=cmd_stats)

    e = sub.add_parser("export", help="write buffered messages as JSON lines or CSV, oldest first")
    e.add_argument("-c", "--config", required=True, metavar="SITE.yaml")
    e.add_argument("--since", metavar="WHEN", help="a duration ago (30m, 2h) or a local time (2026-11-29 10:00)")
    e.add_argument("--type", action="append", metavar="TYPE", help="only this type (repeatable): CDSS, YCBJ, ...")
    e.add_argument("--format", choices=("jsonl", "csv", "sqlite"), default="jsonl",
                   help="sqlite: a table `messages` in the SQLite file -o names (appended to if it exists)")
    e.add_argument("-o", "--output", metavar="FILE", help="write here instead of standard output")
    e.set_defaults(func=cmd_export)

    p = sub.add_parser("purge", help="delete every buffered message of the given types (counted as drops)")
    p.add_argument("-c", "--config", required=True, metavar="SITE.yaml")
    p.add_argument("--type", action="append", required=True, metavar="TYPE", help="type to delete (repeatable)")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.set_defaults(func=cmd_purge)


def _buffer_path(args) -> Path:
    from edge_agent.config import load_site
    site = load_site(args.config)
    return site.path(site.buffer.path)


def _run(fn, args) -> int:
    try:
        return fn(_buffer_path(args), args)
    except ConfigError as exc:
        for p in exc.problems:
            print(p, file=sys.stderr)
        return 1
    except EdgeAgentError as exc:
        print(exc, file=sys.stderr)
        return 2


def cmd_stats(args) -> int:
    def stats(path: Path, args) -> int:
        st = tools.stats(path)
        print(json.dumps(st, indent=2, ensure_ascii=False) if args.json else tools.format_stats(st), end="\n"
              if args.json else "")
        return 0
    return _run(stats, args)


class _Progress:
    """Progress of a large export on stderr: a redrawn bar on a terminal, a line per 10% otherwise."""

    def __init__(self, stream=sys.stderr, min_rows: int = 5000):
        self.stream, self.min_rows = stream, min_rows
        self.tty = stream.isatty()
        self.last_tenth, self.last_draw = -1, 0.0

    def __call__(self, done: int, total: int) -> None:
        if total < self.min_rows:
            return
        pct = 100.0 * done / total
        if self.tty:
            now = time.monotonic()
            if now - self.last_draw >= 0.2 or done == total:
                self.last_draw = now
                bar = "#" * int(pct // 5) + "-" * (20 - int(pct // 5))
                self.stream.write(f"\rexport [{bar}] {pct:3.0f}% {done}/{total} rows" + ("\n" if done == total else ""))
                self.stream.flush()
        elif int(pct // 10) > self.last_tenth:
            self.last_tenth = int(pct // 10)
            self.stream.write(f"export: {done}/{total} rows ({pct:.0f}%)\n")


def cmd_export(args) -> int:
    def export(path: Path, args) -> int:
        since = tools.parse_since(args.since) if args.since else None
        if args.format == "sqlite":
            if not args.output:
                print("export: --format sqlite writes a file; name it with -o FILE.sqlite", file=sys.stderr)
                return 1
            n = tools.export_sqlite(path, args.output, since=since, types=args.type)
            print(f"export: {n} messages into {args.output} (table messages)", file=sys.stderr)
            return 0
        out = open(args.output, "w", encoding="utf-8", newline="") if args.output else sys.stdout
        try:
            n = tools.export(path, out, since=since, types=args.type, fmt=args.format, progress=_Progress())
        finally:
            if args.output:
                out.close()
        print(f"export: {n} messages", file=sys.stderr)
        return 0
    return _run(export, args)


def _confirm(question: str) -> bool:
    """Ask on stderr, read one line from stdin (a terminal or a pipe); end of input means no."""
    sys.stderr.write(question)
    sys.stderr.flush()
    answer = sys.stdin.readline()
    if not sys.stdin.isatty():
        sys.stderr.write(answer if answer.endswith("\n") else answer + "\n")
    return answer.strip().lower() in ("y", "yes")


def cmd_purge(args) -> int:
    def purge(path: Path, args) -> int:
        found = tools.count(path, args.type)
        rows = sum(n for n, _ in found.values())
        if not rows:
            print(f"purge: no {'/'.join(args.type)} messages in {path}", file=sys.stderr)
            return 0
        what = ", ".join(f"{n} {t} ({b} bytes)" for t, (n, b) in sorted(found.items()))
        if not args.yes and not _confirm(f"Delete {what} from {path}? They will never be delivered. [y/N] "):
            print("purge: nothing deleted (answer y to confirm, or pass --yes)", file=sys.stderr)
            return 3
        done = tools.purge(path, args.type)
        print("purge: deleted " + ", ".join(f"{n} {t}" for t, (n, _) in sorted(done.items())), file=sys.stderr)
        return 0
    return _run(purge, args)


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (the agent's CLI calls `register`)."""
    parser = argparse.ArgumentParser(prog="edge-agent")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)
