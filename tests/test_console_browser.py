"""The operator console in a real browser: headless Chromium (Debian's) against a running agent.

One agent (console on a free port, simulated mine with frequent methane
excursions, a real mosquitto, real spec files) serves every test in this
module; each test gets a fresh browser context (no cookies).  Screenshots go
to build/screenshots/ (the README's copies live in docs/).
"""
from __future__ import annotations

import math
import random
import re
import time
from array import array

import pytest
from playwright.sync_api import expect, sync_playwright

from conftest import ROOT, Mosquitto, free_port
from console_harness import RunningAgent, launch_browser
from e2e import Subscriber, make_site, wait_for

from edge_agent.config import load_site
from edge_agent.derived import Derived
from edge_agent.console.auth import set_user
from edge_agent.console.history import History
from edge_agent.drivers.sim.dynamics import SCENARIOS, DeviceModel
from edge_agent.points import Catalog
from edge_agent.profile import load_profile

USER, PASSWORD = "zhang", "pit-shift-7"
SHOTS = ROOT / "build" / "screenshots"


def seed_history(site, minutes: int = 55) -> None:
    """An hour of trend before the run, from the simulator's own models (the chart has something to show)."""
    catalog = Catalog(site, load_profile(site.profile, base=site.base_dir))
    catalog.add_derived(Derived(site, catalog).points)          # as the agent builds it
    path = site.path(site.buffer.path).parent / "console-history.bin"
    hist = History(path, [rp.code for rp in catalog.points])
    models = [DeviceModel(d, random.Random(3), SCENARIOS["normal"]) for d in site.devices]
    now = time.time()
    values = array("d", [math.nan]) * len(catalog)
    for s in range(minutes * 60, 5, -1):
        t = now - s
        for di, model in enumerate(models):
            got = model.values(t)
            for rp in catalog.by_device[di]:
                values[rp.index] = got.get(rp.id, math.nan)
        hist.sample(values, t)
    hist.close()


@pytest.fixture(scope="module")
def mine(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("console")
    broker = Mosquitto(tmp).start()
    pw = tmp / "console.pass"
    set_user(pw, USER, PASSWORD)
    sim_port = free_port()
    site = load_site(make_site(tmp, sim_port, broker.url, console={"listen": "127.0.0.1:0",
                                                                   "password_file": "console.pass"}))
    seed_history(site)
    sub = Subscriber(broker.port, "mine/140211001234/gw-demo/#").start()
    running = RunningAgent(site, scenario="gas-alarm", sim_port=sim_port).start()
    running.tmp, running.broker, running.sub = tmp, broker, sub
    yield running
    running.stop()
    sub.stop()
    broker.stop()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = launch_browser(p)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    ctx = browser.new_context(viewport={"width": 1360, "height": 900}, locale="zh-CN")
    pg = ctx.new_page()
    yield pg
    ctx.close()


def login(page, mine, next_path: str = "/") -> None:
    page.goto(f"{mine.url}/login?next={next_path}")
    page.fill("#f-user", USER)
    page.fill("#f-password", PASSWORD)
    page.click("form button[type=submit]")
    expect(page.locator("header .user")).to_have_text(USER)


def an_alarm(mine, timeout: float = 30) -> dict:
    """A warning the scenario raised that nobody has disposed of yet."""
    got = wait_for(lambda: [a for a in mine.call(mine.book.list, "all") if a["disposal"] is None], timeout,
                   "a warning waiting for disposal in the alarm book", interval=0.2)
    return got[0]


def recorded(mine, alarm_id: int) -> tuple:
    """What the book holds of an operator's writes to one warning."""
    a = mine.call(mine.book.get, alarm_id)
    return a["acked_at"], a["acked_by"], a["disposal"]


def test_overview_loads_with_chinese_first(page, mine):
    page.goto(mine.url + "/")
    expect(page.locator("[data-section=devices] h2 .zh")).to_have_text("设备")
    expect(page.locator("[data-section=devices] h2 .en")).to_have_text("Devices")
    rows = page.locator("[data-section=devices] tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.first).to_contain_text("gas-substation-1")
    expect(page.locator("[data-section=health]")).to_contain_text("运行正常")
    expect(page.locator("#conn")).to_have_attribute("data-state", "on")      # the live stream is connected
    # no request left the machine: every asset came from the agent
    assert page.evaluate("[...performance.getEntriesByType('resource')].every(e => e.name.startsWith(location.origin))")


def test_live_value_changes_on_screen_without_reload(page, mine):
    page.goto(mine.url + "/device/gas-substation-1")
    page.evaluate("window.__same_page = true")
    cell = page.locator('tr[data-point="T1"] td.value')
    first = cell.inner_text()
    page.wait_for_function("(first) => document.querySelector('tr[data-point=\"T1\"] td.value').innerText !== first",
                           arg=first, timeout=15000)
    assert page.evaluate("window.__same_page") is True      # updated in place, not reloaded


def test_scenario_warning_appears_within_seconds_with_its_colour(page, mine):
    page.goto(mine.url + "/")
    page.evaluate("window.__same_page = true")
    badge = page.locator("[data-section=warnings] table.alarms tbody tr .lv").first
    expect(badge).to_be_visible(timeout=20000)
    level = badge.get_attribute("data-level")
    assert level in ("orange", "red")
    colour = badge.evaluate("e => getComputedStyle(e).backgroundColor")
    assert colour == {"orange": "rgb(239, 108, 0)", "red": "rgb(198, 40, 40)"}[level]
    tile = page.locator(f"[data-section=warnings] .tile.lv-{level} b")
    assert int(tile.inner_text()) >= 1
    assert page.evaluate("window.__same_page") is True
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "console-overview.png"), full_page=True)


