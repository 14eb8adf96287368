"""The console's parts without a browser: trend history, last-change times, logins, the catalog, the CLI."""
from __future__ import annotations

import gettext
import io
import math
import os
import re
import socket
import stat
import subprocess
import sys
import urllib.request
from array import array

import pytest

from conftest import ROOT, edge_agent_cmd
from e2e import Proc, wait_for

from edge_agent import i18n
from edge_agent.console import history
from edge_agent.console.auth import (LoginLimiter, Sessions, csrf_ok, hash_password, parse_users, set_user,
                                     verify_password)
from edge_agent.console.history import Changes, History
from edge_agent.errors import EdgeAgentError

NAN = math.nan
T0 = 1_764_556_800.0          # a bucket boundary of both tiers


# ------------------------------------------------------------------ history

def test_history_keeps_min_and_max_per_bucket_and_survives_a_restart(tmp_path):
    h = History(tmp_path / "h.bin", ["A", "B"])
    for s, (a, b) in enumerate([(1.0, NAN), (3.0, NAN), (2.0, 5.0)]):
        h.sample(array("d", [a, b]), T0 + s)
    h.sample(array("d", [7.0, 6.0]), T0 + 10)          # next 10 s bucket: the first is written
    assert h.series(0, T0 + 11)["hour"] == [(T0, 1.0, 3.0), (T0 + 10, 7.0, 7.0)]
    assert h.series(1, T0 + 11)["hour"] == [(T0, 5.0, 5.0), (T0 + 10, 6.0, 6.0)]
    assert h.series(0, T0 + 11)["day"] == [(T0, 1.0, 7.0)]
    h.close()
    again = History(tmp_path / "h.bin", ["A", "B"])
    assert again.series(0, T0 + 20)["hour"] == [(T0, 1.0, 3.0), (T0 + 10, 7.0, 7.0)]
    assert again.series(0, T0 + 20)["day"] == [(T0, 1.0, 7.0)]
    assert again.series(0, T0 + 3600 + 15)["hour"] == []           # an hour later the fine ring has moved on
    again.close()


def test_history_starts_afresh_when_the_points_change_and_blanks_offline_devices(tmp_path):
    h = History(tmp_path / "h.bin", ["A", "B"])
    h.sample(array("d", [1.0, 2.0]), T0)
    h.close()
    other = History(tmp_path / "h.bin", ["A", "C"])
    assert other.series(0, T0 + 1) == {"hour": [], "day": []}
    other.sample(array("d", [4.0, 9.0]), T0 + 1, blank=[(1, 2)])     # C's device is offline: stale value
    assert other.series(0, T0 + 2)["hour"] == [(T0, 4.0, 4.0)]
    assert other.series(1, T0 + 2)["hour"] == []
    other.close()


def test_history_file_costs_8_bytes_per_point_per_slot(tmp_path):
    h = History(tmp_path / "h.bin", [f"P{i}" for i in range(100)])
    slots = history.FINE[1] + history.COARSE[1]
    assert os.path.getsize(tmp_path / "h.bin") == history.HEADER_SIZE + slots * (8 + 8 * 100)
    h.close()


def test_last_change_follows_value_and_status_not_a_nan_that_stays():
    c = Changes(3)
    c.update(array("d", [1.0, NAN, 5.0]), array("B", [0, 0, 0]), 100.0)
    assert c.last_change(0) == 100.0 and c.last_change(1) is None and c.last_change(2) == 100.0
    c.update(array("d", [1.0, NAN, 6.0]), array("B", [1, 0, 0]), 101.0)
    assert [c.last_change(i) for i in range(3)] == [101.0, None, 101.0]
    c.update(array("d", [1.0, NAN, 6.0]), array("B", [1, 0, 0]), 102.0)
    assert [c.last_change(i) for i in range(3)] == [101.0, None, 101.0]


# ------------------------------------------------------------------ logins

def test_password_hash_verifies_only_the_right_password():
    h = hash_password("correct horse")
    assert h.startswith("scrypt$") and "correct" not in h
    assert verify_password("correct horse", h)
    assert not verify_password("correct hors", h)
    assert not verify_password("x", "garbage") and not verify_password("x", "md5$1$2$3$4$5")


def test_password_file_is_written_0600_and_a_bad_line_is_named(tmp_path):
    f = tmp_path / "console.pass"
    set_user(f, "张工", "long enough")
    set_user(f, "li", "another one")
    set_user(f, "张工", "changed it")
    users = parse_users(f.read_text(encoding="utf-8"), str(f))
    assert list(users) == ["张工", "li"] and verify_password("changed it", users["张工"])
    assert stat.S_IMODE(f.stat().st_mode) == 0o600
    with pytest.raises(EdgeAgentError, match=re.escape(f"{f}:2: not a `name:scrypt$...` line")):
        parse_users("li:" + users["li"] + "\nwho cares\n", str(f))
    with pytest.raises(EdgeAgentError, match="shorter than 8"):
        set_user(f, "li", "short")
    with pytest.raises(EdgeAgentError, match="without spaces"):
        set_user(f, "a;b", "long enough")


def test_sessions_expire_when_idle_and_csrf_must_match():
    s = Sessions(idle=0.0)
    one = s.create("zhang")
    assert csrf_ok(one, one.csrf) and not csrf_ok(one, "") and not csrf_ok(one, one.csrf + "x")
    assert not csrf_ok(None, one.csrf)
    assert s.get(one.token) is None              # idle 0: gone at the next look
    keep = Sessions().create("li")
    assert keep.token != one.token and keep.csrf != one.csrf


