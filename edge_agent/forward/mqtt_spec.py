"""The MQTT sink's part of the site file (`forward.mqtt`): its keys and its checks.

`MqttCfg` is the block; `problems` refuses plaintext MQTT to a non-loopback host unless
`allow_plaintext: true`.  `SPEC` is the registry entry (see `edge_agent.registry`).
"""
from __future__ import annotations

import re

from pydantic import Field, field_validator

from edge_agent.model import Duration, SinkConfig
from edge_agent.registry import SinkSpec


class MqttCfg(SinkConfig):
    url: str | list[str]
    username: str | None = None
    password_file: str | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    key_password_file: str | None = None
    topic_prefix: str = "mine"
    client_id: str | None = None
    inflight: int = Field(32, ge=1, le=1024)
    keepalive: Duration = 30.0
    allow_plaintext: bool = False
    return_to_primary: bool = True

    @property
    def urls(self) -> list[str]:
        return [self.url] if isinstance(self.url, str) else list(self.url)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | list[str]) -> str | list[str]:
        for u in [v] if isinstance(v, str) else v:
            if "@" in u:
                # never echo what may be a password
                shown = re.sub(r"//[^@/]*@", "//***@", u)
                raise ValueError(f"{shown!r}: credentials do not belong in the URL; use `username` and "
                                 "`password_file`")
            if not re.fullmatch(r"(mqtts?)://[^/\s:]+(:\d+)?/?", u):
                raise ValueError(f"{u!r} is not an MQTT URL; write mqtt://host:1883 or mqtts://host:8883")
        if isinstance(v, list) and not v:
            raise ValueError("give at least one broker URL")
        return v


def problems(cfg: MqttCfg, site) -> list[tuple[tuple, str]]:
    from edge_agent.forward.tls import Broker, plaintext_problem
    out = []
    for url in cfg.urls:
        problem = plaintext_problem(Broker.parse(url), cfg.allow_plaintext)
        if problem:
            out.append((("url",), problem))
    return out


def make(cfg: MqttCfg, ctx):
    """The sink for the agent: rows -> (topic, payload, retained) through the current pipeline's encoder."""
    from edge_agent.forward.mqtt import MqttSink

    def encode(row):
        enc = ctx.encoder()
        if row.body is None:        # a body above the buffer's BIG: read from the file straight into the payload
            payload = ctx.buffer.framed(row.seq, *enc.envelope_ends(row.seq, row.type, row.time))
        else:
            payload = enc.envelope(row.seq, row.type, row.time, row.body)
        return enc.topic(row.type, cfg.topic_prefix), payload, enc.retained(row.type)

    encode.reads_big_rows = True    # the sink peeks without the bodies above BIG (Buffer.peek)

    return MqttSink(cfg, ctx.site, ctx.buffer, encode, ctx.wake, status_detail=ctx.status_detail, name=ctx.name)


SPEC = SinkSpec(
    kind="mqtt", config=MqttCfg, factory=make, problems=problems, live=True,
    secret_fields=("password_file", "key_password_file", "key_file"),
    counters={"published": ("published",), "acked": ("acked",), "reconnects": ("reconnects",),
              "inflight": ("inflight",)})
