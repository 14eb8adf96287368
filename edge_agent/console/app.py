"""The console's routes on the agent's web server: pages, live stream, trend data, login, writes.

Reading is open to clients on the loopback interface; from any other
address every page needs a login.  Every write (ack, disposal, logout) needs
a session and the session's CSRF token, and must come from this origin.
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
from importlib import resources
from urllib.parse import quote

import orjson
from aiohttp import web

from edge_agent.console import pages, warnings
from edge_agent.console.auth import COOKIE, csrf_ok, hash_password, parse_users, verify_password
from edge_agent.console.html import T, esc, layout, plain, section
from edge_agent.errors import EdgeAgentError
from edge_agent.i18n import N_

log = logging.getLogger("edge_agent.console")

STATIC_TYPES = {".css": "text/css", ".js": "application/javascript", ".svg": "image/svg+xml"}
HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
                                      "form-action 'self'; base-uri 'none'",
           "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
           "Cache-Control": "no-store"}
_DUMMY_HASH: list[str] = []    # a hash to check unknown names against: they cost as much as wrong passwords


def is_loopback(remote: str | None) -> bool:
    try:
        return ipaddress.ip_address((remote or "").split("%")[0]).is_loopback
    except ValueError:
        return False


def static_files() -> dict[str, tuple[bytes, str]]:
    root = resources.files("edge_agent.console") / "static"
    out = {}
    for f in root.iterdir():
        ext = "." + f.name.rsplit(".", 1)[-1]
        if ext in STATIC_TYPES:
            out[f.name] = (f.read_bytes(), STATIC_TYPES[ext])
    return out


class Routes:
    """Handlers bound to one Console (its view, sessions, limiter, hub, history)."""

    def __init__(self, console):
        self.c = console
        self.static = static_files()

    def add_to(self, app: web.Application) -> None:
        app.middlewares.append(self.guard)
        r = app.router
        r.add_get("/", self.overview)
        r.add_get("/device/{name}", self.device)
        r.add_get("/point/{device}/{id}", self.point)
        r.add_get("/point/{device}/{id}/trend", self.trend)
        r.add_get("/warnings", self.warning_lists)
        r.add_get("/warnings/{id}", self.warning)
        r.add_post("/warnings/{id}/ack", self.ack)
        r.add_post("/warnings/{id}/dispose", self.dispose)
        r.add_get("/config", self.config)
        r.add_get("/login", self.login_page)
        r.add_post("/login", self.login)
        r.add_post("/logout", self.logout)
        r.add_get("/live", self.live)
        r.add_get("/static/{name}", self.static_file)

    # -------------------------------------------------------------- plumbing

    def session(self, request: web.Request):
        return self.c.sessions.get(request.cookies.get(COOKIE))

    @web.middleware
    async def guard(self, request: web.Request, handler):
        """Security headers on every console answer; login required to read from off this machine."""
        path = request.path
        console_path = not (path.startswith("/api/") or path in ("/metrics", "/health"))
        if console_path and not (path.startswith("/static/") or path == "/login") and \
                not is_loopback(request.remote) and self.session(request) is None:
            if request.method == "GET" and path not in ("/live",) and not path.endswith("/trend"):
                raise web.HTTPSeeOther(f"/login?next={quote(path)}")
            raise web.HTTPUnauthorized(text="log in first\n")
        resp = await handler(request)
        if console_path and not resp.prepared:
            for k, v in HEADERS.items():
                resp.headers.setdefault(k, v)
        return resp

    def page(self, request: web.Request, *, title: str, live: str, body: str, status: int = 200) -> web.Response:
        s = self.session(request)
        text = layout(title=title, live=live, body=body, ident=self.c.view.title(), user=s.user if s else None,
                      csrf=s.csrf if s else None, can_login=self.c.can_login, path=request.path)
        resp = web.Response(text=text, content_type="text/html", status=status)
        for k, v in HEADERS.items():
            resp.headers[k] = v
        return resp

    def message(self, request: web.Request, status: int, msg: str, **values) -> web.Response:
        body = f'<section class="wide"><p class="error" role="alert">{T(msg, **values)}</p></section>'
        return self.page(request, title=plain(msg, **values)[:60], live="", body=body, status=status)

    # -------------------------------------------------------------- read

    async def overview(self, request):
        sections = pages.overview(self.c.view)
        return self.page(request, title=plain("Overview"), live="overview", body=pages.overview_body(sections))

    async def device(self, request):
        di = self.c.view.device_index(request.match_info["name"])
        if di is None:
            return self.message(request, 404, N_("no device {name} on this gateway"), name=request.match_info["name"])
        sections = pages.device(self.c.view, di, self.c.changes)
        return self.page(request, title=request.match_info["name"], live=f"device:{request.match_info['name']}",
                         body=pages.device_body(sections))

    def _point(self, request):
        return self.c.view.find_point(request.match_info["device"], request.match_info["id"])

    async def point(self, request):
        rp = self._point(request)
        if rp is None:
            return self.message(request, 404, N_("no point {device}/{id} on this gateway"),
                                device=request.match_info["device"], id=request.match_info["id"])
        sections = pages.point(self.c.view, rp, self.c.changes)
        return self.page(request, title=f"{request.match_info['device']}/{rp.id}",
                         live=f"point:{request.match_info['device']}/{rp.id}",
                         body=pages.point_body(self.c.view, rp, sections))

    async def trend(self, request):
        rp = self._point(request)
        if rp is None:
            raise web.HTTPNotFound(text="no such point\n")
        return web.Response(body=orjson.dumps(pages.trend(self.c.view, rp, self.c.history)),
                            content_type="application/json")

    async def warning_lists(self, request):
        sections = warnings.lists(self.c.view.book, self.c.view.now())
        return self.page(request, title=plain("Warnings"), live="warnings", body=warnings.lists_body(sections))

    def _alarm(self, request):
        """(alarm dict, None) or (None, error response) for /warnings/{id}."""
        book = self.c.view.book
        raw = request.match_info["id"]
        if book is None:
            return None, self.message(request, 404, N_("no alarm book in this agent"))
        try:
            return book.get(int(raw)), None
        except (ValueError, EdgeAgentError):
            return None, self.message(request, 404, N_("no warning #{id}; it may have been removed: "
                                                       "see the warnings list"), id=esc(raw)[:20])

    async def warning(self, request, *, problem=None, typed=None, status=200):
        a, err = self._alarm(request)
        if err is not None:
            return err
        s = self.session(request)
        done = {"ack": N_("acknowledged"), "dispose": N_("disposal recorded")}.get(request.query.get("done", ""))
        body = (section("alarm", warnings.detail(a, self.c.view.now())["alarm"], cls="wide")
                + warnings.forms(a, user=s.user if s else None, csrf=s.csrf if s else None,
                                 can_login=self.c.can_login, problem=problem, typed=typed, done=done))
        return self.page(request, title=f"#{a['id']}", live=f"warning:{a['id']}", body=body, status=status)

    async def config(self, request):
        return self.page(request, title=plain("Configuration"), live="", body=pages.config_body(self.c.view))

    async def live(self, request):
        key = request.query.get("page", "")
        return await self.c.hub.stream(request, key)

    async def static_file(self, request):
        got = self.static.get(request.match_info["name"])
        if got is None:
            raise web.HTTPNotFound(text="no such file\n")
        body, ctype = got
        return web.Response(body=body, content_type=ctype, headers={"Cache-Control": "no-cache"})

    # -------------------------------------------------------------- login

    def _login_form(self, request, *, status: int = 200, problem: str | None = None, **values) -> web.Response:
        nxt = request.query.get("next", "/")
        err = f'<p class="error" role="alert">{T(problem, **values)}</p>' if problem else ""
        if not self.c.can_login:
            err = f'<p class="error" role="alert">{T("writes are off: no console.password_file is configured on this gateway")}</p>'
        body = (f'<section class="login">{err}<form method="post" action="/login?next={esc(quote(nxt))}">'
                f'<h1>{T("Log in")}</h1><label for="f-user">{T("Name")}</label>'
                f'<input name="user" id="f-user" autocomplete="username" required>'
                f'<label for="f-password">{T("Password")}</label><input type="password" name="password" '
                f'id="f-password" autocomplete="current-password" required>'
                f'<button type="submit">{T("Log in")}</button></form></section>')
        return self.page(request, title=plain("Log in"), live="", body=body, status=status)

    async def login_page(self, request):
        return self._login_form(request)

    def _same_origin(self, request) -> bool:
        origin = request.headers.get("Origin")
        return origin is None or origin == f"{request.scheme}://{request.host}"

    async def login(self, request):
        if not self._same_origin(request):
            return self.message(request, 403, N_("refused: the form came from another site"))
        client = request.remote or "?"
        wait = self.c.limiter.wait(client)
        if wait > 0:
            return self._login_form(request, status=429, problem=N_("too many failed logins; try again in {s} s"),
                                    s=int(wait) + 1)
        if not self.c.can_login:
            return self._login_form(request, status=403)
        form = await request.post()
        user, password = str(form.get("user", "")).strip(), str(form.get("password", ""))
        try:
            users = self.c.read_users()
        except EdgeAgentError as exc:
            log.error("console: %s", exc)
            return self._login_form(request, status=503, problem=N_("login is not set up correctly on this "
                                                                    "gateway; the agent's log says why"))
        if not _DUMMY_HASH:
            _DUMMY_HASH.append(hash_password("not a password"))
        ok = await asyncio.to_thread(verify_password, password, users.get(user, _DUMMY_HASH[0]))
        if not ok or user not in users:
            self.c.limiter.failed(client)
            log.warning("console: failed login for %r from %s", user[:64], client)
            return self._login_form(request, status=401, problem=N_("wrong name or password"))
        self.c.limiter.succeeded(client)
        s = self.c.sessions.create(user)
        log.info("console: %s logged in from %s", user, client)
        nxt = request.query.get("next", "/")
        if not nxt.startswith("/") or nxt.startswith("//"):
            nxt = "/"
        resp = web.HTTPSeeOther(nxt)
        resp.set_cookie(COOKIE, s.token, httponly=True, samesite="Strict", path="/", secure=request.secure)
        raise resp

    async def logout(self, request):
        s, form, err = await self._writer(request)
        if err is not None:
            return err
        self.c.sessions.drop(s.token)
        resp = web.HTTPSeeOther("/")
        resp.del_cookie(COOKIE, path="/")
        raise resp

    # -------------------------------------------------------------- write

    async def _writer(self, request):
        """(session, form, None) for a write that may proceed, else (None, None, refusal)."""
        if not self._same_origin(request):
            return None, None, self.message(request, 403, N_("refused: the form came from another site"))
        s = self.session(request)
        if s is None:
            return None, None, self.message(request, 401, N_("refused: log in first (writes need a login)"))
        form = await request.post()
        if not csrf_ok(s, form.get("csrf") or request.headers.get("X-CSRF-Token")):
            log.warning("console: write without a valid CSRF token from %s (%s)", request.remote, s.user)
            return None, None, self.message(request, 403, N_("refused: the form's security token is missing or "
                                                             "old; reload the page and try again"))
        return s, form, None

    async def _write_alarm(self, request, name: str, write) -> web.StreamResponse:
        """One write to one warning: `write(session, form, alarm)` returns what the form typed (kept on errors)."""
        s, form, err = await self._writer(request)
        if err is None:
            a, err = self._alarm(request)
        if err is not None:
            return err
        typed = {k: str(form.get(k, "")) for k in ("handler", "cause", "action", "handled_at")}
        try:
            write(s, form, a, typed)
        except warnings.FormProblem as p:
            return await self.warning(request, problem=p, typed=typed, status=400)
        except EdgeAgentError as exc:
            return await self._book_refused(request, a, exc, typed)
        self.c.hub.wake()
        raise web.HTTPSeeOther(f"/warnings/{a['id']}?done={name}")

    async def ack(self, request):
        def write(s, form, a, typed):
            by = str(form.get("by") or s.user)
            self.c.view.book.ack(a["id"], by=by)
            log.info("console: warning #%s acknowledged by %s", a["id"], by)
        return await self._write_alarm(request, "ack", write)

    async def dispose(self, request):
        def write(s, form, a, typed):
            handled_at = warnings.parse_handled_at(typed["handled_at"])
            self.c.view.book.dispose(a["id"], handler=typed["handler"], cause=typed["cause"], action=typed["action"],
                                     handled_at=handled_at)
            log.info("console: warning #%s disposed of by %s (login %s)", a["id"], typed["handler"].strip(), s.user)
        return await self._write_alarm(request, "dispose", write)

    async def _book_refused(self, request, a, exc, typed=None):
        """The alarm book said no (unknown, closed, already disposed, bad text): its one line, nothing written."""
        status = getattr(exc, "status", 400)
        msg = getattr(exc, "message", None) or str(exc)
        problem = warnings.FormProblem.of(msg, getattr(msg, "template", ""), **getattr(msg, "values", {}))
        return await self.warning(request, problem=problem, typed=typed, status=status)