def test_login_limiter_blocks_a_client_after_repeated_failures():
    lim = LoginLimiter(per_client=3, total=5, window=60)
    for _ in range(3):
        assert lim.wait("10.0.0.1") == 0
        lim.failed("10.0.0.1")
    assert lim.wait("10.0.0.1") > 50
    assert lim.wait("10.0.0.2") == 0
    lim.failed("10.0.0.2")
    lim.failed("10.0.0.3")
    assert lim.wait("10.0.0.4") > 50             # the total limit holds back everyone


def test_passwd_command_writes_a_hash_that_logs_in(tmp_path):
    f = tmp_path / "console.pass"
    res = subprocess.run(edge_agent_cmd("console", "passwd", "zhang", "--file", str(f), "--password-stdin"),
                         input="pit-shift-7\n", capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    assert "zhang may now log in" in res.stdout and "pit-shift-7" not in res.stdout
    assert verify_password("pit-shift-7", parse_users(f.read_text(), str(f))["zhang"])
    res = subprocess.run(edge_agent_cmd("console", "passwd", "zhang", "--password-stdin"), input="x\n",
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 2 and res.stderr.strip().count("\n") == 0 and "--file PATH" in res.stderr


# ------------------------------------------------------------------ languages

def test_catalog_covers_every_message_the_source_uses():
    assert i18n.catalog_problems() == []


def test_po_compiles_into_what_stdlib_gettext_reads():
    mo = i18n.compile_mo({"": "Content-Type: text/plain; charset=UTF-8\n", "Devices": "设备", "a\nb": "甲\n乙"})
    t = gettext.GNUTranslations(io.BytesIO(mo))
    assert t.gettext("Devices") == "设备" and t.gettext("a\nb") == "甲\n乙" and t.gettext("other") == "other"
    assert i18n.parse_po('msgid "x"\nmsgstr ""\n"多"\n"行"\n') == {"x": "多行"}


@pytest.mark.parametrize("env,lang", [({"LANG": "zh_CN.UTF-8"}, "zh_CN"), ({"LANG": "en_US.UTF-8"}, "en"),
                                      ({"LANGUAGE": "zh_CN:en", "LANG": "C"}, "zh_CN"), ({}, "en"),
                                      ({"LC_ALL": "C.UTF-8", "LANG": "zh_CN"}, "en")])
def test_language_follows_the_locale_variables(env, lang):
    assert i18n.language(env) == lang


def _cli(*args, lang: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("LANGUAGE", "LC_ALL", "LC_MESSAGES")}
    env["LANG"] = lang
    return subprocess.run(edge_agent_cmd(*args), capture_output=True, text=True, env=env, timeout=60)


def test_check_and_status_speak_chinese_under_zh_cn_and_english_otherwise():
    site = str(ROOT / "config" / "example-site.yaml")
    zh = _cli("check", "-c", site, lang="zh_CN.UTF-8")
    en = _cli("check", "-c", site, lang="C.UTF-8")
    assert zh.returncode == en.returncode == 0
    assert "正确：5 台设备，14 个测点" in zh.stdout and "可写测点：无" in zh.stdout
    assert "ok: 5 devices, 14 points" in en.stdout and "台" not in en.stdout
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]                 # nothing listens here once closed
    st = _cli("status", "--url", f"http://127.0.0.1:{port}", lang="zh_CN.UTF-8")
    assert st.returncode == 1 and "停止" in st.stdout and "无法连接" in st.stdout


# ------------------------------------------------------------------ the demo and the web server

def test_demo_prints_the_console_address_and_serves_it_in_chinese(tmp_path):
    p = Proc(["demo", "--duration", "30", "--workdir", str(tmp_path / "demo"), "--console", "127.0.0.1:0",
              "--no-open", "--mqtt", "mqtt://127.0.0.1:1", "--every", "60"], tmp_path / "demo.log",
             env={**os.environ, "LANGUAGE": "zh_CN"})
    try:
        line = wait_for(lambda: re.search(r"操作台 (http://127\.0\.0\.1:\d+)（用户名 demo，密码 (\S+)，", p.text()), 30,
                        "the console's address")
        with urllib.request.urlopen(line.group(1) + "/", timeout=10) as r:
            page = r.read().decode()
        assert "<html lang=\"zh-CN\">" in page and "示例煤矿" in page and "总览" in page
        from edge_agent.demo import DEMO_PASSWORD
        assert line.group(2) == DEMO_PASSWORD
    finally:
        assert p.stop() == 0
    assert "edge-agent 演示：已停止" in p.text()


def test_a_console_port_in_use_is_one_clear_line(tmp_path):
    import asyncio

    from edge_agent.web import WebServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]

        async def enter():
            async with WebServer(f"127.0.0.1:{port}"):
                pass
        with pytest.raises(EdgeAgentError, match=rf"^console\.listen: cannot listen on 127\.0\.0\.1:{port}: "):
            asyncio.run(enter())
    with pytest.raises(EdgeAgentError, match="console.listen: 'here' is not host:port"):
        WebServer("here")


def test_only_loopback_clients_read_without_login():
    from edge_agent.console.app import is_loopback
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("127.3.4.5")
    assert not is_loopback("10.20.1.5") and not is_loopback("192.168.1.2") and not is_loopback(None)


