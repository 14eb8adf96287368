#!/usr/bin/env python3
"""Rewrite edge_agent/locale/zh_CN.po from the source: every message `_()`, `T()` or `N_()` uses, in
source order, with its place.  Translations already in the file are kept, new messages get an empty
one (`python -m edge_agent.i18n` and tests/test_console_parts.py then name them), unused ones go.

    python tools/update_po.py            # after adding or changing messages; then translate the empty ones
"""
from __future__ import annotations

import json
from pathlib import Path

from edge_agent.i18n import catalog_text, parse_po, source_messages

PO = Path(__file__).resolve().parents[1] / "edge_agent" / "locale" / "zh_CN.po"
HEADER = 'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n"Language: zh_CN\\n"\n'


def write(translations: dict[str, str]) -> int:
    out = [HEADER]
    for msg, where in source_messages().items():
        q = lambda s: json.dumps(s, ensure_ascii=False)  # noqa: E731 (a .po string is a JSON string here)
        out.append(f"#: {where}\nmsgid {q(msg)}\nmsgstr {q(translations.get(msg, ''))}\n")
    PO.write_text("\n".join(out), encoding="utf-8")
    return len(out) - 1


if __name__ == "__main__":
    print(f"{PO}: {write(parse_po(catalog_text()))} messages")
