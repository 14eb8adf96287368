"""`edge-agent console passwd NAME`: add or change a person who may write in the console.

    edge-agent console passwd zhang -c /etc/edge-agent/site.yaml     # the file console.password_file names
    edge-agent console passwd zhang --file /etc/edge-agent/console.pass
    printf '%s\\n' "$PW" | edge-agent console passwd zhang --file console.pass --password-stdin

The file keeps one `name:scrypt$...` line per person (mode 0600); the agent
re-reads it at every login, so no restart is needed.
"""
from __future__ import annotations

import getpass
import sys
from pathlib import Path

from edge_agent.errors import EdgeAgentError
from edge_agent.i18n import _


def _target(args) -> Path:
    if args.file:
        return Path(args.file)
    if not args.config:
        raise EdgeAgentError(_("console passwd: give -c SITE.yaml (its console.password_file) or --file PATH"))
    from edge_agent.config import load_site
    from edge_agent.secrets import resolve
    site = load_site(args.config)
    if site.console is None or not site.console.password_file:
        raise EdgeAgentError(_("{file}: console.password_file: not set; add it to the site file's console: "
                               "section, or give --file PATH").format(file=args.config))
    return resolve(site.console.password_file, site)


def cmd_passwd(args) -> int:
    from edge_agent.console.auth import set_user
    path = _target(args)
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass(_("password for {name}: ").format(name=args.name))
        if getpass.getpass(_("again: ")) != password:
            raise EdgeAgentError(_("console passwd: the two passwords differ; nothing changed"))
    set_user(path, args.name, password)
    print(_("{file}: {name} may now log in to the console (mode 0600; no restart needed)").format(
        file=path, name=args.name))
    return 0


def register(sub) -> None:
    c = sub.add_parser("console", help="the operator console: people who may acknowledge and dispose of warnings")
    csub = c.add_subparsers(dest="console_command", required=True, metavar="COMMAND")
    p = csub.add_parser("passwd", help="add a person or change their password (scrypt hash in the password file)")
    p.add_argument("name", help="login name (shown as who acknowledged or handled a warning)")
    p.add_argument("-c", "--config", metavar="SITE.yaml", help="write the file its console.password_file names")
    p.add_argument("--file", metavar="PATH", help="write this password file instead")
    p.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    p.set_defaults(func=cmd_passwd)
