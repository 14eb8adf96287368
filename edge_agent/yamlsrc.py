"""Reading a YAML source with line numbers, and turning validation errors into `Problem`s.

`read_yaml_with_lines(text, where)` returns the data (libyaml when available;
a key that appears twice is an error) and a `Lines` map from a path such as
("devices", 0, "points", 3, "id") to its line, computed only when a problem
asks for one.  `validation_problems` turns a pydantic ValidationError into
`file:line: field: reason` problems with devices and points named, not numbered.
"""
from __future__ import annotations

from typing import Any, Callable

import yaml
from pydantic import ValidationError

from edge_agent import fastyaml
from edge_agent.fastyaml import SafeLoader as _FastLoader
from edge_agent.fastyaml import StrictLoader as _StrictLoader
from edge_agent.errors import ConfigError, Problem

_KEYS = yaml.SafeLoader("")   # constructs scalar keys while walking nodes for their lines


class Lines:
    """Line numbers by path (("devices", 0, "points", 3, "id") -> 42), composed only when asked.

    A valid file never needs them, so a 10,000-point site does not pay for a
    second, Python-level walk of its YAML; problems ask for their line.
    """

    def __init__(self, text: str):
        self.text = text
        self._lines: dict[tuple, int] | None = None
        self._extra: dict[tuple, int] = {}

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
        if isinstance(exc, yaml.constructor.ConstructorError):
            raise ConfigError([Problem(where, None if mark is None else mark.line + 1, "", str(reason))])
        raise ConfigError([Problem(where, None if mark is None else mark.line + 1, "", f"not valid YAML: {reason}")])
    if data is None:
        raise ConfigError([Problem(where, None, "", "the file is empty")])
    return data, Lines(text)


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
        msg = f"{msg} (got {err.get('input')!r})"
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
