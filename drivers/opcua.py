"""The OPC UA driver: one device (one server session), subscribe or poll mode.

    drv = OpcUaDevice(index, device_cfg, points, on_frame)
    async with drv:            # never raises for an unreachable server
        await drv.run()        # until cancelled

What the pipeline may rely on:

- Subscribe mode (default): one subscription per session with every node
  in one CreateMonitoredItems call (split only if the server sets
  MaxMonitoredItemsPerCall), the point's absolute deadband (analog
  points, converted to raw units) as a server-side DataChangeFilter.  Each
  publish response becomes one Frame holding only the points that changed.
- Poll mode: every `poll` seconds (`poll_in_warning`'s period while the agent
  says a point is in warning, pace.Cadence) one Read of all nodes (split by the
  server's MaxNodesPerRead); each poll is one Frame of every point.
- Status codes and timestamps map as `opcua_values` says.  A point whose
  node or browse path is not on the server is logged once per connection
  (device, point, address, reason) and reported with quality 128.
- Session loss (socket closed, the asyncua watchdog's periodic probe failing,
  or a subscription that stops publishing, keep-alives included) gives one
  quality-16 Frame for all points, one WARNING line naming the device,
  `state_changed(index, False, reason)`, then reconnects with backoff
  (1 s doubling to 60 s, +-20 % jitter) on a fresh session with fresh
  subscriptions.  The old session is not resumed; it is asked to close, and
  its short session timeout makes the server drop it (and its subscription)
  if it cannot be.
- An outage is logged once at WARNING with its first reason (login refused,
  certificate rejected, refused, timeout, session lost); a different
  reason later in the same outage at INFO, repeats at DEBUG, the recovery
  at INFO with the outage's length.
- `counters` is a plain dict of ints: notifications, publishes (publish
  responses with data: a subscribe-mode poll), frames, values, reads
  (poll-mode polls), read_requests, bad, uncertain, link_down, empty,
  unsupported, sessions, losses, connect_failures, timeouts, missing.
  `opcua_spec.SPEC.counters` maps them onto the standard polls/errors/timeouts.
"""
from __future__ import annotations

import asyncio
import logging
import math
import time
from array import array
from pathlib import Path
from typing import Callable

from asyncua import Client, ua
from asyncua.common.subscription import Subscription

from edge_agent.drivers.opcua_spec import OpcUaConfig
from edge_agent.errors import ConfigError, Problem
from edge_agent.frame import Q_SENSOR_FAULT, Frame
from edge_agent.backoff import Backoff
from edge_agent.drivers.opcua_session import (close_client,
                                              config_problems, describe, file_problems, open_client,
                                              operation_limit, parse_address, parse_security, resolve, show_url)
from edge_agent.drivers.opcua_values import FrameBuilder, unreachable_frame
from edge_agent.drivers.pace import Cadence

log = logging.getLogger("edge_agent.drivers.opcua")
UNKNOWN_NODE = frozenset({ua.StatusCodes.BadNodeIdUnknown, ua.StatusCodes.BadNodeIdInvalid,
                          ua.StatusCodes.BadAttributeIdInvalid})
MAX_NODES_PER_READ = ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerRead
MAX_ITEMS_PER_CALL = ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxMonitoredItemsPerCall
KEEPALIVE_EVERY = 5.0       # seconds between keep-alives of an idle subscription
HEALTHY_AFTER = 30.0        # a session that lived this long resets the backoff
BACKOFF_START, BACKOFF_MAX = 1.0, 60.0


class SessionLost(Exception):
    """The current session cannot go on; the message is the reason."""


class _FrameSubscription(Subscription):
    """A Subscription that turns each publish response into one Frame, bypassing per-value events."""

    def __init__(self, session, params: ua.CreateSubscriptionParameters, drv: "OpcUaDevice"):
        super().__init__(session, params, handler=None, queue_maxsize=1)
        self.drv = drv

    async def publish_callback(self, publish_result: ua.PublishResult) -> None:  # called by the publish loop
        self.last_publish_at = time.monotonic()
        data = publish_result.NotificationMessage.NotificationData
        if not data:
            return  # keep-alive
        self.drv._on_publish(data)


