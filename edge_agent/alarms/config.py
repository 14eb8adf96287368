"""The site file's `alarms:` and `console:` sections (graded warning, the local web server).

    alarms:
      deadlines: {red: 15m, orange: 30m, yellow: 2h, blue: 24h}   # overrides the profile's
      token_file: alarms.token      # the local API's bearer token (looked up like other secrets)
      path: alarms.sqlite           # the alarm book; default: alarms.sqlite beside the buffer
    console:
      listen: 127.0.0.1:8080        # the agent's web server: local API (and the console pages)
      enabled: true

Frozen models, validated once when the site file is read; errors read
`file:line: field: reason` like the rest of the site file.
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, field_validator

from edge_agent.errors import EdgeAgentError
from edge_agent.units import parse_duration

Colour = Literal["blue", "yellow", "orange", "red"]
Duration = Annotated[float, BeforeValidator(parse_duration)]
DEFAULT_LISTEN = "127.0.0.1:8080"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AlarmsCfg(_Model):
    deadlines: dict[Colour, Duration] = {}
    token_file: str = "alarms.token"
    path: str | None = None
    enabled: bool = True

    @field_validator("deadlines")
    @classmethod
    def _positive(cls, v: dict[str, float]) -> dict[str, float]:
        for colour, seconds in v.items():
            if seconds <= 0:
                raise ValueError(f"{colour}: a time to acknowledge must be longer than 0s")
        return v


class ConsoleCfg(_Model):
    listen: str = DEFAULT_LISTEN
    enabled: bool = True
    password_file: str | None = None      # the console's login (edge_agent/console)

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        from edge_agent.metrics import parse_listen
        try:
            parse_listen(v, field="console.listen")
        except EdgeAgentError as exc:
            raise ValueError(str(exc).removeprefix("console.listen: ")) from None
        return v
