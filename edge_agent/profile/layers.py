"""Reading a profile file and the profiles it `extends:`, merged into one mapping.

    extends: default              # a built-in profile's name, or a path (relative to this file)
    mine_code_pattern: '^[0-9A-HJ-NPQRTUWXY]{18}$'
    files: {name_pattern: '...'}  # mappings merge key by key; lists and values replace

`read_layers(name_or_path, base)` returns the top file's path, the merged data and a
`where(key)` telling which file (and line) gave a top-level or second-level key, so a
problem in an inherited key names the file it came from.  A `sensor_table` is relative
to the file that names it.  Raises ConfigError for a missing, unreadable or invalid file,
or a cycle.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Callable

import yaml

from edge_agent.errors import ConfigError, Problem
from edge_agent.textsrc import read_config_text


def builtin_dir() -> Path:
    return Path(str(resources.files("edge_agent.data"))) / "profiles"


def resolve(name_or_path: str, base: Path | None = None) -> Path:
    """A profile name (`default`, a file in the built-in profiles folder) or a path."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml"):
        if not p.is_absolute() and base is not None:
            p = base / p
        return p
    return builtin_dir() / f"{name_or_path}.yaml"


def _key_lines(text: str) -> dict[tuple, int]:
    """Line numbers of mapping keys down to depth 2 (`files`, `files.name`), for error messages."""
    lines: dict[tuple, int] = {}
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return lines
    if isinstance(root, yaml.MappingNode):
        for k, v in root.value:
            lines[(k.value,)] = k.start_mark.line + 1
            if isinstance(v, yaml.MappingNode):
                for k2, _ in v.value:
                    lines[(k.value, k2.value)] = k2.start_mark.line + 1
    return lines


class _Lines:
    """A file's key lines, composed only when a problem asks (a valid profile never pays for it)."""

    def __init__(self, text: str):
        self.text, self._lines = text, None

    def get(self, key: tuple, default=None):
        if self._lines is None:
            self._lines = _key_lines(self.text)
        return self._lines.get(key, default)


def _read(name_or_path: str, base: Path | None) -> tuple[Path, dict, _Lines]:
    path = resolve(name_or_path, base)
    where = str(path)
    text = read_config_text(path, where, "profile",
                            missing=f"profile {name_or_path!r} not found; built-in profiles are in {builtin_dir()}")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        raise ConfigError([Problem(where, None if line is None else line + 1, "profile", f"not valid YAML: {exc}")])
    if not isinstance(data, dict):
        raise ConfigError([Problem(where, None, "profile", "must be a mapping")])
    if isinstance(data.get("sensor_table"), str) and not Path(data["sensor_table"]).is_absolute():
        data["sensor_table"] = str((path.parent / data["sensor_table"]).resolve())
    return path, data, _Lines(text)


def _merge(below: Any, above: Any) -> Any:
    if isinstance(below, dict) and isinstance(above, dict):
        return {**below, **{k: _merge(below.get(k), v) for k, v in above.items()}}
    return above


def read_layers(name_or_path: str, base: Path | None = None
                ) -> tuple[Path, dict, Callable[[str], tuple[str, int | None]]]:
    """(top file, merged data, where(key) -> (file, line)); see the module docstring."""
    layers: list[tuple[Path, dict, _Lines]] = []
    ref, at = name_or_path, base
    while True:
        path, data, lines = _read(ref, at)
        if any(path.resolve() == p.resolve() for p, _, _ in layers):
            chain = " -> ".join(str(p) for p, _, _ in layers + [(path, None, None)])
            raise ConfigError([Problem(str(layers[0][0]), None, "extends", f"profiles extend each other in a "
                                                                          f"circle: {chain}")])
        layers.append((path, data, lines))
        parent = data.pop("extends", None)
        if parent is None:
            break
        if not isinstance(parent, str):
            raise ConfigError([Problem(str(path), lines.get(("extends",)), "extends",
                                       "name one profile (default) or a profile file (base.yaml)")])
        ref, at = parent, path.parent
    merged: dict = {}
    for _, data, _ in reversed(layers):
        merged = _merge(merged, data)

    def where(key: str) -> tuple[str, int | None]:
        parts = tuple(key.split(".", 1))
        for path, data, lines in layers:          # the most derived file that sets it
            node = data.get(parts[0])
            if node is not None and (len(parts) == 1 or not isinstance(node, dict) or parts[1] in node):
                return str(path), lines.get(parts, lines.get(parts[:1]))
        return str(layers[0][0]), None

    return layers[0][0], merged, where
