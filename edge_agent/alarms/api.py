"""The alarm book's local HTTP API, on the agent's web server (edge_agent/web.py).

    GET  /api/alarms?state=open|overdue|closed|all   -> {"alarms": [Alarm]}
    GET  /api/alarms/{id}                            -> Alarm
    POST /api/alarms/{id}/ack      {"by"}            -> Alarm
    POST /api/alarms/{id}/dispose  {"handler", "cause", "action", "handled_at"?}  -> Alarm

Every request carries `Authorization: Bearer <token>`, the token being the
content of `alarms.token_file` (read per request, so it can be replaced
without a restart).  Errors are `{"error": "one line"}` with 400/404/409, 401
for a missing or wrong token, 503 when the token file cannot be read or the
book cannot be written.  Nothing is recorded when an error is returned.
"""
from __future__ import annotations

import hmac
import logging
from typing import Callable

import orjson
from aiohttp import web

from edge_agent.alarms.book import AlarmBook
from edge_agent.alarms.inputs import AlarmError
from edge_agent.errors import EdgeAgentError

log = logging.getLogger("edge_agent.alarms")

TEXT = {
    "no_token": "missing token: send 'Authorization: Bearer <the content of alarms.token_file>'",
    "bad_token": "wrong token: use the content of alarms.token_file of this agent's site file",
    "bad_id": "alarm id {id!r} is not a number",
    "bad_json": "request body: not a JSON object; send e.g. {{\"by\": \"张三\"}}",
    "unknown_key": "request body: unknown key(s) {keys}; known: {known}",
    "refused": "local API: refused a request with a wrong token from %s",
}
ACK_KEYS = ("by",)
DISPOSE_KEYS = ("handler", "cause", "action", "handled_at")


def _json(data, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _error(status: int, message: str) -> web.Response:
    doc = {"error": message}
    if getattr(message, "template", ""):       # inputs.Said: the CLI shows it in its own language
        doc.update(template=message.template, values={k: str(v) for k, v in message.values.items()})
    return _json(doc, status)


def add_routes(app: web.Application, book: AlarmBook, token: Callable[[], str]) -> None:
    """Add the /api/alarms routes to `app`; `token()` returns the expected bearer token (or raises)."""

    def handler(fn):
        async def wrapped(request: web.Request) -> web.Response:
            try:
                expected = token()
            except EdgeAgentError as exc:
                return _error(503, str(exc))
            given = request.headers.get("Authorization", "")
            if not given.startswith("Bearer "):
                return _error(401, TEXT["no_token"])
            if not hmac.compare_digest(given[7:].strip().encode(), expected.strip().encode()):
                log.warning(TEXT["refused"], request.remote)
                return _error(401, TEXT["bad_token"])
            try:
                return _json(await fn(request))
            except AlarmError as exc:
                return _error(exc.status, exc.message)
        return wrapped

    def alarm_id(request: web.Request) -> int:
        text = request.match_info["id"]
        if not text.isdigit():
            raise AlarmError(400, TEXT["bad_id"].format(id=text))
        return int(text)

    async def body(request: web.Request, known: tuple[str, ...]) -> dict:
        try:
            data = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            raise AlarmError(400, TEXT["bad_json"])
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise AlarmError(400, TEXT["unknown_key"].format(keys=", ".join(unknown), known=", ".join(known)))
        return data

    async def list_alarms(request: web.Request):
        return {"alarms": book.list(request.query.get("state", "open"))}

    async def get_alarm(request: web.Request):
        return book.get(alarm_id(request))

    async def ack(request: web.Request):
        i = alarm_id(request)
        data = await body(request, ACK_KEYS)
        return book.ack(i, by=data.get("by"))

    async def dispose(request: web.Request):
        i = alarm_id(request)
        data = await body(request, DISPOSE_KEYS)
        return book.dispose(i, handler=data.get("handler"), cause=data.get("cause"), action=data.get("action"),
                            handled_at=data.get("handled_at"))

    app.router.add_get("/api/alarms", handler(list_alarms))
    app.router.add_get("/api/alarms/{id}", handler(get_alarm))
    app.router.add_post("/api/alarms/{id}/ack", handler(ack))
    app.router.add_post("/api/alarms/{id}/dispose", handler(dispose))
