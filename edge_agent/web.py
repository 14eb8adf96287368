"""The agent's local web server: one aiohttp server in the agent's event loop, on `console.listen`.

    web = WebServer("127.0.0.1:8080")
    alarms.add_routes(web.app)           # components add routes/middlewares before entering
    async with web:                      # binds; web.url is then "http://127.0.0.1:8080"
        ...

`WebServer(listen)` raises EdgeAgentError for text that is not host:port, and
entering raises it (one line naming `console.listen`) when the address cannot
be bound.  Port 0 picks a free port (tests).  The agent runs it through
`optional()`, so a port in use costs the local API, not the acquisition.
"""
from __future__ import annotations

import logging

from edge_agent.errors import EdgeAgentError
from edge_agent.metrics import parse_listen

log = logging.getLogger("edge_agent.web")

FIELD = "console.listen"
TEXT = {
    "cannot_listen": "{field}: cannot listen on {listen}: {reason}; another program may use the port: change "
                     "{field} or set console.enabled: false",
    "listening": "local web server on %s",
    "without": "local web server not started, the agent runs without it: %s",
}


class WebServer:
    def __init__(self, listen: str):
        from aiohttp import web
        self.listen = listen
        self.host, self.port = parse_listen(listen, field=FIELD)
        self.app = web.Application()
        self._runner = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def __aenter__(self) -> "WebServer":
        from aiohttp import web
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise EdgeAgentError(TEXT["cannot_listen"].format(field=FIELD, listen=self.listen,
                                                              reason=exc.strerror or exc)) from None
        self._runner = runner
        if runner.addresses:
            self.port = runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


class optional:
    """Enter a WebServer, but log one line instead of failing when it cannot bind."""

    def __init__(self, server: WebServer):
        self.server = server
        self.entered = False

    async def __aenter__(self):
        try:
            await self.server.__aenter__()
        except EdgeAgentError as exc:
            log.error(TEXT["without"], exc)
            return self
        self.entered = True
        log.info(TEXT["listening"], self.server.url)
        return self

    async def __aexit__(self, *exc):
        if self.entered:
            await self.server.__aexit__(*exc)
        return False
