"""The MQTT uplink: drains the buffer to the platform broker(s), QoS 1, at-least-once.

    sink = MqttSink(cfg, site, buffer, encode, wake, status_detail=None)
    async with sink:
        await sink.run()          # until cancelled

What callers may rely on:

- Delivery: up to `cfg.inflight` QoS 1 publishes in flight, issued oldest first; a row is
  acknowledged in the buffer (in batches) only after its PUBACK.  After any reconnect every
  unacknowledged row is sent again from the oldest, so the platform sees every `seq`, in
  order per connection, with duplicates bounded by the window.  A connection on which no PUBACK
  arrives for `stall_timeout` (60 s) while publishes wait counts as lost.
- `counters`: published, acked, inflight, reconnects, errors; `connected`; `broker` (current URL);
  `trouble` (None while connected); `name`: its sink name in the buffer (`mqtt` by default).
- `run()` never raises for broker, network, TLS, login or credential-file errors: it logs one
  line naming the broker and the reason, then retries with backoff (1 s doubling, cap 60 s,
  +-20 % jitter: `edge_agent.backoff`).  A line that repeats unchanged is logged again only every 10 minutes.
- Failover: `cfg.url` may be a list.  A failed or lost broker makes the next attempt go to the
  next URL.  With `return_to_primary`, while on another broker the first one is probed (a real
  MQTT connect) every `primary_probe_every` seconds and used again once it accepts.
- Status: `<prefix>/<mine code>/<gateway>/status` is retained `online` after each connect, with
  a retained `offline` will; `status_detail()` (if given) is published as retained JSON on
  `.../status/detail` after each connect.  Leaving a broker cleanly (shutdown, switch back to
  the primary) finishes in-flight publishes (short deadline) and publishes retained `offline`.
- Plaintext `mqtt://` to a non-loopback host raises `ConfigError` at construction unless
  `allow_plaintext: true` (then a warning is logged once).
- Secrets (password, key passphrase) are read from their files at each connect and appear in
  no log line, exception text, counter or status message.
"""
from __future__ import annotations

import asyncio
import errno
import logging
import math
import time
from typing import Callable

import aiomqtt
import orjson

from edge_agent.backoff import Backoff
from edge_agent.errors import ConfigError, EdgeAgentError, Problem
from edge_agent.forward.tls import Broker, explain, plaintext_problem, tls_context
from edge_agent.secrets import read_secret

log = logging.getLogger("edge_agent.forward.mqtt")

REPEAT_LOG_EVERY = 600.0     # an unchanged failure line is logged again after this long
TLS_ALERT_GRACE = 0.5        # seconds a failed TLS connect waits for the alert that explains it
ACK_EVERY = 0.25            # seconds acknowledged seqs may wait to be written to the buffer together
SYNC_GAP = 0.1              # s: at most one WAL fsync per this long before rows are handed out (durability
                            # normal): one per commit was ~25 % of the agent's busy time at 10,000 points/s


BIG_PACKET = 64 * 1024      # a queued packet above this is written from a memoryview (_slice_without_copies)


def _slice_without_copies(client: aiomqtt.Client) -> None:
    """paho writes a queued packet as `packet[pos:]` at each socket write: for its bytearray every slice
    copies what is left, so a 23 MB CDDY (the start-up definitions of 50,000 points) cost a 23 MB copy per
    write and ~100 MB of copying in all.  Its packets above BIG_PACKET are queued as memoryviews, whose
    slices copy nothing (paho only slices and sends them).  Left alone where paho has no such queue."""
    paho = getattr(client, "_client", None)
    queue = getattr(paho, "_packet_queue", None)
    if queue is None or getattr(queue, "sliced", False):
        return

    def queued(command, packet, mid, qos, info=None):
        if len(packet) > BIG_PACKET and isinstance(packet, bytearray):
            packet = memoryview(packet)
        return queue(command, packet, mid, qos, info)

    queued.sliced = True
    paho._packet_queue = queued