class OpcUaDevice:
    """One OPC UA device of the site (see the module doc for the contract)."""

    session_timeout = 15.0   # s; the server drops an orphaned session (and its subscription) after this
    # s between the asyncua supervisor's server-state probes, and each probe's timeout: a busy
    # server may take a few seconds to answer, a frozen one is caught within two of these
    watchdog = 4.0
    # s between reads that look whether every monitored node is still on the server (subscribe mode)
    node_probe = 30.0

    def __init__(self, index: int, device: OpcUaConfig, points: list, on_frame: Callable[[Frame], None], *,
                 base_dir: str | Path | None = None, backoff_max: float = BACKOFF_MAX):
        self.index = index
        self.device = device
        self.points = list(points)
        self.on_frame = on_frame
        self.base = Path(base_dir) if base_dir is not None else None
        self.backoff_max = backoff_max
        problems = config_problems(device)
        if problems:
            raise ConfigError([Problem(f"device {device.name}", None, f, r) for f, r in problems])
        self.name = device.name
        self.url = show_url(device.url or "")
        self.security = parse_security(device.security)
        self.addresses = [parse_address(rp.cfg.address) for rp in self.points]
        self.gidx = array("i", [rp.index for rp in self.points])
        self.scale = [float(rp.cfg.scale) for rp in self.points]
        self.offset = [float(rp.cfg.offset) for rp in self.points]
        self.interval = float(device.publishing_interval or device.poll)
        # OPC UA requests carry more than a Modbus read: Device.timeout's 0.5 s
        # default is for Modbus, so only an explicit timeout is taken as is.
        self.timeout = float(device.timeout) if "timeout" in device.model_fields_set else 4.0
        self.online = False
        self.state_changed: Callable[[int, bool, str], None] | None = None
        self.counters = dict.fromkeys(
            ("notifications", "publishes", "frames", "values", "reads", "read_requests", "bad", "uncertain",
             "link_down", "empty", "unsupported", "sessions", "losses", "connect_failures", "timeouts", "missing",
             "dense_polls"), 0)
        self.cadence = Cadence(self.interval, device.poll_in_warning)   # poll mode: denser reads in warning
        self._client: Client | None = None
        self._lost: asyncio.Event | None = None
        self._lost_reason = ""
        self._reported: str | None = None   # the offline reason last logged
        self._down_since: float | None = None   # monotonic start of the current outage
        self._last_mono = self._last_wall = 0.0
        self._pos_of_handle: dict[int, int] = {}

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> "OpcUaDevice":
        return self

    async def __aexit__(self, *exc) -> None:
        client, self._client = self._client, None
        if client is not None:
            await close_client(client)

    async def run(self) -> None:
        """Connect, serve, and reconnect after every loss, until cancelled."""
        retry = Backoff(BACKOFF_START, self.backoff_max)
        me = asyncio.current_task()
        while True:
            if me is not None and me.cancelling():
                raise asyncio.CancelledError   # a cancel swallowed by Python 3.11's wait_for
            try:
                self._lost = asyncio.Event()
                self._client = await open_client(
                    self.device, timeout=self.timeout, watchdog=self.watchdog,
                    session_timeout=self.session_timeout, base=self.base, on_lost=self._on_connection_lost)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - every failure is a reason to retry
                self.counters["connect_failures"] += 1
                self.counters["timeouts"] += isinstance(exc, asyncio.TimeoutError)
                self._set_offline(describe(exc, self.device, self.timeout))
                await asyncio.sleep(retry.next())
                continue
            started = time.monotonic()
            self.counters["sessions"] += 1
            try:
                reason = await self._serve(self._client)
            except asyncio.CancelledError:
                raise
            except SessionLost as exc:
                reason = str(exc)
            except (ConnectionError, OSError, asyncio.TimeoutError, ua.UaError) as exc:
                self.counters["timeouts"] += isinstance(exc, asyncio.TimeoutError)
                reason = describe(exc, self.device, self.timeout)
            except Exception as exc:  # noqa: BLE001 - a bug here must not stop this device for good
                log.exception("device %s: unexpected error; reconnecting", self.name)
                reason = f"unexpected {type(exc).__name__}"
            finally:
                client, self._client = self._client, None
                if client is not None:
                    await close_client(client)
            self.counters["losses"] += 1
            self._set_offline(f"session lost: {reason}")
            if time.monotonic() - started >= HEALTHY_AFTER:
                retry.reset()
            await asyncio.sleep(retry.next())

    # ------------------------------------------------------------------ state

    def _set_online(self, client: Client) -> None:
        self.online = True
        sec = "no security" if not self.security.policy else f"{self.security.policy},{self.security.mode}"
        after = "" if self._down_since is None else f" after {time.monotonic() - self._down_since:.0f}s offline"
        log.info("device %s: connected to %s (%s, %s, %d points)%s", self.name, self.url, self.device.mode, sec,
                 len(self.points), after)
        self._reported = None
        self._down_since = None
        if self.state_changed:
            self.state_changed(self.index, True, "connected")

    def _set_offline(self, reason: str) -> None:
        """Enter (or stay in) the outage: its first reason is a WARNING, later different ones INFO."""
        was_online, self.online = self.online, False
        if was_online or self._down_since is None:
            self._down_since = time.monotonic()
            self._emit(unreachable_frame(self.index, self.gidx))
            if self.state_changed:
                self.state_changed(self.index, False, reason)
            log.warning("device %s: %s; retrying with backoff", self.name, reason)
        elif reason != self._reported:
            log.info("device %s: still unreachable: %s", self.name, reason)
        else:
            log.debug("device %s: still unreachable: %s", self.name, reason)
        self._reported = reason

    async def _on_connection_lost(self, exc: Exception) -> None:
        """asyncua's supervisor found the link dead (socket closed or probe failed)."""
        self._lose(describe(exc, self.device, self.timeout) if not isinstance(exc, ConnectionError)
                   else "connection closed")

    def _lose(self, reason: str) -> None:
        if self._lost is not None and not self._lost.is_set():
            self._lost_reason = reason
            self._lost.set()

    def _emit(self, frame: Frame) -> None:
        # source timestamps may put a batch a little before the previous one: a device's frames never go back
        if frame.mono < self._last_mono:
            frame.mono = self._last_mono
        if frame.wall < self._last_wall:
            frame.wall = self._last_wall
        self._last_mono, self._last_wall = frame.mono, frame.wall
        self.counters["frames"] += 1
        self.counters["values"] += len(frame)
        self.on_frame(frame)

    async def _wait_lost(self, timeout: float) -> bool:
        """Return after `timeout` s, or earlier (True) when the poll period changed (pace.Cadence);
        raise SessionLost as soon as the session is lost."""
        assert self._lost is not None
        changed = await self.cadence.sleep(timeout, also=self._lost)
        if self._lost.is_set():
            raise SessionLost(self._lost_reason)
        return changed

    # ------------------------------------------------------------------ session

    async def _resolve(self, client: Client) -> tuple[list[int], list[ua.NodeId], FrameBuilder]:
        """Positions and NodeIds that exist; a builder already holding quality 128 for those that do not."""
        targets = await resolve(client, self.addresses)
        faults = self._builder()
        ok_pos, ok_ids = [], []
        for pos, t in enumerate(targets):
            if isinstance(t, str):
                self._missing(pos, t, faults)
            else:
                ok_pos.append(pos)
                ok_ids.append(t)
        return ok_pos, ok_ids, faults

    def _missing(self, pos: int, reason: str, faults: FrameBuilder) -> None:
        self.counters["missing"] += 1
        self._log_missing(pos, reason)
        faults.add_fault(pos, Q_SENSOR_FAULT)

    def _log_missing(self, pos: int, reason: str) -> None:
        rp = self.points[pos]
        log.warning("device %s: point %s: %s %s (check `address` in the point table)", self.name, rp.cfg.id,
                    rp.cfg.address, reason)

    def _builder(self) -> FrameBuilder:
        return FrameBuilder(self.index, self.gidx, self.scale, self.offset, self.counters, self.interval)

    async def _serve(self, client: Client) -> str:
        if self.device.mode == "poll":
            return await self._serve_poll(client)
        return await self._serve_subscribe(client)

    async def _serve_subscribe(self, client: Client) -> str:
        pos, ids, faults = await self._resolve(client)
        ms = self.interval * 1000.0
        keepalive = max(1, math.ceil(KEEPALIVE_EVERY * 1000.0 / ms))
        params = ua.CreateSubscriptionParameters(
            RequestedPublishingInterval=ms, RequestedMaxKeepAliveCount=keepalive,
            RequestedLifetimeCount=max(3 * keepalive, math.ceil(60_000 / ms)),
            MaxNotificationsPerPublish=0, PublishingEnabled=True, Priority=0)
        sub = _FrameSubscription(client.uaclient.session, params, self)
        res = await sub.init()
        # the watchdog below needs the interval and keep-alive the server granted
        sub.parameters.RequestedPublishingInterval = res.RevisedPublishingInterval
        sub.parameters.RequestedMaxKeepAliveCount = res.RevisedMaxKeepAliveCount
        self._pos_of_handle = {}
        requests = [self._item_request(p, nid, ms) for p, nid in zip(pos, ids)]
        per_call = await operation_limit(client, MAX_ITEMS_PER_CALL, len(requests) or 1)
        t0 = time.monotonic()
        results = []
        for i in range(0, len(requests), per_call):   # one call unless the server sets a limit
            results += await sub.create_monitored_items(requests[i:i + per_call])
        log.debug("device %s: %d monitored items created in %.2fs", self.name, len(requests),
                  time.monotonic() - t0)
        for p, nid, r in zip(pos, ids, results):
            if isinstance(r, ua.StatusCode):
                self._missing(p, f"cannot be monitored ({r.name})", faults)
        self._set_online(client)
        if len(faults):
            self._emit(faults.frame())
        stale_after = max(2.0, 1.5 * res.RevisedPublishingInterval / 1000.0 * res.RevisedMaxKeepAliveCount)
        sub.last_publish_at = time.monotonic()
        watched = [(p, nid) for p, nid, r in zip(pos, ids, results) if not isinstance(r, ua.StatusCode)]
        chunk = await operation_limit(client, MAX_NODES_PER_READ, 1000)
        gone: set[int] = set()
        probe_at = time.monotonic() + self.node_probe
        me = asyncio.current_task()
        while True:
            if me is not None and me.cancelling():
                raise asyncio.CancelledError
            await self._wait_lost(min(stale_after / 2, 1.0, max(0.0, probe_at - time.monotonic())))
            silent = time.monotonic() - sub.last_publish_at
            if silent > stale_after:
                raise SessionLost(f"no publish response (not even a keep-alive) for {silent:.0f}s")
            if watched and time.monotonic() >= probe_at:
                await self._probe_nodes(client, watched, chunk, gone)
                probe_at = time.monotonic() + self.node_probe

    async def _probe_nodes(self, client: Client, watched: list, chunk: int, gone: set[int]) -> None:
        """Whether the monitored nodes are still on the server.  A server may say nothing when a monitored
        node is deleted (asyncua's does not): the point would keep its last value with a good status for
        ever.  So every `node_probe` seconds one read of the nodes' NodeClass (no value moves): a node
        that is gone faults its point (one log line); a node that is back re-subscribes the device."""
        dvs: list[ua.DataValue] = []
        for i in range(0, len(watched), chunk):
            dvs += await asyncio.wait_for(client.uaclient.read_attributes(
                [nid for _, nid in watched[i:i + chunk]], ua.AttributeIds.NodeClass), self.timeout)
        faults = self._builder()
        for (p, _), dv in zip(watched, dvs):
            if dv.StatusCode.value & 0xFFFF0000 in UNKNOWN_NODE:
                if p not in gone:
                    gone.add(p)
                    self._missing(p, f"is no longer on the server ({dv.StatusCode.name})", faults)
            elif p in gone:
                raise SessionLost(f"point {self.points[p].cfg.id} is on the server again: subscribing again")
        if len(faults):
            self._emit(faults.frame())

    def _item_request(self, pos: int, nid: ua.NodeId, ms: float) -> ua.MonitoredItemCreateRequest:
        handle = pos + 1
        self._pos_of_handle[handle] = pos
        rp = self.points[pos]
        mparams = ua.MonitoringParameters(ClientHandle=handle, SamplingInterval=ms, QueueSize=1,
                                          DiscardOldest=True)
        if rp.kind == "analog" and rp.deadband > 0 and self.scale[pos] != 0:
            # the server compares raw values: the deadband in engineering units, divided by the scale
            mparams.Filter = ua.DataChangeFilter(Trigger=ua.DataChangeTrigger.StatusValue,
                                                 DeadbandType=ua.DeadbandType.Absolute,
                                                 DeadbandValue=rp.deadband / abs(self.scale[pos]))
        return ua.MonitoredItemCreateRequest(
            ItemToMonitor=ua.ReadValueId(NodeId=nid, AttributeId=ua.AttributeIds.Value),
            MonitoringMode=ua.MonitoringMode.Reporting, RequestedParameters=mparams)

    def _on_publish(self, data: list) -> None:
        """One publish response: its data changes become one Frame; a Bad status change ends the session."""
        b = self._builder()
        pos_of = self._pos_of_handle
        for notif in data:
            if isinstance(notif, ua.DataChangeNotification):
                self.counters["notifications"] += len(notif.MonitoredItems)
                for item in notif.MonitoredItems:
                    pos = pos_of.get(item.ClientHandle)
                    if pos is not None:
                        b.add(pos, item.Value)
            elif isinstance(notif, ua.StatusChangeNotification) and not notif.Status.is_good():
                self._lose(f"subscription ended by the server ({notif.Status.name})")
        if len(b):
            self.counters["publishes"] += 1
            self._emit(b.frame())

    async def _serve_poll(self, client: Client) -> str:
        pos, ids, faults = await self._resolve(client)
        chunk = await operation_limit(client, MAX_NODES_PER_READ, 1000)
        self._set_online(client)
        session = client.uaclient
        missing = list(zip(faults.index, faults.quality))
        at = time.monotonic()
        cadence = self.cadence
        period = cadence.period
        first = True
        me = asyncio.current_task()
        while True:
            if me is not None and me.cancelling():
                raise asyncio.CancelledError
            dvs: list[ua.DataValue] = []
            for i in range(0, len(ids), chunk):
                dvs += await asyncio.wait_for(session.read_attributes(ids[i:i + chunk], ua.AttributeIds.Value),
                                              self.timeout)
                self.counters["read_requests"] += 1
            self.counters["reads"] += 1
            b = self._builder()
            for p, dv in zip(pos, dvs):
                b.add(p, dv)
            if first:  # a NodeId that is not on the server: say so once, like a bad browse path
                first = False
                for p, dv in zip(pos, dvs):
                    if dv.StatusCode.value & 0xFFFF0000 in UNKNOWN_NODE:
                        self.counters["missing"] += 1
                        self._log_missing(p, f"is not on the server ({dv.StatusCode.name})")
            for gi, q in missing:
                b.index.append(gi)
                b.values.append(math.nan)
                b.quality.append(q)
            self._emit(b.frame())
            if cadence.warning:
                self.counters["dense_polls"] += 1
            at += period
            while True:
                now = time.monotonic()
                if cadence.period != period:     # in or out of warning: one new period after the last read
                    at = max(at + cadence.period - period, now)
                    period = cadence.period
                elif at < now:  # a slow read: skip the missed ticks instead of bursting
                    at = now + period - (now - at) % period
                if not await self._wait_lost(at - now):
                    break


