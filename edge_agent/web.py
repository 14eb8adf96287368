"""The agent's local web server: one aiohttp application in the agent's event loop.

Interface of CONTRACT-web-alarms-console.md (the `alarms` branch owns the real
one; this is the copy the console builds against until it lands):

    web = WebServer("127.0.0.1:8080")     # bad text -> EdgeAgentError naming console.listen
    web.app.router.add_get(...)           # components add routes before entering
    async with web:                       # binds; a port in use -> one EdgeAgentError line
        web.url                           # "http://127.0.0.1:8080" once bound (port 0: the real one)
"""
from __future__ import annotations

import logging

from aiohttp import web

from edge_agent.errors import EdgeAgentError
from edge_agent.metrics import parse_listen

log = logging.getLogger("edge_agent.web")


class WebServer:
    def __init__(self, listen: str):
        try:
            self.host, self.port = parse_listen(listen)
        except EdgeAgentError as exc:
            raise EdgeAgentError(str(exc).replace("metrics.listen", "console.listen")) from None
        self.listen = listen
        self.app = web.Application(client_max_size=64 * 1024)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def __aenter__(self) -> "WebServer":
        # no access log: one line per request would flood the journal
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            self._runner = None
            raise EdgeAgentError(f"console.listen: cannot listen on {self.listen}: {exc.strerror or exc}; "
                                 "another program may use the port: change console.listen") from None
        self.port = site._server.sockets[0].getsockname()[1]   # port 0: the one the kernel chose
        log.info("web server on %s", self.url)
        return self

    async def __aexit__(self, *exc) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
