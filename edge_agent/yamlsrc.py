"""Reading a YAML source with line numbers, and turning validation errors into `Problem`s.

`read_yaml_with_lines(text, where)` returns the data (libyaml when available;
a key that appears twice is an error) and a `Lines` map from a path such as
("devices", 0, "points", 3, "id") to its line, computed only when a problem
asks for one.  `validation_problems` turns a pydantic ValidationError into
`file:line: field: reason` problems with devices and points named, not numbered.
"""
from __future__ import annotations

import re
import zlib
from typing import Any, Callable

import yaml
from pydantic import ValidationError

from edge_agent import fastyaml
from edge_agent.fastyaml import SafeLoader as _FastLoader
from edge_agent.fastyaml import StrictLoader as _StrictLoader
from edge_agent.errors import ConfigError, Problem
from edge_agent.i18n import _
from edge_agent.units import shown

_KEYS = yaml.SafeLoader("")   # constructs scalar keys while walking nodes for their lines


class Lines:
    """Line numbers by path (("devices", 0, "points", 3, "id") -> 42), composed only when asked.

    A valid file never needs them, so a 10,000-point site does not pay for a
    second, Python-level walk of its YAML; problems ask for their line.  Until then the text is
    kept compressed (a 50,000-point site: 6.5 MB -> 0.5 MB, 15 ms).
    """

    def __init__(self, text: str):
        self._packed = zlib.compress(text.encode("utf-8"), 1)
        self._lines: dict[tuple, int] | None = None
        self._extra: dict[tuple, int] = {}

    @property
    def text(self) -> str:
        return zlib.decompress(self._packed).decode("utf-8")

    def _all(self) -> dict[tuple, int]:
        if self._lines is None:
            self._lines = {}
            node = yaml.compose(self.text, Loader=_FastLoader)
            if node is not None:
                self._walk(node, ())
        return self._lines

    def _walk(self, node: yaml.Node, path: tuple) -> None:
        assert self._lines is not None
        self._lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                key = _KEYS.construct_object(k, deep=True)
                self._walk(v, path + (key,))
                self._lines[path + (key,)] = k.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                self._walk(v, path + (i,))

    def __contains__(self, path: tuple) -> bool:
        return path in self._extra or path in self._all()

    def __getitem__(self, path: tuple) -> int:
        return self._extra[path] if path in self._extra else self._all()[path]

    def __setitem__(self, path: tuple, line: int) -> None:
        self._extra[path] = line

    def get(self, path: tuple, default: int | None = None) -> int | None:
        return self[path] if path in self else default


def read_yaml_with_lines(text: str, where: str) -> tuple[Any, Lines]:
    """The YAML data, and its line numbers (lazily)."""
    data = fastyaml.load(text)          # plain block YAML, read fast; None: PyYAML reads (and judges) it
    if data is not None:
        return data, Lines(text)
    try:
        data = yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        reason = getattr(exc, "problem", None) or str(exc)
        line = None if mark is None else mark.line + 1
        if isinstance(exc, yaml.constructor.ConstructorError):
            raise ConfigError([Problem(where, line, "", str(reason))]) from None
        tab = _tab_near(text, exc)
        if tab is not None:
            raise ConfigError([Problem(where, tab, "", _("a tab character; YAML indents with spaces only: "
                                                         "replace the tabs on this line with spaces"))]) from None
        raise ConfigError([Problem(where, line, "", f"not valid YAML: {reason}")]) from None
    if data is None:
        raise ConfigError([Problem(where, None, "", "the file is empty")])
    if "*" in text:                    # aliases: refuse a bomb or a loop before anything walks the data
        reason = _alias_problem(data)
        if reason is not None:
            alias = re.search(r"(?m)^.*?(?<![\w*])\*[^\s,\]}*]", text)
            line = text.count("\n", 0, alias.start()) + 1 if alias else None
            raise ConfigError([Problem(where, line, "", reason)])
    return data, Lines(text)


MAX_VALUES = 2_000_000     # a 10,000-point site file holds about 200,000


def _alias_problem(data: Any) -> str | None:
    """Why the data's aliases cannot be used (a loop, or more values than any site has), or None.

    Linear in the distinct values: each list or mapping is sized once, aliases add their size."""
    sizes: dict[int, int] = {}
    entered: set[int] = set()
    stack: list[tuple[Any, bool]] = [(data, False)]
    while stack:
        node, done = stack.pop()
        children = list(node.values()) if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        key = id(node)
        if done:
            sizes[key] = min(MAX_VALUES + 1, 1 + sum(sizes.get(id(c), 1) for c in children))
            entered.discard(key)
            continue
        if key in sizes:
            continue
        if key in entered:
            return _("an alias refers to a value that contains it (a loop); write the value out instead")
        entered.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in children)
    if sizes.get(id(data), 1) > MAX_VALUES:
        return _("its anchors and aliases (&name, *name) expand to more than {n} values; "
                 "write the values out instead").format(n=f"{MAX_VALUES:,}")
    return None


def _tab_near(text: str, exc: yaml.YAMLError) -> int | None:
    """The line of the tab that broke the parse (at the error's mark, or in the indent of its line or
    the line before), or None when the error is not about a tab."""
    lines = text.splitlines()
    for mark in (getattr(exc, "problem_mark", None), getattr(exc, "context_mark", None)):
        if mark is None:
            continue
        for n in (mark.line, mark.line - 1):
            if 0 <= n < len(lines):
                ln = lines[n]
                indent = ln[:len(ln) - len(ln.lstrip(" \t"))]
                if "\t" in indent or (n == mark.line and ln[mark.column:mark.column + 1] == "\t"):
                    return n + 1
    return None


def line_for(loc: tuple, lines: dict[tuple, int]) -> int | None:
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return None


def pretty_loc(loc: tuple, data: Any) -> str:
    """devices[0].points[3].alarm -> devices[substation-1].points[T1].alarm: names beat numbers."""
    out, node = "", data
    for part in loc:
        if isinstance(part, int) and isinstance(node, list) and part < len(node):
            item = node[part]
            label = item.get("name") or item.get("id") if isinstance(item, dict) else None
            out += f"[{label}]" if label is not None else f"[{part}]"
            node = item
        elif isinstance(part, str):
            out += ("." if out else "") + part
            node = node.get(part) if isinstance(node, dict) else None
        else:
            out += f"[{part}]"
            node = None
    return out


def reason_of(err: dict) -> str:
    typ = err.get("type", "")
    msg = err.get("msg", "")
    if typ == "extra_forbidden":
        return "unknown key; check its spelling against the site-file reference in the README"
    if typ == "missing":
        return "missing; this key is required"
    if typ == "literal_error":
        return msg.replace("Input should be", "must be")
    msg = msg.removeprefix("Value error, ")
    if typ in ("float_parsing", "int_parsing", "float_type", "int_type", "string_type", "bool_parsing",
               "bool_type", "tuple_type", "list_type", "model_type", "dict_type"):
        msg = f"{msg} (got {shown(err.get('input'))})"
    return msg


def validation_problems(exc: ValidationError, where: str, data: Any, lines: dict[tuple, int],
                         prefix: tuple = (), explain: Callable[[dict, tuple], str | None] | None = None
                         ) -> list[Problem]:
    """One Problem per error; `explain(err, loc)` may give a more specific reason than `reason_of`."""
    problems = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and ("[" in p or p.startswith("function-"))))
        full = prefix + loc
        reason = (explain(err, full) if explain is not None else None) or reason_of(err)
        problems.append(Problem(where, line_for(full, lines), pretty_loc(full, data) or "(top level)", reason))
    return problems