async def check_connect(device: OpcUaConfig, points: list, *, base_dir: str | Path | None = None,
                        timeout: float = 5.0) -> list[str]:
    """For `edge-agent check --connect`: one line per problem (unreachable, refused, missing node)."""
    drv = OpcUaDevice(0, device, points, lambda f: None, base_dir=base_dir)
    missing = file_problems(device, drv.base)
    if missing:
        return [f"device {device.name}: {field}: {reason}" for field, reason in missing]
    try:
        client = await asyncio.wait_for(open_client(device, timeout=drv.timeout, watchdog=60.0,
                                                    session_timeout=drv.session_timeout, base=drv.base,
                                                    on_lost=None), timeout)
    except Exception as exc:  # noqa: BLE001
        return [f"device {device.name}: {describe(exc, device, timeout)}"]
    try:
        targets = await resolve(client, drv.addresses)
        out = [f"device {device.name}: point {rp.cfg.id}: {rp.cfg.address} {t}"
               for rp, t in zip(drv.points, targets) if isinstance(t, str)]
        found = [(rp, t) for rp, t in zip(drv.points, targets) if not isinstance(t, str)]
        if found:
            classes = await client.uaclient.read_attributes([t for _, t in found], ua.AttributeIds.NodeClass)
            out += [f"device {device.name}: point {rp.cfg.id}: {rp.cfg.address} is not on the server "
                    f"({dv.StatusCode.name})" for (rp, _), dv in zip(found, classes) if not dv.StatusCode.is_good()]
        return out
    finally:
        await close_client(client)
