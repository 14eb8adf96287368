"""A simulated OPC UA server (asyncua) for tests, the benchmark and demos.

    python -m edge_agent.drivers.opcua_sim --port 4840 --nodes 1000 --change-every 1

serves `nodes` Double variables `ns=2;s=Sim.V<i>` (browse path
`/Objects/2:Sim/2:V<i>`), rewrites all of them every `--change-every` seconds
(each with a new value in 0..99, so a 0-100 range sensor stays in range),
and publishes how many subscriptions the server holds in
`ns=2;s=Sim.SubscriptionCount` (so a test in another process can count them)
and the number of completed rewrites in `ns=2;s=Sim.Tick` (a loaded machine
may not manage one rewrite per `--change-every`).
Prints `READY <port>` on stdout once it accepts connections.

`SimServer` is the same server as a class (in-process use; listens on
127.0.0.1 only).  Security and users are optional: give `cert`/`key` to offer
the encrypted endpoints (only those), `users` to require a username/password,
`trusted` to accept only those client certificates, `strict` to refuse an
unsecured secure channel outright (BadSecurityPolicyRejected, as many plant
servers do; asyncua's own server lets one through for GetEndpoints).
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import threading
from pathlib import Path

from asyncua import Server, ua
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.common.utils import ServiceError
from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions

NS_URI = "urn:edge-agent:sim"


def _refuse_unsecured_channels() -> None:
    """Make asyncua servers flagged `refuse_unsecured` answer a None OpenSecureChannel with an error."""
    from asyncua.crypto.security_policies import SecurityPolicyNone
    from asyncua.server.uaprocessor import UaProcessor
    from asyncua.ua.ua_binary import uatcp_to_binary

    original = UaProcessor.open_secure_channel
    if getattr(original, "edge_agent_strict", False):
        return

    def open_secure_channel(self, algohdr, seqhdr, body):
        if (getattr(self.iserver, "refuse_unsecured", False) and not self._connection.is_open()
                and algohdr.SecurityPolicyURI == SecurityPolicyNone.URI):
            err = ua.ErrorMessage(ua.StatusCode(ua.StatusCodes.BadSecurityPolicyRejected), "no unsecured channel")
            self._transport.write(uatcp_to_binary(ua.MessageType.Error, err))
            self._transport.close()
            return None
        return original(self, algohdr, seqhdr, body)

    open_secure_channel.edge_agent_strict = True      # type: ignore[attr-defined]
    UaProcessor.open_secure_channel = open_secure_channel  # type: ignore[method-assign]


class _Users:
    def __init__(self, users: dict[str, str]):
        self.users = users

    def get_user(self, iserver, username=None, password=None, certificate=None):
        if username in self.users and self.users[username] == password:
            return User(role=UserRole.User)
        return None


class SimServer:
    def __init__(self, port: int, nodes: int = 0, *, names: list[str] = (), cert: Path | None = None,
                 key: Path | None = None, users: dict[str, str] | None = None, trusted: list[Path] = (),
                 strict: bool = False):
        self.port = port
        self.url = f"opc.tcp://127.0.0.1:{port}"
        self.names = list(names) + [f"V{i}" for i in range(nodes)]
        self.cert, self.key, self.users, self.trusted = cert, key, users, list(trusted)
        self.strict = strict
        self.server: Server | None = None
        self.ns = 2
        self.nodes: dict[str, ua.NodeId] = {}
        self.count_node: ua.NodeId | None = None
        self.tick_node: ua.NodeId | None = None

    async def start(self) -> "SimServer":
        s = Server(user_manager=_Users(self.users) if self.users else None)
        await s.init()
        s.set_endpoint(self.url)
        if self.strict:
            _refuse_unsecured_channels()
            s.iserver.refuse_unsecured = True
        s.set_server_name("edge-agent sim")
        if self.cert:
            await s.load_certificate(str(self.cert))
            await s.load_private_key(str(self.key))
            s.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
                                   ua.SecurityPolicyType.Basic256Sha256_Sign,
                                   ua.SecurityPolicyType.Aes128Sha256RsaOaep_SignAndEncrypt])
            if self.trusted:
                s.set_certificate_validator(_Trusted(self.trusted))
        if self.users:
            s.set_identity_tokens([ua.UserNameIdentityToken])
        self.ns = await s.register_namespace(NS_URI)
        obj = await s.nodes.objects.add_object(ua.NodeId("Sim", self.ns), ua.QualifiedName("Sim", self.ns))
        for name in self.names:
            v = await obj.add_variable(ua.NodeId(f"Sim.{name}", self.ns), ua.QualifiedName(name, self.ns), 0.0)
            self.nodes[name] = v.nodeid
        cnt = await obj.add_variable(ua.NodeId("Sim.SubscriptionCount", self.ns),
                                     ua.QualifiedName("SubscriptionCount", self.ns), 0)
        self.count_node = cnt.nodeid
        tick = await obj.add_variable(ua.NodeId("Sim.Tick", self.ns), ua.QualifiedName("Tick", self.ns), 0)
        self.tick_node = tick.nodeid
        await s.start()
        self.server = s
        return self

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
            self.server = None

    def subscription_count(self) -> int:
        assert self.server is not None
        return len(self.server.iserver.subscription_service.subscriptions)

    async def write(self, name: str, value, status: int = ua.StatusCodes.Good) -> None:
        """Set a variable; a Bad `status` sends no value, as a real server would."""
        assert self.server is not None
        if status == ua.StatusCodes.Good:
            dv = ua.DataValue(ua.Variant(value, ua.VariantType.Double if isinstance(value, float) else None))
        else:
            var = ua.Variant(value) if value is not None else ua.Variant()
            dv = ua.DataValue(var, StatusCode=ua.StatusCode(status))
        await self.server.write_attribute_value(self.nodes[name], dv)

    async def drop_connections(self) -> None:
        """Close every client socket from the server side (sessions stay until they time out)."""
        assert self.server is not None
        for t in list(self.server.iserver.asyncio_transports):
            t.close()

    async def run_changes(self, every: float) -> None:
        """Rewrite every variable each `every` seconds (the benchmark's load) and publish the count."""
        assert self.server is not None
        tick = 0
        loop = asyncio.get_running_loop()
        at = loop.time()
        while True:
            tick += 1
            for i, name in enumerate(self.names):
                await self.server.write_attribute_value(
                    self.nodes[name], ua.DataValue(ua.Variant(float((tick * 7 + i) % 100), ua.VariantType.Double)))
                if i % 200 == 199:   # let requests in between, as a real (threaded) server would
                    await asyncio.sleep(0)
            await self.publish_count()
            await self.server.write_attribute_value(self.tick_node,
                                                    ua.DataValue(ua.Variant(tick, ua.VariantType.Int64)))
            at += every
            await asyncio.sleep(max(0.0, at - loop.time()))

    async def publish_count(self) -> None:
        assert self.server is not None and self.count_node is not None
        await self.server.write_attribute_value(
            self.count_node, ua.DataValue(ua.Variant(self.subscription_count(), ua.VariantType.Int64)))


class ServerThread:
    """A SimServer on its own event loop in a background thread.

    For tests and demos that drive the agent with `asyncio.run` in the main
    thread: the server outlives each run.  `call(coro_fn, *args)` runs a
    SimServer coroutine on the server's loop and returns its result.
    """

    def __init__(self, sim: SimServer):
        self.sim = sim
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=f"opcua-sim-{sim.port}", daemon=True)

    def start(self, timeout: float = 30.0) -> "ServerThread":
        self.thread.start()
        self.call(self.sim.start, timeout=timeout)
        return self

    def call(self, fn, *args, timeout: float = 10.0):
        return asyncio.run_coroutine_threadsafe(fn(*args), self.loop).result(timeout)

    def acall(self, fn, *args) -> "asyncio.Future":
        """Like `call`, awaitable from another event loop (the agent's)."""
        return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(fn(*args), self.loop))

    def stop(self) -> None:
        try:
            self.call(self.sim.stop)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
            self.loop.close()