class _PahoLog:
    """Logger handed to aiomqtt/paho: their warnings and errors (e.g. the TLS alert that is the
    only trace of a refused client certificate under TLS 1.3) are folded into our one line
    instead of being printed; debug output goes to our debug logger."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.last: str | None = None
        self.failed = asyncio.Event()
        self._debug = logging.getLogger("edge_agent.forward.mqtt.client")

    def log(self, level: int, msg: str, *args) -> None:
        if level >= logging.WARNING:
            text = msg % args if args else msg
            if "pending publish calls" in text:
                return
            self.last = text
            self.loop.call_soon_threadsafe(self.failed.set)  # paho may call from the connect thread
        elif self._debug.isEnabledFor(level):
            self._debug.log(level, msg, *args)

    def debug(self, msg, *a): self.log(logging.DEBUG, msg, *a)       # noqa: E704
    def info(self, msg, *a): self.log(logging.INFO, msg, *a)         # noqa: E704
    def warning(self, msg, *a): self.log(logging.WARNING, msg, *a)   # noqa: E704
    def error(self, msg, *a): self.log(logging.ERROR, msg, *a)       # noqa: E704
    def exception(self, msg, *a, **k): self.log(logging.ERROR, msg, *a)  # noqa: E704


class _StaleFdFilter(logging.Filter):
    """aiomqtt schedules `add_writer(fd)` from paho's connect thread; when the broker drops the
    connection at once (a refused client certificate) paho may close the socket before that callback
    runs, and asyncio then logs a traceback for a dead file descriptor.  The failure itself is
    reported by the sink's one line, so exactly that record is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.msg if isinstance(record.msg, str) else ""
        if not msg.startswith("Exception in callback") or not record.exc_info:
            return True
        exc = record.exc_info[1]
        text = repr(record.args) + msg + str(getattr(record, "handle", ""))
        stale = (isinstance(exc, OSError) and exc.errno == errno.EBADF) or (
            isinstance(exc, ValueError) and "file descriptor" in str(exc))
        return not (stale and ("add_writer" in text or "add_reader" in text))


logging.getLogger("asyncio").addFilter(_StaleFdFilter())


class _Leave(Exception):
    """End a healthy session on purpose (the primary broker is back)."""