def test_point_trend_draws_history_live_samples_and_thresholds(page, mine):
    page.goto(mine.url + "/point/gas-substation-1/T1")
    svg = page.locator("#chart svg")
    expect(svg).to_be_visible()
    page.wait_for_function("() => { const s = document.querySelector('#chart svg');"
                           " return s && +s.dataset.buckets > 200 && +s.dataset.live >= 3; }", timeout=15000)
    expect(page.locator("#chart line.threshold")).to_have_count(2)          # alarm.high 1.0, cutoff.high 1.5
    expect(page.locator("#chart polygon.band")).to_have_count(1)
    page.click(".tabs button[data-span=day]")
    page.wait_for_function("() => +document.querySelector('#chart svg').dataset.buckets > 20")
    page.click(".tabs button[data-span=hour]")
    page.wait_for_function("() => +document.querySelector('#chart svg').dataset.buckets > 200")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "console-trend.png"), full_page=True)


@pytest.mark.parametrize("field,text,shown", [
    ("cause", "fan; stopped", "cause：含有 ';'"),
    ("action", "x" * 201, "最多 200 个"),
    ("handler", "", "handler：为空"),
])
def test_bad_form_input_gets_a_clear_message_and_nothing_is_written(page, mine, field, text, shown):
    a = an_alarm(mine)
    before = recorded(mine, a["id"])
    login(page, mine, f"/warnings/{a['id']}")
    if page.locator("form.dispose").count() == 0:
        pytest.fail("the warning was disposed of already; pick another")
    page.fill("#f-handler", USER)
    page.fill("#f-cause", "cause")
    page.fill("#f-action", "action")
    page.fill(f"#f-{field}", text)
    page.click("form.dispose button[type=submit]")
    expect(page.locator("p.error")).to_contain_text(shown)
    expect(page.locator(f"#f-{field}")).to_have_attribute("aria-invalid", "true")
    assert page.input_value("#f-cause") == (text if field == "cause" else "cause")     # what was typed is kept
    assert recorded(mine, a["id"]) == before


def test_unknown_warning_gets_a_clear_message(page, mine):
    login(page, mine)
    resp = page.goto(mine.url + "/warnings/99999")
    assert resp.status == 404
    expect(page.locator("p.error")).to_contain_text("没有预警 #99999")


def test_write_without_login_is_refused(page, mine):
    a = an_alarm(mine)
    before = recorded(mine, a["id"])
    page.goto(f"{mine.url}/warnings/{a['id']}")
    expect(page.locator("main")).to_contain_text("登录后可确认或处置此预警")
    assert page.locator("form.dispose").count() == 0
    status = page.evaluate("""async (id) => (await fetch('/warnings/' + id + '/dispose', {method: 'POST',
        body: new URLSearchParams({handler: 'x', cause: 'y', action: 'z', csrf: 'guess'})})).status""", a["id"])
    assert status == 401
    assert recorded(mine, a["id"]) == before


