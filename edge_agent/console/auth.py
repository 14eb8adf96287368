"""Who may write: password hashes from a credential file, sessions, CSRF tokens, login rate limits.

- The password file (`console.password_file`, looked up like every other
  secret: `$CREDENTIALS_DIRECTORY` first, then beside the site file) holds one
  `name:scrypt$N$r$p$salt$hash` line per person; `edge-agent console passwd NAME`
  writes it.  It is re-read at every login, so adding a person needs no restart.
- A session is a random token in an HttpOnly, SameSite=Strict cookie; it ends
  after IDLE seconds without a request, or at logout.  Each session has its own
  CSRF token, which every form carries and every write must echo.
- Failed logins are limited per client address (MAX_FAILURES per WINDOW
  seconds) and in total (MAX_FAILURES_ALL), so guessing is slow and scrypt
  cannot be used to burn the agent's CPU.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import re
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from edge_agent.errors import EdgeAgentError

log = logging.getLogger("edge_agent.console")

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
IDLE = 8 * 3600.0                 # a shift
MAX_FAILURES, WINDOW = 5, 300.0
MAX_FAILURES_ALL = 30
COOKIE = "ea_session"
NAME = re.compile(r"[^\s:;~|\x00-\x1f]{1,64}")


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=32)
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return f"scrypt${n}${r}${p}${b64(salt)}${b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = encoded.split("$")
        if scheme != "scrypt":
            return False
        want = base64.b64decode(digest)
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                             dklen=len(want), maxmem=256 * 1024 * 1024)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


def parse_users(text: str, where: str) -> dict[str, str]:
    """name -> hash from the password file's text; a malformed line raises naming `where:line`."""
    users = {}
    for no, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, encoded = line.partition(":")
        if not sep or not NAME.fullmatch(name) or not encoded.startswith("scrypt$"):
            raise EdgeAgentError(f"{where}:{no}: not a `name:scrypt$...` line; make it with "
                                 "`edge-agent console passwd NAME`")
        users[name] = encoded
    return users


def set_user(path: Path, name: str, password: str) -> None:
    """Add or replace `name` in the password file (created 0600), atomically."""
    if not NAME.fullmatch(name):
        raise EdgeAgentError(f"console passwd: {name!r}: a name is 1-64 characters without spaces, ':', ';', "
                             "'~' or '|'")
    if len(password) < 8:
        raise EdgeAgentError("console passwd: the password is shorter than 8 characters; choose a longer one")
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    users = parse_users(text, str(path))
    users[name] = hash_password(password)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write("".join(f"{u}:{h}\n" for u, h in users.items()))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


@dataclass
class Session:
    token: str
    user: str
    csrf: str
    seen: float = field(default_factory=time.monotonic)


class Sessions:
    """Sessions in memory (a restart logs everyone out, by design)."""

    def __init__(self, idle: float = IDLE):
        self.idle = idle
        self._by_token: dict[str, Session] = {}

    def create(self, user: str) -> Session:
        self._expire()
        s = Session(secrets.token_urlsafe(32), user, secrets.token_urlsafe(32))
        self._by_token[s.token] = s
        return s

    def get(self, token: str | None) -> Session | None:
        s = self._by_token.get(token or "")
        if s is None:
            return None
        now = time.monotonic()
        if now - s.seen > self.idle:
            del self._by_token[s.token]
            return None
        s.seen = now
        return s

    def drop(self, token: str | None) -> None:
        self._by_token.pop(token or "", None)

    def _expire(self) -> None:
        now = time.monotonic()
        for t in [t for t, s in self._by_token.items() if now - s.seen > self.idle]:
            del self._by_token[t]


def csrf_ok(session: Session | None, sent: str | None) -> bool:
    return session is not None and bool(sent) and hmac.compare_digest(session.csrf.encode(), str(sent).encode())


class LoginLimiter:
    """Failed logins per client address and in total, over a sliding window."""

    def __init__(self, per_client: int = MAX_FAILURES, total: int = MAX_FAILURES_ALL, window: float = WINDOW):
        self.per_client, self.total, self.window = per_client, total, window
        self._by_client: dict[str, deque] = {}
        self._all: deque = deque()

    def _trim(self, q: deque, now: float) -> None:
        while q and now - q[0] > self.window:
            q.popleft()

    def wait(self, client: str) -> float:
        """Seconds this client must wait before the next try (0: may try now)."""
        now = time.monotonic()
        q = self._by_client.get(client, deque())
        self._trim(q, now)
        self._trim(self._all, now)
        waits = [0.0]
        if len(q) >= self.per_client:
            waits.append(q[0] + self.window - now)
        if len(self._all) >= self.total:
            waits.append(self._all[0] + self.window - now)
        return max(waits)

    def failed(self, client: str) -> None:
        now = time.monotonic()
        self._by_client.setdefault(client, deque()).append(now)
        self._all.append(now)
        if len(self._by_client) > 10000:      # bounded: forget the quietest addresses
            for c in list(self._by_client)[:5000]:
                del self._by_client[c]

    def succeeded(self, client: str) -> None:
        self._by_client.pop(client, None)