class MqttSink:
    def __init__(self, cfg, site, buffer, encode: Callable, wake: asyncio.Event,
                 status_detail: Callable[[], dict] | None = None, *, backoff_base: float = 1.0,
                 backoff_cap: float = 60.0, connect_timeout: float = 10.0, stall_timeout: float = 60.0,
                 shutdown_grace: float = 2.0, primary_probe_every: float = 30.0, name: str = "mqtt"):
        self.name = name                       # its sink name in the buffer
        self.cfg, self.site, self.buffer, self.encode, self.wake = cfg, site, buffer, encode, wake
        self.status_detail = status_detail
        self.brokers = [Broker.parse(u) for u in cfg.urls]
        for b in self.brokers:
            problem = plaintext_problem(b, cfg.allow_plaintext)
            if problem:
                raise ConfigError([Problem(site.source or "site file", None, f"{cfg.field}.url", problem)])
            if not b.tls and not b.loopback:
                log.warning("mqtt: %s is plaintext to a non-loopback host (allow_plaintext: true); credentials "
                            "and data cross the network unencrypted", b)
        self.backoff_base, self.backoff_cap = backoff_base, backoff_cap
        self.connect_timeout, self.stall_timeout = connect_timeout, stall_timeout
        self.shutdown_grace, self.primary_probe_every = shutdown_grace, primary_probe_every
        info = site.site
        self.status_topic = f"{cfg.topic_prefix}/{info.mine_code}/{info.gateway}/status"
        self.client_id = cfg.client_id or f"edge-agent-{info.mine_code}-{info.gateway}"
        self.connected = False
        self.broker: str = self.brokers[0].url
        self._index = 0
        self._counts = dict(published=0, acked=0, reconnects=0, errors=0)
        self._inflight: dict[int, int] = {}    # seq -> mid of the publish waiting for its PUBACK
        self._session_done: list[int] = []     # seqs PUBACKed in this session, not yet taken
        self._waiter: asyncio.Future | None = None
        self._sessions = 0
        self._connected_since: float | None = None
        self._pending_acks: list[int] = []
        self._last_line: tuple[str, float] | None = None

    @property
    def counters(self) -> dict:
        return {**self._counts, "inflight": len(self._inflight)}

    @property
    def trouble(self) -> str | None:
        """Why it cannot deliver now (for /health), or None while connected."""
        return None if self.connected else "uplink down, buffering"

    async def __aenter__(self) -> "MqttSink":
        return self

    async def __aexit__(self, *exc) -> None:
        self.connected = False

    # ------------------------------------------------------------------ reconnect loop

    async def run(self) -> None:
        """Deliver until cancelled; on cancel, leave the broker cleanly and return by raising CancelledError."""
        retry = Backoff(self.backoff_base, self.backoff_cap)
        while True:
            broker = self.brokers[self._index]
            self._connected_since = None
            try:
                reason = await self._session(broker)
            except asyncio.CancelledError:
                raise
            except EdgeAgentError as exc:      # our own one-line message (credential or certificate files)
                reason = str(exc)
            except (aiomqtt.MqttError, OSError, _ConnectFailed) as exc:
                reason = explain(exc, broker, detail=getattr(exc, "detail", None),
                                 connecting=self._connected_since is None)
            if reason is None:                 # left on purpose for the primary: no backoff
                retry.reset()
                self._index = 0
                continue
            self._counts["errors"] += 1
            if self._connected_since is not None and time.monotonic() - self._connected_since > 10.0:
                retry.reset()                  # a long healthy session: start the backoff again from 1 s
            delay = retry.next()
            if len(self.brokers) > 1:
                self._index = (self._index + 1) % len(self.brokers)
            nxt = self.brokers[self._index]
            then = f"trying {nxt} in {delay:.1f}s" if nxt is not broker else f"retrying in {delay:.1f}s"
            self._log_failure(f"mqtt: {broker}: {reason}; {then}")
            await asyncio.sleep(delay)

    def _log_failure(self, line: str) -> None:
        now = time.monotonic()
        if self._last_line and self._last_line[0] == line.split("; ")[0] and now - self._last_line[1] < \
                REPEAT_LOG_EVERY:
            log.debug("%s", line)
            return
        self._last_line = (line.split("; ")[0], now)
        log.warning("%s", line)

    # ------------------------------------------------------------------ one connection

    async def _connect(self, broker: Broker, *, probe: bool = False) -> tuple[aiomqtt.Client, _PahoLog]:
        """A connected client and its log catcher; or `_ConnectFailed`/`EdgeAgentError` with the reason."""
        cfg = self.cfg
        ctx = tls_context(cfg, self.site) if broker.tls else None
        password = (read_secret(cfg.password_file, field=f"{cfg.field}.password_file", site=self.site)
                    if cfg.password_file else None)
        plog = _PahoLog(asyncio.get_running_loop())
        client = aiomqtt.Client(
            broker.host, broker.port, username=cfg.username,
            password=password.reveal() if password is not None else None,
            identifier=self.client_id + ("-probe" if probe else ""), logger=plog,  # type: ignore[arg-type]
            will=None if probe else aiomqtt.Will(self.status_topic, b"offline", qos=1, retain=True),
            keepalive=max(5, int(cfg.keepalive)), tls_context=ctx, timeout=self.connect_timeout,
            max_inflight_messages=cfg.inflight + 4, clean_session=True)
        client.pending_calls_threshold = cfg.inflight + 8
        _slice_without_copies(client)
        enter = asyncio.ensure_future(client.__aenter__())
        alert = asyncio.ensure_future(plog.failed.wait())
        try:
            # a refused client certificate (TLS 1.3) shows only as paho's log line, not as an error
            await asyncio.wait({enter, alert}, timeout=self.connect_timeout + 1,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            alert.cancel()
            if not enter.done():
                enter.cancel()
        if not enter.done() or enter.cancelled():
            raise _ConnectFailed(plog.last or "connect timed out", detail=plog.last)
        if enter.exception() is not None:
            if broker.tls and plog.last is None:
                # a socket closed mid-handshake: the TLS alert that names the reason (a refused
                # client certificate) may reach paho's log a moment later; wait briefly for it
                try:
                    await asyncio.wait_for(plog.failed.wait(), TLS_ALERT_GRACE)
                except asyncio.TimeoutError:
                    pass
            raise _ConnectFailed(str(enter.exception()), detail=plog.last) from enter.exception()
        return client, plog

    async def _session(self, broker: Broker) -> str | None:
        """Connect, announce, pump.  Returns None when left on purpose; raises or returns a reason otherwise."""
        client, plog = await self._connect(broker)
        self._sessions += 1
        if self._sessions > 1:
            self._counts["reconnects"] += 1
        self.connected, self.broker, self._connected_since = True, broker.url, time.monotonic()
        self._last_line = None                 # a later outage is news again, whatever its reason
        lost = asyncio.ensure_future(self._watch(client))
        probe = (asyncio.ensure_future(self._watch_primary()) if self._index != 0 and self.cfg.return_to_primary
                 else None)
        try:
            await client.publish(self.status_topic, b"online", qos=1, retain=True, timeout=self.stall_timeout)
            await self._publish_detail(client)
            log.info("mqtt: connected to %s (backlog %d)", broker, self.buffer.backlog(self.name))
            try:
                await self._pump(client, lost, probe)
            except (_Leave, asyncio.CancelledError):
                await self._leave(client)
                raise
        except _Leave:
            log.info("mqtt: primary broker %s accepts connections again; switching from %s", self.brokers[0],
                     broker)
            return None
        except aiomqtt.MqttError as exc:
            return "connection lost: " + explain(exc, broker, detail=plog.last)
        finally:
            self.connected = False
            for t in (lost, probe):
                if t is not None:
                    t.cancel()
                    if t.done() and not t.cancelled():
                        t.exception()          # retrieved: no "exception never retrieved" noise
            await self._abandon_inflight()
            try:
                await asyncio.wait_for(client.__aexit__(None, None, None), 3.0)
            except (aiomqtt.MqttError, asyncio.TimeoutError, OSError):
                pass
        return "connection closed"

    async def _watch(self, client: aiomqtt.Client) -> None:
        # iterating messages is aiomqtt's public signal of a lost connection (we subscribe to nothing)
        async for _ in client.messages:
            pass

    async def _watch_primary(self) -> None:
        while True:
            await asyncio.sleep(self.primary_probe_every)
            try:
                client, _ = await self._connect(self.brokers[0], probe=True)
            except (aiomqtt.MqttError, EdgeAgentError, OSError, _ConnectFailed):
                continue
            try:
                await asyncio.wait_for(client.__aexit__(None, None, None), 3.0)
            except (aiomqtt.MqttError, asyncio.TimeoutError, OSError):
                pass
            return

    async def _publish_detail(self, client: aiomqtt.Client) -> None:
        if self.status_detail is None:
            return
        try:
            payload = orjson.dumps(self.status_detail())
        except Exception:  # a bug in the detail callback must not take the uplink down
            log.exception("mqtt: status_detail() failed; status/detail not published")
            return
        await client.publish(self.status_topic + "/detail", payload, qos=1, retain=True,
                             timeout=self.stall_timeout)

    # ------------------------------------------------------------------ the window

    async def _pump(self, client: aiomqtt.Client, lost: asyncio.Future, probe: asyncio.Future | None) -> None:
        window = self.cfg.inflight
        batch = max(1, window // 2)
        loop = asyncio.get_running_loop()
        cursor = 0
        last_flush = last_progress = time.monotonic()
        woken = None
        self._pending_acks = acked = []
        self._session_done = done = []
        for f in (lost, probe):
            if f is not None:
                f.add_done_callback(self._kick)
        try:
            while True:
                if len(self._inflight) < window:
                    self.wake.clear()          # before peek: an append after the peek sets it again
                    for row in self.buffer.peek(self.name, window - len(self._inflight), cursor, sync_gap=SYNC_GAP):
                        self._send(client, row)
                        cursor = row.seq
                        self._counts["published"] += 1
                    row = None    # a 23 MB row is not kept beside the payload paho queued, nor after its PUBACK
                room = len(self._inflight) < window
                if room and (woken is None or woken.done()):
                    woken = asyncio.ensure_future(self.wake.wait())
                    woken.add_done_callback(self._kick)
                held = self.buffer.sync_wait(SYNC_GAP)      # committed rows handed out after the next WAL sync
                timeout = min(ACK_EVERY if acked else 1.0, 1.0 if held is None else held + 0.001)
                if not (done or lost.done() or (room and woken.done()) or (probe is not None and probe.done())):
                    await self._wait(loop, timeout)
                if lost.done():
                    lost.result()              # raises MqttError with the reason
                    raise aiomqtt.MqttError("connection lost")
                if done:                       # PUBACKed (oldest first within each wake)
                    for seq in done:
                        self._inflight.pop(seq, None)
                    acked.extend(done)
                    done.clear()
                    last_progress = time.monotonic()
                now = time.monotonic()
                if not self._inflight:
                    last_progress = now
                elif now - last_progress > self.stall_timeout:
                    raise aiomqtt.MqttError(f"no PUBACK for {self.stall_timeout:g}s with {len(self._inflight)} "
                                            "publishes waiting")
                # acks are written a batch at a time (one buffer transaction each), not as the window
                # empties: at 50 messages/s that was a transaction per message; a crash before the
                # write only means those rows are sent again (at-least-once)
                if acked and (len(acked) >= batch or now - last_flush > ACK_EVERY):
                    self._flush_acks()
                    last_flush = now
                if probe is not None and probe.done() and not probe.cancelled():
                    raise _Leave()
        finally:
            if woken is not None:
                woken.cancel()
            for f in (lost, probe):
                if f is not None:
                    f.remove_done_callback(self._kick)
            self._flush_acks()

    def _send(self, client: aiomqtt.Client, row) -> None:
        """Publish one row (QoS 1) through the client's paho core; its PUBACK calls `_Confirm.set`.

        aiomqtt's own `publish()` costs a task, an Event, its waiter and a wait_for per message
        (~30 % of the sink's time at 50 messages/s): the row's confirmation goes straight into the
        client's table of pending publishes instead, which its PUBACK callback resolves by mid."""
        topic, payload, retain = self.encode(row)
        info = client._client.publish(topic, payload, 1, retain)
        if info.rc != aiomqtt.client.mqtt.MQTT_ERR_SUCCESS:
            raise aiomqtt.MqttCodeError(info.rc, "Could not publish message")
        confirm = _Confirm(self, row.seq, self._sessions)
        self._inflight[row.seq] = info.mid
        if info.is_published():
            confirm.set()
        else:
            client._pending_publishes[info.mid] = confirm

    def _delivered(self, seq: int, session: int) -> None:
        """A PUBACK of this session: the pump (or `_leave`) takes it from `_session_done`."""
        if session == self._sessions and seq in self._inflight:
            self._session_done.append(seq)
            self._kick()

    def _kick(self, *_) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        """Until `_kick` (a PUBACK, new rows, the connection lost, the probe) or `timeout`: one future."""
        waiter = self._waiter = loop.create_future()
        timer = loop.call_later(timeout, self._kick)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def _flush_acks(self) -> None:
        acked = self._pending_acks
        if acked:
            self.buffer.ack(self.name, acked)
            self._counts["acked"] += len(acked)
            acked.clear()

    async def _leave(self, client: aiomqtt.Client) -> None:
        """Finish in-flight publishes (short deadline), record their acks, publish retained `offline`."""
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + self.shutdown_grace
        done = self._session_done
        finished: list[int] = []
        while True:
            for seq in done:
                if self._inflight.pop(seq, None) is not None:
                    finished.append(seq)
            done.clear()
            left = deadline - time.monotonic()
            if not self._inflight or left <= 0:
                break
            await self._wait(loop, left)
        if finished:
            self.buffer.ack(self.name, finished)
            self._counts["acked"] += len(finished)
        try:
            await client.publish(self.status_topic, b"offline", qos=1, retain=True, timeout=1.0)
        except aiomqtt.MqttError:
            pass

    async def _abandon_inflight(self) -> None:
        """Publishes without PUBACK stay unacknowledged in the buffer: the next session resends them."""
        self._inflight.clear()
        self._session_done = []


class _Confirm:
    """Stands for aiomqtt's per-publish Event in its table of pending publishes: its PUBACK
    callback calls `set()`, which hands the seq to the sink (only for the session that sent it)."""

    __slots__ = ("sink", "seq", "session")

    def __init__(self, sink: MqttSink, seq: int, session: int):
        self.sink, self.seq, self.session = sink, seq, session

    def set(self) -> None:
        self.sink._delivered(self.seq, self.session)


class _ConnectFailed(Exception):
    def __init__(self, text: str, detail: str | None = None):
        super().__init__(text)
        self.detail = detail
