"""Several monitoring systems on one gateway (`systems:`): folders, uploads, codes, routes, checks."""
from __future__ import annotations

import asyncio
import time

import yaml
from pathlib import Path

from edge_agent.agent import Agent
from edge_agent.config import load_site
from edge_agent.forward.ftp import pending_files
from e2e import agent_running, make_site
from test_config import check
from test_ftp import PASSWORD, USER, servers  # noqa: F401  (the fixture)
from systems_reader import parse_file


def two_systems(tmp_path, sim, upload_port: int | None = None, **extra) -> "Path":
    """The demo site as two systems: the gas substation is safety monitoring (01), belt and bin are
    their own system (02) of the same profile."""
    path = make_site(tmp_path, sim, None)
    data = yaml.safe_load(path.read_text("utf-8"))
    data["systems"] = [{"name": "aqjk", "kind": "safety-monitoring", "system_code": "01", "realtime_every": "2s"},
                       {"name": "sbjk", "kind": "safety-monitoring", "system_code": "02", "system_name": "设备监测",
                        "realtime_every": "3s", **extra}]
    for dev in data["devices"]:
        dev["system"] = "aqjk" if dev["name"].startswith("gas") else "sbjk"
    if upload_port is not None:
        (tmp_path / "ftp.pass").write_text(PASSWORD)
        data["forward"]["files"].update(upload=f"ftp://{USER}@127.0.0.1:{upload_port}/in",
                                        password_file=str(tmp_path / "ftp.pass"))
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), "utf-8")
    return path


def test_each_system_writes_its_own_folder_and_uploads_to_its_own_target(tmp_path, sim, servers):  # noqa: F811
    outbox = tmp_path / "outbox"
    srv = servers(tmp_path / "server", outbox)
    site = load_site(two_systems(tmp_path, sim, srv.port))
    assert [s.name for s in site.resolved_systems] == ["aqjk", "sbjk"]

    async def scenario():
        agent = Agent(site)
        async with agent_running(agent) as run:
            deadline = time.monotonic() + 40
            while not all(len(list((srv.root / "in" / d).glob("*_CDSS_*.txt"))) >= 2 for d in ("aqjk", "sbjk")):
                assert time.monotonic() < deadline and not run.done()
                await asyncio.sleep(0.1)
            assert set(agent.buffer.sinks) == {"files.aqjk", "files.sbjk"}
            stopping.append(time.time())

    stopping: list[float] = []
    asyncio.run(scenario())
    site_points = {"aqjk": {p.id for d in site.devices if d.system == "aqjk" for p in d.points},
                   "sbjk": {p.id for d in site.devices if d.system == "sbjk" for p in d.points}}
    for name, code in (("aqjk", "01"), ("sbjk", "02")):
        remote = srv.root / "in" / name
        cddy = sorted(remote.glob("*_CDDY_*.txt"))
        assert cddy, name
        header, records = parse_file(cddy[0])
        assert header[3] == ("安全监控系统" if name == "aqjk" else "设备监测")
        assert records and all(r[1] == code and r[0][12:14] == code for r in records)
        # only this system's points: original numbers are the points' ids
        ids = {r[0][20:] for r in records}
        assert ids and not ids & site_points["aqjk" if name == "sbjk" else "sbjk"], (name, ids)
        for f in remote.glob("*_CDSS_*.txt"):
            assert all(r[0][12:14] == code for r in parse_file(f)[1])
    # the uploads kept up: what still waits in an outbox is only what the last moments wrote (a file written
    # as the agent stopped waits there for the next start; nothing is lost)
    for name in ("aqjk", "sbjk"):
        late = [p.name for p in pending_files(outbox / name) if p.stat().st_mtime < stopping[0] - 2.0]
        assert not late, (name, late)


def test_system_problems_name_file_line_and_field(tmp_path, sim, capsys):
    path = two_systems(tmp_path, sim)
    good = path.read_text("utf-8")
    cases = [
        (lambda d: d["devices"][1].update(system="nope"), "devices[belt-1].system", "unknown system 'nope'"),
        (lambda d: d["devices"][1].pop("system"), "devices[belt-1].system", "belongs to no system"),
        (lambda d: d["systems"][1].update(kind="water-hazzard"), "systems[sbjk].kind", "cannot be used"),
        (lambda d: d["systems"][1].update(system_code="01"), "systems[sbjk].system_code", "used twice"),
        (lambda d: d["systems"][1].update(system_code=5), "systems[sbjk].system_code", "in quotes"),
        (lambda d: (d.pop("systems"), d["devices"][0]), "devices[gas-substation-1].system", "no `systems:`"),
        (lambda d: (d["forward"].pop("files"), d["systems"][1].update(upload="ftp://gw@127.0.0.1/x")),
         "systems[sbjk].upload", "no `forward.files`"),
    ]
    for change, field, reason in cases:
        data = yaml.safe_load(good)
        change(data)
        code, out = check(tmp_path, yaml.safe_dump(data, allow_unicode=True, sort_keys=False), capsys)
        assert code == 1, (field, out)
        line = next((ln for ln in out.splitlines() if field in ln and reason in ln), None)
        assert line is not None, (field, reason, out)
        assert ".yaml:" in line.split(field)[0], line          # file:line: field: reason


