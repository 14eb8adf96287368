"""Messages in the reader's language: English source text, Chinese from a gettext catalog.

`_("devices: {n} online")` returns the text in the process language, chosen
from the environment as gettext does (`LANGUAGE`, `LC_ALL`, `LC_MESSAGES`,
`LANG`; any `zh*` gives Simplified Chinese, anything else English).
`zh(msg)` is the Chinese text whatever the environment (the console shows
Chinese first, with English beside it).  Placeholders are `str.format` names,
filled in after translation.

The catalog ships as the text file `locale/zh_CN.po` inside the package and is
compiled in memory on first use into a stdlib `gettext.GNUTranslations`, so a
plain `pip install .` needs no build step.  `python -m edge_agent.i18n`
lists the messages the source uses that the catalog lacks (and the reverse);
`tests/test_i18n.py` fails on either.
"""
from __future__ import annotations

import ast
import functools
import gettext
import io
import os
import struct
import sys
import unicodedata
from importlib import resources
from pathlib import Path

LANGUAGES = ("en", "zh_CN")
CATALOG = "zh_CN.po"


def language(environ=None) -> str:
    """'zh_CN' or 'en' from the locale variables, in gettext's order of precedence."""
    env = os.environ if environ is None else environ
    for var in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        value = env.get(var)
        if value:
            first = value.split(":")[0].lower()
            return "zh_CN" if first.startswith("zh") else "en"
    return "en"


def _unquote(text: str) -> str:
    return ast.literal_eval(text) if text.startswith('"') else ""


def parse_po(text: str) -> dict[str, str]:
    """msgid -> msgstr of a .po file (no plurals or contexts: this project uses neither)."""
    out: dict[str, str] = {}
    msgid = msgstr = None
    current = None
    for raw in text.splitlines() + [""]:
        line = raw.strip()
        if line.startswith("msgid "):
            if msgid is not None and msgstr is not None:
                out[msgid] = msgstr
            msgid, msgstr, current = _unquote(line[6:].strip()), None, "id"
        elif line.startswith("msgstr "):
            msgstr, current = _unquote(line[7:].strip()), "str"
        elif line.startswith('"'):
            if current == "id":
                msgid = (msgid or "") + _unquote(line)
            elif current == "str":
                msgstr = (msgstr or "") + _unquote(line)
        elif not line or line.startswith("#"):
            current = None if not line else current
    if msgid is not None and msgstr is not None:
        out[msgid] = msgstr
    return out


def compile_mo(catalog: dict[str, str]) -> bytes:
    """The GNU .mo bytes for a catalog (the format `gettext.GNUTranslations` reads)."""
    items = sorted((k.encode(), v.encode()) for k, v in catalog.items())
    ids = b"".join(k + b"\0" for k, _ in items)
    strs = b"".join(v + b"\0" for _, v in items)
    n = len(items)
    start = 7 * 4 + 16 * n
    offsets, pos_id, pos_str = [], 0, 0
    for k, v in items:
        offsets.append(((len(k), start + pos_id), (len(v), start + len(ids) + pos_str)))
        pos_id += len(k) + 1
        pos_str += len(v) + 1
    out = struct.pack("<7I", 0x950412DE, 0, n, 7 * 4, 7 * 4 + 8 * n, 0, 0)
    out += b"".join(struct.pack("<2I", *o[0]) for o in offsets)
    out += b"".join(struct.pack("<2I", *o[1]) for o in offsets)
    return out + ids + strs


def catalog_text() -> str:
    return (resources.files("edge_agent") / "locale" / CATALOG).read_text(encoding="utf-8")


@functools.cache
def _zh_catalog() -> dict[str, str]:
    return {k: v for k, v in parse_po(catalog_text()).items() if k and v}


@functools.cache
def translations(lang: str) -> gettext.NullTranslations:
    if lang != "zh_CN":
        return gettext.NullTranslations()
    header = {"": "Content-Type: text/plain; charset=UTF-8\nLanguage: zh_CN\n"}   # tells gettext: UTF-8
    return gettext.GNUTranslations(io.BytesIO(compile_mo({**_zh_catalog(), **header})))


@functools.cache
def _process() -> gettext.NullTranslations:
    return translations(language())


def _(message: str) -> str:
    """`message` in the process language."""
    return _process().gettext(message)


def N_(message: str) -> str:
    """Mark `message` for the catalog without translating it here (tables translated later)."""
    return message


def zh(message: str) -> str:
    """`message` in Chinese ('' when the catalog has no translation)."""
    return _zh_catalog().get(message, "")


def width(text: str) -> int:
    """Terminal columns `text` takes: Chinese (wide) characters take two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def pad(text: str, columns: int) -> str:
    """Left-align `text` in `columns` terminal columns."""
    return text + " " * max(0, columns - width(text))


def reset() -> None:
    """Forget the chosen language (tests that change LANG in-process)."""
    _process.cache_clear()


# ------------------------------------------------------------------ maintenance

def source_messages(root: Path | None = None) -> dict[str, str]:
    """Every literal passed to `_()`, `T()` or `N_()` in the package's source: message -> 'file:line'."""
    root = root or Path(__file__).parent
    found: dict[str, str] = {}
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("_", "T", "N_") and node.args \
                    and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                found.setdefault(node.args[0].value, f"{path.relative_to(root.parent)}:{node.lineno}")
    return found


def catalog_problems() -> list[str]:
    """Messages the source uses that the catalog lacks or leaves empty, and catalog entries no source uses."""
    used = source_messages()
    cat = {k: v for k, v in parse_po(catalog_text()).items() if k}
    out = [f"{where}: {msg!r}: not translated in locale/{CATALOG}" for msg, where in used.items()
           if not cat.get(msg)]
    out += [f"locale/{CATALOG}: {msg!r}: no longer used in the source; remove it" for msg in cat if msg not in used]
    return out


if __name__ == "__main__":
    problems = catalog_problems()
    print("\n".join(problems) or f"locale/{CATALOG}: complete")
    sys.exit(1 if problems else 0)
