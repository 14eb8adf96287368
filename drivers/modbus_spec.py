"""The Modbus drivers' part of the site file: device keys, point keys, the address grammar.

`ModbusConfig` is the device block of `modbus-tcp`, `modbus-rtu` and `modbus-rtu-tcp`;
`ModbusPoint` adds the decoding keys (`type`, `order`, `length`) to the common point and
checks its address (`hr:100`, `ir:7`, `co:3`, `di:0`, a register bit `hr:100.3`; 0-based)
against its type.  `SPEC` is the registry entry (see `edge_agent.registry`).
"""
from __future__ import annotations

import functools
import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from edge_agent.model import Device, Model, Point, field_error
from edge_agent.registry import DriverSpec

DataType = Literal["int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64", "bool",
                   "string"]
Order = Literal["ABCD", "CDAB", "BADC", "DCBA"]
REGISTER_COUNT = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2, "int64": 4, "uint64": 4,
                  "float64": 4, "bool": 1}
_ADDRESS = re.compile(r"^(hr|ir|co|di):(\d+)(?:\.(\d+))?$")
TCP_DRIVERS = ("modbus-tcp", "modbus-rtu-tcp")
_SERIAL_KEYS = ("serial", "baudrate", "parity", "stopbits", "bytesize")
_NETWORK_KEYS = ("host", "port")


class ModbusAddress(Model):
    area: Literal["hr", "ir", "co", "di"]
    address: int
    bit: int | None = None

    def __str__(self) -> str:
        return f"{self.area}:{self.address}" + ("" if self.bit is None else f".{self.bit}")


@functools.lru_cache(maxsize=65536)      # sites repeat addresses across devices; validation parses each twice
def parse_modbus_address(text: str) -> ModbusAddress:
    m = _ADDRESS.match(text.strip())
    if not m:
        raise ValueError(f"{text!r} is not a Modbus address; write hr:100, ir:7, co:3, di:0 or hr:100.3 "
                         "(0-based)")
    area, addr, bit = m.group(1), int(m.group(2)), m.group(3)
    if addr > 65535:
        raise ValueError(f"{text!r}: address {addr} is above 65535")
    if bit is not None:
        if area not in ("hr", "ir"):
            raise ValueError(f"{text!r}: a bit number only applies to hr/ir registers")
        if int(bit) > 15:
            raise ValueError(f"{text!r}: bit {bit} is above 15")
    return ModbusAddress(area=area, address=addr, bit=None if bit is None else int(bit))


class ModbusPoint(Point):
    type: DataType | None = None       # default: bool for coils/inputs/bits, else uint16
    order: Order = "ABCD"
    length: int | None = Field(None, ge=1, le=125)   # registers, for type string

    @field_validator("address")
    @classmethod
    def _address(cls, v: str) -> str:
        parse_modbus_address(v)
        return v

    @model_validator(mode="after")
    def _type_fits_address(self) -> "ModbusPoint":
        addr, typ = parse_modbus_address(self.address), self.data_type
        if addr.area in ("co", "di") and typ != "bool":
            raise field_error("type", f"{addr.area} addresses hold bits; use type bool (got {typ})", typ)
        if addr.bit is not None and typ != "bool":
            raise field_error("type", f"a register bit ({self.address}) is type bool (got {typ})", typ)
        if typ == "string" and not self.length:
            raise field_error("length", "a string needs `length` (in registers)")
        return self

    @property
    def data_type(self) -> str:
        if self.type is not None:
            return self.type
        if self.address[:3] in ("co:", "di:") or re.search(r":\d+\.\d+$", self.address):
            return "bool"
        return "uint16"


class ModbusConfig(Device):
    driver: Literal["modbus-tcp", "modbus-rtu", "modbus-rtu-tcp"]
    host: str | None = None
    port: int | None = Field(None, ge=1, le=65535)
    unit: int = Field(1, ge=0, le=247)
    max_gap: int = Field(10, ge=0, le=120)
    inflight: int = Field(8, ge=1, le=16)   # modbus-tcp: reads in flight on one connection (1: one at a time)
    serial: str | None = None          # /dev/ttyUSB0 for modbus-rtu
    baudrate: int = 9600
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8
    points: tuple[ModbusPoint, ...] = ()

    @model_validator(mode="after")
    def _transport(self) -> "ModbusConfig":
        given = self.model_fields_set
        if self.driver in TCP_DRIVERS:
            if not self.host:
                raise ValueError(f"driver {self.driver} needs `host`")
            wrong = [k for k in _SERIAL_KEYS if k in given]
            if wrong:
                raise field_error(wrong[0], f"a serial-port setting, not one of driver {self.driver} (it talks "
                                            "to host:port); remove it or use driver modbus-rtu")
        else:
            if not self.serial:
                raise ValueError("driver modbus-rtu needs `serial` (the port, e.g. /dev/ttyUSB0)")
            wrong = [k for k in _NETWORK_KEYS if k in given]
            if wrong:
                raise field_error(wrong[0], "a network setting, not one of driver modbus-rtu (it talks to "
                                            "`serial`); remove it or use driver modbus-rtu-tcp")
        if "inflight" in given and self.driver != "modbus-tcp":
            raise field_error("inflight", f"driver {self.driver} reads a bus one request at a time; only "
                                          "modbus-tcp takes several at once: remove it")
        return self

    @property
    def where(self) -> str:
        return self.serial if self.driver == "modbus-rtu" else f"{self.host}:{self.port or 502}"


def describe(device: ModbusConfig, points: list) -> list[str]:
    """Lines describing how `device` will be read (the read plan), for `check -v`."""
    from edge_agent.drivers.codec import Codec
    from edge_agent.drivers.plan import Plan
    plan = Plan([Codec(p.cfg) for p in points], device.max_gap)
    at_once = f", up to {device.inflight} at once" if device.driver == "modbus-tcp" else ""
    return [f"{len(plan)} requests per poll (unit {device.unit}, max_gap {device.max_gap}{at_once})"] + \
        plan.describe([p.id for p in points])


def make(index: int, device: ModbusConfig, points: list, on_frame, *, base_dir=None):
    """The driver of `device`: modbus-tcp's own protocol (modbus_tcp.py), pymodbus for the RTU framings."""
    if device.driver == "modbus-tcp":
        from edge_agent.drivers.modbus_tcp import ModbusTcpDriver as cls
    else:
        from edge_agent.drivers.modbus import ModbusDriver as cls
    return cls(index, device, points, on_frame, base_dir=base_dir)


SPEC = DriverSpec(
    names=("modbus-tcp", "modbus-rtu", "modbus-rtu-tcp"), config=ModbusConfig,
    factory="edge_agent.drivers.modbus_spec:make", describe=describe,
    counters={"polls": ("polls",), "errors": ("errors", "exceptions", "garbage"), "timeouts": ("timeouts",),
              "skipped": ("skipped",)})
