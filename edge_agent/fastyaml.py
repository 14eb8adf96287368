"""A fast reader for the plain block YAML that site files are written in; libyaml for everything else.

`load(text)` returns the data of a document written with block mappings and
sequences, plain and single-line quoted scalars and single-line flow
collections (`[0, 4]`), comments anywhere — what a site engineer writes — or
`None` when the text uses anything else (anchors, tags, block scalars,
multi-line scalars, several documents, tabs, a key twice, a flow collection over several lines...), and then the
caller reads it with PyYAML as before, which also reports any error.

Why: PyYAML builds a node with two marks per scalar and resolves each scalar
in Python; a 10,000-point site inline took ~1.4 s of the start-up.  Here a
line costs a few string operations and each distinct scalar text is resolved
once, by PyYAML's own resolver and constructor, so the values are the ones
PyYAML gives (`0001` is the integer 1, `2027-06-30` a date, `~` None).
tests/test_fastyaml.py compares the two on every YAML file in the repository
and on cases written to fall back.
"""
from __future__ import annotations

import re
from typing import Any

import yaml
from yaml.nodes import ScalarNode

SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)   # libyaml when PyYAML has it


class StrictLoader(SafeLoader):  # type: ignore[misc, valid-type]
    """Safe loading, but a key that appears twice in one mapping is an error (PyYAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for k, _ in node.value:
            key = self.construct_object(k, deep=True)
            if isinstance(key, (list, dict, set)):
                raise yaml.constructor.ConstructorError(None, None, "a key must be a name or a number, not a list "
                                                                    "or a mapping (a stray `?` or brackets)", k.start_mark)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} appears twice", k.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)

# outside this: tabs, CR, NEL, line/paragraph separators, BOM, control characters -> PyYAML decides
_UNUSUAL = re.compile("[^\n\x20-\x7e\xa0-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]|\u2028|\u2029")
_PLAIN_FIRST_BAD = set("[]{}#&*!|>'\"%@`,?:-")
_STR, _MERGE_OR_VALUE = "tag:yaml.org,2002:str", ("tag:yaml.org,2002:merge", "tag:yaml.org,2002:value")


class _Unusual(Exception):
    """The text uses something this reader leaves to PyYAML."""


class _Scalars:
    """Plain scalar text -> its value, by PyYAML's resolver and constructor, each text once."""

    def __init__(self) -> None:
        self._loader = yaml.SafeLoader("")
        self.plain: dict[str, Any] = {}
        self.flow: dict[str, Any] = {}

    def resolve(self, text: str) -> Any:
        try:
            return self.plain[text]
        except KeyError:
            pass
        tag = self._loader.resolve(ScalarNode, text, (True, False))
        if tag in _MERGE_OR_VALUE:
            raise _Unusual(text)
        value = text if tag == _STR else self._loader.construct_object(ScalarNode(tag, text), deep=True)
        if isinstance(value, (list, dict, set, bytes, bytearray)):
            raise _Unusual(text)
        self.plain[text] = value
        return value

    def parsed(self, text: str) -> Any:
        """A flow collection or an escaped double-quoted scalar on one line, read by PyYAML (once per text)."""
        if text not in self.flow:
            try:
                self.flow[text] = yaml.load(text, Loader=StrictLoader)
            except yaml.YAMLError:
                raise _Unusual(text) from None
        return _copy(self.flow[text])


def _copy(v: Any) -> Any:
    if isinstance(v, list):
        return [_copy(x) for x in v]
    if isinstance(v, dict):
        return {k: _copy(x) for k, x in v.items()}
    return v


def load(text: str) -> Any:
    """The document's data, or None: the text needs PyYAML (see the module docstring)."""
    text = text.replace("\r\n", "\n")
    if _UNUSUAL.search(text):
        return None
    try:
        r = _Reader(text)
        if r.line is None:
            return None
        data = r.block(r.line[0])
        if r.line is not None:
            return None
    except (_Unusual, RecursionError):
        return None
    return data


