"""OPC UA driver rules that need no server: status mapping, values, timestamps, addresses, config."""
from __future__ import annotations

import math
import time
from array import array
from datetime import datetime, timedelta, timezone

import pytest
from asyncua import ua

from edge_agent.drivers.opcua import OpcUaDevice
from edge_agent.drivers.opcua_session import (config_problems, describe, file_problems,
                                              parse_address, parse_security, show_url)
from edge_agent.drivers.opcua_values import FrameBuilder, quality
from edge_agent.errors import ConfigError
from test_opcua import device, pt

S = ua.StatusCodes


@pytest.mark.parametrize("code,q", [
    (S.Good, 0), (S.UncertainLastUsableValue, 0), (S.UncertainSensorNotAccurate, 0),
    (S.BadSensorFailure, 128), (S.BadOutOfRange, 128), (S.BadNodeIdUnknown, 128), (S.BadDeviceFailure, 128),
    (S.BadNoCommunication, 16), (S.BadCommunicationError, 16), (S.BadNotConnected, 16),
    (S.BadWaitingForInitialData, 16), (S.BadNoCommunication | 0x0400, 16),   # info bits do not matter
])
def test_status_code_to_quality(code, q):
    assert quality(code) == q


def builder(n=6, scale=None, offset=None):
    counters = dict.fromkeys(("bad", "uncertain", "link_down", "empty", "unsupported"), 0)
    return FrameBuilder(3, array("i", range(100, 100 + n)), scale or [1.0] * n, offset or [0.0] * n, counters)


def dv(value=None, code=S.Good, src=None, srv=None, vt=None):
    return ua.DataValue(ua.Variant(value, vt) if value is not None else ua.Variant(),
                        StatusCode=ua.StatusCode(code), SourceTimestamp=src, ServerTimestamp=srv)


def test_values_scale_and_fault_kinds():
    b = builder(scale=[2.0, 1, 1, 1, 1, 1], offset=[0.5, 0, 0, 0, 0, 0])
    b.add(0, dv(1.25))
    b.add(1, dv(True))
    b.add(2, dv("running"))                 # not a number: sensor fault, counted
    b.add(3, dv(float("nan")))              # NaN from the server: sensor fault
    b.add(4, dv(None))                      # Good but no value: nothing from the source
    b.add(5, dv(7, S.UncertainInitialValue, vt=ua.VariantType.Int32))
    f = b.frame()
    assert f.device == 3 and list(f.index) == [100, 101, 102, 103, 104, 105]
    assert list(f.quality) == [0, 0, 128, 128, 16, 0]
    assert f.values[0] == 3.0 and f.values[1] == 1.0 and f.values[5] == 7.0
    assert all(math.isnan(f.values[k]) for k in (2, 3, 4))
    assert b.counters == {"bad": 0, "uncertain": 1, "link_down": 0, "empty": 1, "unsupported": 2}


def test_frame_time_prefers_sane_source_timestamps():
    now, mono = time.time(), time.monotonic()
    utc = lambda t: datetime.fromtimestamp(t, timezone.utc)  # noqa: E731
    b = builder(2)
    b.add(0, dv(1.0, src=utc(now - 0.4), srv=utc(now - 0.1)))
    b.add(1, dv(2.0, src=utc(now - 0.7), srv=utc(now - 0.1)))
    f = b.frame(mono, now)
    assert f.wall == pytest.approx(now - 0.4, abs=1e-3) and f.mono == pytest.approx(mono - 0.4, abs=1e-3)
    b = builder(1)   # a value unchanged for an hour (or a source clock that is off): the server's time
    b.add(0, dv(1.0, src=utc(now - 3600), srv=utc(now - 0.2)))
    assert b.frame(mono, now).wall == pytest.approx(now - 0.2, abs=1e-3)
    b = builder(1)   # ahead of us by more than 2 s: not trusted either
    b.add(0, dv(1.0, src=utc(now + 30)))
    assert b.frame(mono, now).wall == now
    b = builder(1)   # neither is sane (or present): the receive time
    b.add(0, dv(1.0, src=datetime(1601, 1, 1, tzinfo=timezone.utc) + timedelta(0)))
    f = b.frame(mono, now)
    assert (f.wall, f.mono) == (now, mono)


def test_addresses():
    assert parse_address("ns=2;s=Belt1.Speed") == ua.NodeId("Belt1.Speed", 2)
    assert parse_address("ns=2;i=1001") == ua.NodeId(1001, 2)
    assert parse_address("/Objects/2:Belt1/2:Speed") == [ua.QualifiedName("Objects", 0),
                                                          ua.QualifiedName("Belt1", 2), ua.QualifiedName("Speed", 2)]
    nsu = parse_address("nsu=urn:edge-agent:sim;s=Sim.Speed")
    assert isinstance(nsu, ua.ExpandedNodeId) and nsu.NamespaceUri == "urn:edge-agent:sim"
    for bad in ("Belt1.Speed", "ns=x;s=a", "/"):
        with pytest.raises(ValueError, match="browse path|OPC UA address"):
            parse_address(bad)


def test_security_and_config_problems():
    assert parse_security("NONE").policy is None
    s = parse_security("Aes256Sha256RsaPss,Sign")
    assert (s.policy, s.mode) == ("Aes256Sha256RsaPss", "Sign")
    with pytest.raises(ValueError, match="Basic256Sha256,SignAndEncrypt"):
        parse_security("Basic256,Encrypt")
    dev, points = device("opc.tcp://127.0.0.1:1", [pt("A", "Belt1.Speed")], security="Basic256Sha256,Sign",
                         password_file="nowhere.pass", cert_file="missing.pem")
    fields = [f for f, _ in config_problems(dev)]
    assert fields == ["key_file", "username", "points[0].address"]
    assert [f for f, _ in file_problems(dev)] == ["cert_file", "password_file"]
    with pytest.raises(ConfigError) as err:
        OpcUaDevice(0, dev, points, lambda f: None)
    assert "device belt-1: key_file:" in str(err.value) and "opcua-cert" in str(err.value)


def test_describe_and_urls():
    dev, _ = device("opc.tcp://op:pw@10.0.0.5:4840", [], username="op")
    assert show_url(dev.url) == "opc.tcp://10.0.0.5:4840"
    line = describe(ua.UaStatusCodeError(S.BadUserAccessDenied), dev, 4)
    assert "refused user 'op'" in line and "pw" not in line
    assert "no answer within 4s" in describe(TimeoutError(), dev, 4)