def test_instrument_missing_a_member_and_unknown_field_are_one_line_each(tmp_path, capsys):
    from pathlib import Path
    src = (Path(__file__).parent / "golden" / "systems" / "site.yaml").read_text("utf-8")
    bad = src.replace("""      - {id: "00000302", sensor: "0010", address: hr:2, type: float32, location: 3号长观孔, instrument: CGK3,
         role: temperature}
""", "")
    code, out = check(tmp_path, bad, capsys)
    assert code == 1
    assert any("instrument CGK3 lacks member(s) temperature" in ln and ".yaml:" in ln for ln in out.splitlines()), out
    (tmp_path / "wh.yaml").write_text("extends: water-hazard\nrecords:\n  CGKCDSS: [point_code, depth, time]\n",
                                      "utf-8")
    code, out = check(tmp_path, src.replace("kind: water-hazard", "kind: wh.yaml"), capsys)
    assert code == 1
    assert any("records.CGKCDSS: unknown field(s) depth" in ln for ln in out.splitlines()), out


def test_check_and_check_receiver_pass_a_site_with_every_system(tmp_path, capsys):
    from pathlib import Path
    from edge_agent.cli import main
    src = (Path(__file__).parent / "golden" / "systems" / "site.yaml").read_text("utf-8")
    code, out = check(tmp_path, src, capsys)
    assert code == 0, out
    assert "Traceback" not in out
    code = main(["check", "-c", str(tmp_path / "site.yaml"), "--receiver"])
    out = capsys.readouterr()
    assert "Traceback" not in out.err + out.out, out


def test_mqtt_topics_carry_each_system_and_type(tmp_path, sim, mosquitto):
    from e2e import Subscriber
    path = two_systems(tmp_path, sim)
    data = yaml.safe_load(path.read_text("utf-8"))
    data["forward"]["mqtt"] = {"url": f"mqtt://127.0.0.1:{mosquitto.port}", "topic_prefix": "mine"}
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), "utf-8")
    site = load_site(path)
    sub = Subscriber(mosquitto.port).start()

    async def scenario():
        agent = Agent(site)
        async with agent_running(agent) as run:
            deadline = time.monotonic() + 40
            want = {f"mine/140211001234/gw-demo/{s}/{t}" for s in ("aqjk", "sbjk") for t in ("CDDY", "CDSS")}
            while not want <= {t for t, _, _ in list(sub.messages)}:
                assert time.monotonic() < deadline and not run.done(), sorted({t for t, _, _ in sub.messages})
                await asyncio.sleep(0.1)

    try:
        asyncio.run(scenario())
    finally:
        sub.stop()
    # each system's definitions are retained: a subscriber that comes later still gets both
    late = Subscriber(mosquitto.port).start()
    try:
        deadline = time.monotonic() + 10
        wanted = {f"mine/140211001234/gw-demo/{s}/CDDY" for s in ("aqjk", "sbjk")}
        while not wanted <= {t for t, _, r in list(late.messages) if r}:
            assert time.monotonic() < deadline, sorted({(t, r) for t, _, r in late.messages})
            time.sleep(0.05)
    finally:
        late.stop()
    for topic, body, retained in sub.messages:
        parts = topic.split("/")
        if len(parts) == 5 and isinstance(body, dict) and "records" in body:
            assert (body["system"], body["type"]) == (parts[3], parts[4]), topic
            code = "01" if parts[3] == "aqjk" else "02"
            assert all(r["point_code"][12:14] == code for r in body["records"] if "point_code" in r), topic


def test_a_point_no_type_carries_and_a_cadence_out_of_bounds_are_refused(tmp_path, capsys):
    from pathlib import Path
    src = (Path(__file__).parent / "golden" / "systems" / "site.yaml").read_text("utf-8")
    data = yaml.safe_load(src)
    water = next(d for d in data["devices"] if d["name"] == "borehole-3")
    water["points"].append({"id": "00000309", "sensor": "0001", "address": "hr:8", "type": "float32"})
    next(s for s in data["systems"] if s["name"] == "wkk")["realtime_every"] = "5m"
    code, out = check(tmp_path, yaml.safe_dump(data, allow_unicode=True, sort_keys=False), capsys)
    assert code == 1
    lines = out.splitlines()
    assert any("points[00000309].sensor" in ln and "no record type of profile water-hazard carries it" in ln
               and ".yaml:" in ln for ln in lines), out
    assert any("systems[wkk].realtime_every" in ln and "outside what profile tailings allows (10m .. 24h)" in ln
               for ln in lines), out