def test_post_without_csrf_token_is_refused(page, mine):
    a = an_alarm(mine)
    before = recorded(mine, a["id"])
    login(page, mine, f"/warnings/{a['id']}")
    cookie = next(c for c in page.context.cookies() if c["name"] == "ea_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    post = """async ([id, csrf]) => (await fetch('/warnings/' + id + '/ack', {method: 'POST',
        body: new URLSearchParams(csrf ? {by: 'zhang', csrf} : {by: 'zhang'})})).status"""
    assert page.evaluate(post, [a["id"], None]) == 403
    assert page.evaluate(post, [a["id"], "not-the-token"]) == 403
    assert recorded(mine, a["id"]) == before
    token = page.get_attribute("meta[name=csrf]", "content")
    assert page.evaluate(post, [a["id"], token]) == 200                  # the same post with the token goes through
    assert recorded(mine, a["id"])[1] == USER


def test_login_is_rate_limited(browser, mine):
    ctx = browser.new_context()
    page = ctx.new_page()
    try:
        for _ in range(5):
            page.goto(mine.url + "/login")
            page.fill("#f-user", USER)
            page.fill("#f-password", "wrong-password")
            page.click("form button[type=submit]")
            expect(page.locator("p.error")).to_contain_text("用户名或密码错误")
        page.goto(mine.url + "/login")
        page.fill("#f-user", USER)
        page.fill("#f-password", PASSWORD)                  # right, but too late
        with page.expect_response(lambda r: r.request.method == "POST") as got:
            page.click("form button[type=submit]")
        assert got.value.status == 429
        expect(page.locator("p.error")).to_contain_text("登录失败次数过多")
    finally:
        ctx.close()
        mine.call(mine.agent.console.limiter.succeeded, "127.0.0.1")      # the other tests log in from here


def test_configuration_page_shows_the_effective_site_without_secrets(page, mine):
    page.goto(mine.url + "/config")
    text = page.locator("pre.config").inner_text()
    assert "gateway: gw-demo" in text and "password_file: console.pass" in text
    assert "scrypt$" not in text and PASSWORD not in text


def _ycbj_rows(path) -> list[list[str]]:
    """An independent reading of a YCBJ spec file: header~record~...~|| with ';' fields."""
    text = path.read_bytes().decode("utf-8")
    return [seg.split(";") for seg in text[:-2].split("~")[1:-1]]


def test_disposal_through_the_form_reaches_mqtt_and_the_spec_files(page, mine):
    a = an_alarm(mine)
    cause, action = "局部通风机停风 ventilation fan stopped", "恢复通风，撤出人员 restored ventilation"
    login(page, mine, f"/warnings/{a['id']}")
    expect(page).to_have_url(re.compile(f"/warnings/{a['id']}$"))
    page.fill("#f-cause", cause)
    page.fill("#f-action", action)
    page.click("form.dispose button[type=submit]")
    expect(page.locator("p.done")).to_contain_text("处置已记录")
    expect(page.locator("[data-k=disposal]")).to_contain_text("恢复通风")
    disposal = mine.call(mine.book.get, a["id"])["disposal"]
    assert (disposal["handler"], disposal["cause"], disposal["action"]) == (USER, cause, action)
    # on the uplink: the MQTT disposal message, durable with seq, and the YCBJ again with cause and measures
    msgs = wait_for(lambda: [b for t, b, _ in mine.sub.messages if t.endswith("/disposal")
                             and any(r["id"] == a["id"] for r in b["records"])], 20, "the disposal on MQTT")
    rec = next(r for r in msgs[0]["records"] if r["id"] == a["id"])
    assert isinstance(msgs[0]["seq"], int) and rec["disposal"]["handler"] == USER and rec["state"] == "disposed"

    def filled():
        return [r for p in sorted((mine.tmp / "outbox").glob("140211001234_YCBJ_*.txt")) for r in _ycbj_rows(p)
                if len(r) > 15 and r[12] == cause]
    row = wait_for(filled, 20, "a YCBJ spec file with the disposal")[0]
    assert row[0] == a["point_code"] and row[13] == action and row[15] == USER and row[14]