class _Trusted:
    """Accept exactly these client certificates, after asyncua's URI / key-usage checks."""

    def __init__(self, paths: list[Path]):
        self.der = {x509.load_pem_x509_certificate(p.read_bytes()).public_bytes(Encoding.DER) for p in paths}
        self.checks = CertificateValidator(CertificateValidatorOptions.EXT_VALIDATION
                                           | CertificateValidatorOptions.PEER_CLIENT)

    async def __call__(self, cert: x509.Certificate, app: ua.ApplicationDescription) -> None:
        await self.checks.validate(cert, app)
        if cert.public_bytes(Encoding.DER) not in self.der:
            raise ServiceError(ua.StatusCodes.BadCertificateUntrusted)


async def _main(args: argparse.Namespace) -> None:
    sim = await SimServer(args.port, args.nodes).start()
    print(f"READY {args.port}", flush=True)
    counter = asyncio.create_task(_count_loop(sim)) if not args.change_every else None
    try:
        if args.change_every:
            await sim.run_changes(args.change_every)
        else:
            await asyncio.Event().wait()
    finally:
        if counter:
            counter.cancel()
        await sim.stop()


async def _count_loop(sim: SimServer) -> None:
    while True:
        await sim.publish_count()
        await asyncio.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="opcua_sim", description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=4840)
    ap.add_argument("--nodes", type=int, default=10)
    ap.add_argument("--change-every", type=float, default=0.0, help="rewrite all values every S seconds (0: never)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    try:
        asyncio.run(_main(args))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