def test_a_file_format_registered_from_outside_gets_the_contracted_arguments(tmp_path):
    """The seam of CONTRACT-systems.md §4: a profile naming `files.format` has its rows rendered by that
    format's render(profile, site, type, when, records, seq=) -> (name, bytes); the sink writes them."""
    import datetime as dt
    from edge_agent import registry
    from edge_agent.buffer import Buffer
    from edge_agent.forward.files import FileSink
    from edge_agent.forward.files_spec import FilesCfg
    from edge_agent.registry import FileFormat, register_file_format

    seen = []

    def render(profile, site, type, when, records, *, seq):
        seen.append((profile.name, site.site.system_code, type, when, records, seq))
        return f"{site.site.mine_code}_{type}_{when:%Y%m%d%H%M%S}_{seq % 10000:04d}.lines", \
            "\n".join(f"{r['point_code']}={r['value']}" for r in records).encode()

    register_file_format(FileFormat("lines-test", render, lambda files: [] if "name" in files else [("name", "x")]))
    try:
        (tmp_path / "lines.yaml").write_text("extends: safety-monitoring\nname: lines\nfiles: {format: lines-test}\n",
                                             "utf-8")
        src = (Path(__file__).parent / "golden" / "systems" / "site.yaml").read_text("utf-8")
        (tmp_path / "site.yaml").write_text(src.replace("kind: non-coal", "kind: lines.yaml"), "utf-8")
        site = load_site(tmp_path / "site.yaml")
        nc = next(s for s in site.resolved_systems if s.name == "nc")
        buf = Buffer(tmp_path / "buffer.sqlite", sinks=["files.nc"])
        body = b'[{"point_code":"14021100123409MN000400000001","value":12}]'
        buf.append([("nc/CDSS", buf.bit("files.nc"), 1795917620.0, body)])
        sink = FileSink(FilesCfg(dir=str(tmp_path / "out")), nc.site, nc.profile, buf, asyncio.Event(),
                        tmp_path / "out", name="files.nc")
        asyncio.run(sink.drain())
        buf.close()
    finally:
        registry.unregister("lines-test")
    (name, code, typ, when, records, seq), = seen
    assert (name, code, typ, records) == ("lines", "09", "CDSS", [{"point_code": "14021100123409MN000400000001",
                                                                  "value": 12}])
    assert when == dt.datetime(2026, 11, 29, 10, 0, 20, tzinfo=when.tzinfo) and when.tzinfo is not None
    assert (tmp_path / "out" / f"140211001234_CDSS_20261129100020_{seq:04d}.lines").read_bytes() == \
        b"14021100123409MN000400000001=12"


def test_buffer_export_and_purge_by_type_reach_every_systems_rows(tmp_path):
    from edge_agent.buffer import Buffer, tools
    from edge_agent.profile.tables import load_profile
    load_profile("water-hazard")            # registers its record types (CGKCDSS), as loading a site does
    path = tmp_path / "buffer.sqlite"
    buf = Buffer(path, sinks=["files.aqjk"])
    bit = buf.bit("files.aqjk")
    buf.append([("aqjk/CDSS", bit, 1.0, b"[]"), ("sbjk/CDSS", bit, 2.0, b"[]"), ("shfz/CGKCDSS", bit, 3.0, b"[]"),
                ("CDSS", bit, 4.0, b"[]")])
    buf.close()
    assert set(tools.count(path, ["CDSS"])) == {"CDSS", "aqjk/CDSS", "sbjk/CDSS"}
    assert set(tools.count(path, ["sbjk/CDSS"])) == {"sbjk/CDSS"}
    assert set(tools.count(path, ["CGKCDSS", "FZSS"])) == {"shfz/CGKCDSS"}
    tools.purge(path, ["shfz/CGKCDSS"])
    assert tools.count(path, ["CGKCDSS"]) == {} and set(tools.count(path, ["CDSS"])) == {"CDSS", "aqjk/CDSS", "sbjk/CDSS"}


def test_a_reload_keeps_each_systems_rows_in_its_own_folder(tmp_path, sim):
    path = two_systems(tmp_path, sim)
    site = load_site(path)
    data = yaml.safe_load(path.read_text("utf-8"))
    next(e for e in data["equipment"] if e["name"] == "main-bin")["location"] = "重新加载后"
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), "utf-8")
    outbox = tmp_path / "outbox"

    def cddy(system):
        return [parse_file(f)[1] for f in sorted((outbox / system).glob("*_CDDY_*.txt"))]

    async def scenario():
        agent = Agent(site)
        async with agent_running(agent) as run:
            deadline = time.monotonic() + 30
            while not (cddy("aqjk") and cddy("sbjk")):
                assert time.monotonic() < deadline and not run.done()
                await asyncio.sleep(0.1)
            await agent.reload(load_site(changed))
            assert agent.reloads == 1
            while len(cddy("sbjk")) < 2:
                assert time.monotonic() < deadline and not run.done()
                await asyncio.sleep(0.1)

    asyncio.run(scenario())
    after = cddy("sbjk")[-1]
    assert any(r[18] == "重新加载后" for r in after) and all(r[1] == "02" for r in after)
    assert all(r[1] == "01" and r[18] != "重新加载后" for f in cddy("aqjk") for r in f)
