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

from typing import Literal

from pydantic import field_validator

from edge_agent.errors import EdgeAgentError
from edge_agent.model import Model, Period

Colour = Literal["blue", "yellow", "orange", "red"]
DEFAULT_LISTEN = "127.0.0.1:8080"


class AlarmsCfg(Model):
    deadlines: dict[Colour, Period] = {}
    token_file: str = "alarms.token"
    path: str | None = None
    enabled: bool = True


class ConsoleCfg(Model):
    listen: str = DEFAULT_LISTEN
    enabled: bool = True
    password_file: str | None = None      # the console's login (edge_agent/console); none: read-only
    history: str | None = None            # the console's trend file; default: console-history.bin beside the buffer

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        from edge_agent.metrics import parse_listen
        try:
            parse_listen(v, field="console.listen")
        except EdgeAgentError as exc:
            raise ValueError(str(exc).removeprefix("console.listen: ")) from None
        return v


TEXT = {
    "no_token": "alarms.token_file: {path} not found: `edge-agent alarms` and the local API refuse every "
                "request until it exists; create it: head -c 24 /dev/urandom | base64 > {path} && chmod 600 {path}",
    "exposed": "console.listen: {listen} is reachable from the network; the local API is meant for this "
               "machine (127.0.0.1)",
}


def warnings(site) -> list[str]:
    """`edge-agent check` lines for the alarm book and the web server (missing token, exposed listen)."""
    from edge_agent.metrics import exposure_warning, parse_listen
    from edge_agent.secrets import resolve
    where = site.source or "site file"
    out = []
    if site.alarms.enabled and site.console.enabled:
        path = resolve(site.alarms.token_file, site)
        if not path.exists():
            out.append(f"{where}: " + TEXT["no_token"].format(path=path))
    if site.console.enabled:
        host, _ = parse_listen(site.console.listen, field="console.listen")
        if exposure_warning(host):
            out.append(f"{where}: " + TEXT["exposed"].format(listen=site.console.listen))
    return out