class _Reader:
    """Reads the lines one after another: `line` is the current (indent, body), None past the last;
    the lines are cut from the text ~64 kB at a time as the reader gets to them, so no list of every
    line (two strings and a tuple per line: ~45 MB for a 50,000-point site) is held beside the data."""

    KNOWN = 4096       # `key: scalar` lines remembered (a site repeats `type: float32` on every point)

    def __init__(self, text: str):
        self.text = text
        self.pos = 0
        self.scalars = _Scalars()
        self.known: dict[str, tuple[Any, Any]] = {}
        self.line: tuple[int, str] | None = None
        self.buf: list[tuple[int, str]] = []
        self.k = 0
        self.advance()

    def advance(self) -> None:
        """Move to the next line that is neither blank nor a comment."""
        k = self.k + 1
        if k < len(self.buf):
            self.k = k
            self.line = self.buf[k]
            return
        while self.pos <= len(self.text):
            self._cut()
            if self.buf:
                self.k = 0
                self.line = self.buf[0]
                return
        self.line = None

    def _cut(self, size: int = 1 << 16) -> None:
        """The next ~64 kB of the text as (indent, body) lines, blank lines and comments left out."""
        text, pos = self.text, self.pos
        end = text.find("\n", pos + size)
        if end < 0:
            end = len(text)
        buf = []
        for raw in text[pos:end].split("\n"):
            body = raw.lstrip(" ")
            if not body or body[0] == "#":
                continue
            if body.startswith(("---", "...", "%")) and len(body) == len(raw):
                raise _Unusual(body)
            buf.append((len(raw) - len(body), body.rstrip(" ")))
        self.pos = end + 1
        self.buf = buf
        self.k = 0

    def block(self, indent: int) -> Any:
        return self.sequence(indent) if self._is_item(self.line[1]) else self.mapping(indent)

    @staticmethod
    def _is_item(body: str) -> bool:
        return body == "-" or body.startswith("- ")

    def nested(self, indent: int, seq_same: bool) -> Any:
        """The block value after `key:` or `-` on the line before (at `indent`), or None."""
        if self.line is None:
            return None
        ind, body = self.line
        if ind > indent:
            return self.block(ind)
        if ind == indent and seq_same and self._is_item(body):
            return self.sequence(indent)
        return None

    def sequence(self, indent: int) -> list:
        out: list = []
        while self.line is not None:
            ind, body = self.line
            if ind < indent:
                break
            if ind > indent or not self._is_item(body):
                raise _Unusual(body)
            rest = body[1:].lstrip(" ")
            if not rest or rest[0] == "#":
                self.advance()
                out.append(self.nested(indent, False))
            elif self._is_item(rest):
                raise _Unusual(body)
            elif rest[0] not in "[{" and self._key_split(rest) is not None:
                col = ind + len(body) - len(rest)
                self.line = (col, rest)         # the item's first key opens a mapping at its column
                out.append(self.mapping(col))
            else:
                self.advance()
                out.append(self.value(rest, ind))
        return out

    def mapping(self, indent: int) -> dict:
        out: dict = {}
        known = self.known
        while self.line is not None:
            ind, body = self.line
            if ind < indent:
                break
            if ind > indent:
                raise _Unusual(body)
            hit = known.get(body)
            if hit is not None:               # `type: float32` again: its key and value as the last time
                key, value = hit
                if key in out:
                    raise _Unusual(body)
                self.advance()
                out[key] = value
                continue
            if self._is_item(body):
                raise _Unusual(body)
            split = self._key_split(body)
            if split is None:
                raise _Unusual(body)
            key, rest = split
            if key in out:
                raise _Unusual(body)          # PyYAML's strict loader names the duplicate and its line
            self.advance()
            if not rest or rest[0] == "#":
                out[key] = self.nested(indent, True)
            elif rest[0] in "[{":
                out[key] = self.value(rest, ind)
            else:                             # a scalar: the same line always reads the same
                out[key] = value = self.value(rest, ind)
                if len(known) >= self.KNOWN:
                    known.clear()
                known[body] = (key, value)
        return out

    def _key_split(self, body: str) -> tuple[Any, str] | None:
        """(key, the rest after `: `) for a `key: value` or `key:` line, else None."""
        c = body[0]
        if c in "'\"":
            text, after = self._quoted(body)
            if not after.startswith(":") or (len(after) > 1 and after[1] != " "):
                return None
            return text, after[1:].lstrip(" ")
        at = body.find(": ")
        if at < 0:
            if not body.endswith(":"):
                return None
            at = len(body) - 1
        key = body[:at].rstrip(" ")
        if not key or key[0] in _PLAIN_FIRST_BAD or " #" in key:
            raise _Unusual(body)
        return self.scalars.resolve(key), body[at + 1:].lstrip(" ")

    def value(self, rest: str, indent: int) -> Any:
        c = rest[0]
        if c in "[{":
            return self._flow(rest, indent)
        if c in "'\"":
            text, after = self._quoted(rest)
            if after and not after.startswith("#"):
                raise _Unusual(rest)
            return text
        if c in _PLAIN_FIRST_BAD and not (c == "-" and len(rest) > 1 and rest[1] != " "):
            raise _Unusual(rest)
        cut = rest.find(" #")
        if cut >= 0:
            rest = rest[:cut].rstrip(" ")
        if ": " in rest or rest.endswith(":"):
            raise _Unusual(rest)
        return self.scalars.resolve(rest)

    def _flow(self, text: str, indent: int) -> Any:
        """A flow collection; one that goes on over more-indented lines is read joined (without comments)."""
        while True:
            try:
                return self.scalars.parsed(text)
            except _Unusual:
                if self.line is None or self.line[0] <= indent or "#" in text or "#" in self.line[1]:
                    raise
            text += " " + self.line[1]
            self.advance()

    def _quoted(self, s: str) -> tuple[str, str]:
        """(the quoted scalar's value, what follows it on the line, stripped of leading spaces)."""
        q = s[0]
        if q == "'":
            j = 1
            while True:
                j = s.find("'", j)
                if j < 0:
                    raise _Unusual(s)         # continues on the next line
                if s.startswith("''", j):
                    j += 2
                    continue
                return s[1:j].replace("''", "'"), s[j + 1:].lstrip(" ")
        j = 1
        while j < len(s) and s[j] != '"':
            j += 2 if s[j] == "\\" else 1
        if j >= len(s):
            raise _Unusual(s)
        inner = s[1:j]
        text = self.scalars.parsed(s[:j + 1]) if "\\" in inner else inner
        return text, s[j + 1:].lstrip(" ")
