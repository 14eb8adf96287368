"""The one exception family for errors a user can cause.

Every such error names the file (and line when known), the field, and what
to do; the CLI prints them one per line and never shows a traceback.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Problem:
    file: str
    line: int | None
    field: str
    reason: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.field}: {self.reason}" if self.field else f"{where}: {self.reason}"


class EdgeAgentError(Exception):
    """Base of errors caused by input or environment, not by bugs."""


class ConfigError(EdgeAgentError):
    """A site file, point table or profile is wrong; `problems` lists each finding."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))
