"""The OPC UA driver's part of the site file: device keys, and the checks that need asyncua.

`OpcUaConfig` is the device block of `driver: opcua`; its points are plain `Point`s (the
server says the type; `type`, `order`, `length` are Modbus keys and refused here).
The URL, security string and point addresses are checked by `problems` (importing
asyncua only then); missing certificate/key/password files are `warnings`.
`SPEC` is the registry entry (see `edge_agent.registry`).
"""
from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from edge_agent.model import Device, Duration, field_error
from edge_agent.registry import LIVE_POINT_FIELDS, DriverSpec


class OpcUaConfig(Device):
    driver: Literal["opcua"]
    url: str | None = None
    mode: Literal["subscribe", "poll"] = "subscribe"
    publishing_interval: Duration | None = None
    security: str = "NONE"
    cert_file: str | None = None
    key_file: str | None = None
    server_cert_file: str | None = None
    username: str | None = None
    password_file: str | None = None

    @model_validator(mode="after")
    def _url(self) -> "OpcUaConfig":
        if not self.url:
            raise ValueError("driver opcua needs `url` (opc.tcp://host:4840)")
        piw = self.poll_in_warning
        if piw is not None and self.mode == "subscribe":
            raise field_error("poll_in_warning", "a subscribe-mode device is sent each change by the server, "
                                                 "it does not poll: use `mode: poll`, or remove poll_in_warning")
        if piw is not None and self.publishing_interval is not None and piw.period > self.publishing_interval:
            raise field_error(("poll_in_warning", "period"),
                              f"{piw.period:g}s is longer than the device's publishing_interval "
                              f"({self.publishing_interval:g}s): give a shorter period")
        return self


def problems(device: OpcUaConfig, site) -> list[tuple[tuple, str]]:
    from edge_agent.drivers.opcua_session import config_problems
    return [(_loc(f), reason) for f, reason in config_problems(device)]


def warnings(device: OpcUaConfig, site) -> list[tuple[tuple, str]]:
    from edge_agent.drivers.opcua_session import file_problems
    return [(_loc(f), reason) for f, reason in file_problems(device, site.base_dir)]


def _loc(field: str) -> tuple:
    """"points[3].address" -> ("points", 3, "address")."""
    out: list = []
    for part in field.replace("]", "").split("."):
        name, _, index = part.partition("[")
        out.append(name)
        if index:
            out.append(int(index))
    return tuple(out)


async def connect(device: OpcUaConfig, points: list, base_dir) -> list[str]:
    from edge_agent.drivers.opcua import check_connect
    return await check_connect(device, points, base_dir=base_dir)


SPEC = DriverSpec(
    names=("opcua",), config=OpcUaConfig, factory="edge_agent.drivers.opcua:OpcUaDevice",
    problems=problems, warnings=warnings, connect=connect,
    # in subscribe mode the deadband is the server's DataChangeFilter: a new one needs a new session
    live_point_fields=LIVE_POINT_FIELDS - {"deadband"},
    secret_fields=("password_file", "key_file"),
    counters={"polls": ("reads", "publishes"), "errors": ("connect_failures", "losses"),
              "timeouts": ("timeouts",)})
