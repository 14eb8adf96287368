#!/usr/bin/env python3
"""Rewrite edge_agent/locale/zh_CN.po from the source: every message `_()`, `T()` or `N_()` uses, in
source order, with its place; translations already in the file are kept, new ones left empty
(`python -m edge_agent.i18n` then lists them), unused ones dropped.

    python tools/update_po.py            # after adding or changing messages; then translate the empty ones
"""
from __future__ import annotations

import json
from pathlib import Path

from edge_agent.i18n import catalog_text, parse_po, source_messages

PO = Path(__file__).resolve().parents[1] / "edge_agent" / "locale" / "zh_CN.po"
HEADER = 'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n"Language: zh_CN\\n"\n'


def quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def main() -> None:
    have = parse_po(catalog_text())
    out = [HEADER]
    for msg, where in source_messages().items():
        out.append(f"#: {where}\nmsgid {quote(msg)}\nmsgstr {quote(have.get(msg, ''))}\n")
    PO.write_text("\n".join(out), encoding="utf-8")
    print(f"{PO}: {len(out) - 1} messages")


if __name__ == "__main__":
    main()
