"""Reading a configuration file's text: UTF-8 only, and one clear line when it is not.

`read_config_text(path, where, field)` returns the text of a site file, point
table, profile or sensor table, or raises `ConfigError` with one problem:
`file:line: field: reason`.  A file in another encoding (GBK, as Chinese
Windows editors and spreadsheet programs save by default) is refused, never
guessed: a guess that is wrong puts mojibake into the mine's names in every
record the regulator receives, and nothing would say so.  The line names where
the first non-UTF-8 byte is, whether the file reads as GBK, and what to do.

A byte-order mark at the start (Notepad, "CSV UTF-8") is accepted; one
anywhere else (two files pasted together), a NUL byte (a UTF-16 file) and
tabs where YAML wants spaces are refused with the line they are on.
"""
from __future__ import annotations

from pathlib import Path

from edge_agent.errors import ConfigError, Problem
from edge_agent.i18n import _

BOM = "\ufeff"


def _save_as() -> str:
    return _("save it as UTF-8 (Notepad: Save as, Encoding UTF-8; a spreadsheet: CSV UTF-8) and run check again")


def _line_col(data: bytes, pos: int) -> tuple[int, int]:
    line_start = data.rfind(b"\n", 0, pos) + 1
    return data.count(b"\n", 0, pos) + 1, pos - line_start + 1


def encoding_problem(data: bytes, where: str, field: str = "") -> Problem | None:
    """None when `data` is UTF-8 text a loader can take; else the one problem to print."""
    head = data[:512]
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or (len(head) > 1 and head.count(0) * 3 >= len(head)):
        return Problem(where, None, field, _("the file is UTF-16 (it has NUL bytes); {what}").format(what=_save_as()))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, col = _line_col(data, exc.start)
        try:
            data.decode("gb18030")
            looks = _("the file looks saved as GBK (GB18030), as Chinese Windows editors do")
        except UnicodeDecodeError:
            looks = _("the file is in some other encoding")
        return Problem(where, line, field, _("not UTF-8: byte 0x{byte:02x} at column {col}; {looks}; {what}").format(
            byte=data[exc.start], col=col, looks=looks, what=_save_as()))
    body = text[1:] if text.startswith(BOM) else text
    if BOM in body:
        pos = len(text) - len(body) + body.index(BOM)
        line = text.count("\n", 0, pos) + 1
        return Problem(where, line, field, _("a byte-order mark (U+FEFF) in the middle of the file, as when two "
                                             "files are pasted together; delete it (or retype the line)"))
    if "\x00" in body:
        line = body.count("\n", 0, body.index("\x00")) + 1
        return Problem(where, line, field, _("a NUL byte; the file is damaged or not text: {what}").format(
            what=_save_as()))
    return None


def read_config_text(path: Path, where: str, field: str = "", *, missing: str = "file not found") -> str:
    """The file's text (a leading BOM removed), or ConfigError with one line."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError([Problem(where, None, field, missing)]) from None
    except IsADirectoryError:
        raise ConfigError([Problem(where, None, field, "is a folder, not a file")]) from None
    except OSError as exc:
        raise ConfigError([Problem(where, None, field, f"cannot read: {exc.strerror}")]) from None
    problem = encoding_problem(data, where, field)
    if problem is not None:
        raise ConfigError([problem])
    text = data.decode("utf-8")
    return text[1:] if text.startswith(BOM) else text
