"""An independent receiver-side check of safety-monitoring text files, for the tests.

Written from the documents (PROFILE.md: file envelope, field orders, codes;
SYSTEMS.md, "Receiver rules": empty fields per kind, texts, lengths, code
table), not from the agent: it imports nothing of edge_agent, and every fact
it uses is written out below, so a mistake in the agent's rule module
(edge_agent/profile/receiver.py), its profile or its sensor table is caught
here and not repeated.  It knows the default profile's layout only.

    problems = check_dir(outbox)        # [(rule, severity, where, what), ...]

Rule ids are the agent's, so the tests can compare the two checkers finding
by finding.  Severity: "break" (a receiver rejects the value or shows it as
unknown) or "risk" (a weaker sign).
"""
from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

# --- the facts, from the documents -------------------------------------------------------------

NAME = re.compile(r"(\d{12})_([A-Z]+)_(\d{14})\.txt")
HEADER_LEN = {"CDDY": 7, "CDSS": 3, "TJSJ": 3, "YCBJ": 3, "FZDY": 3, "FZSS": 3}
RECORD_LEN = {"CDDY": (24,), "CDSS": (7,), "TJSJ": (12,), "YCBJ": (17,), "FZDY": (5, 6), "FZSS": (4,)}
# positions (0-based) in the records, PROFILE.md field orders
CDDY_LIMITS = range(5, 16)      # unit, range high/low, the 8 alarm/cut-off levels
CDDY_NUMBERS = list(range(6, 16)) + [19, 20, 21]
CDDY_XYZ = (19, 20, 21)
NUMBERS = {"CDSS": (3, 5), "TJSJ": (6, 8, 10), "YCBJ": (7, 9, 11), "FZDY": (2, 3, 4), "FZSS": (1, 2)}
TIMES = {"CDDY": (23,), "CDSS": (6,), "TJSJ": (4, 5, 7, 9, 11), "YCBJ": (5, 6, 8, 10, 16), "FZDY": (5,),
         "FZSS": (3,)}
NAMED = {"CDSS": 1, "TJSJ": 1, "YCBJ": 1}        # position of the sensor type name
SUBSTATION = {"CDDY": 2, "FZDY": 0, "FZSS": 0}
ANOMALIES = {f"{i:03d}" for i in range(1, 11)}
STATUS_BITS = (1, 2, 4, 8, 16, 32, 64, 128)
KIND_OF_FAMILY = {"00": ("MN", "LJ"), "10": ("KG",), "30": ("LJ",), "40": ("DT",)}

# The code table as receivers know it: a data dictionary of the standard (appendix B as one ingest
# project has it), with the same names in a platform's enum except where noted in config/sensors.csv.
NAMES = dict(zip(
    [f"{i:04d}" for i in range(1, 54)],
    "环境瓦斯 风速 环境温度 一氧化碳 风压 负压 水池水位 煤位 硫化氢 水温度 高低浓度瓦斯 氧气 二氧化碳 粉尘 电压 频率 "
    "电流 湿度 风量 顶板离层位移 坝体位移 管道瓦斯 管道温度 水质 管道压力 轴承温度 噪声 电机温度 水库水位 浸润线 降雨量 "
    "液压压力 围岩应力 钻孔应力 锚杆应力 混合瓦斯流量 纯瓦斯流量 管道一氧化碳 氢气 管道流量 二氧化氮 二氧化硫 激光甲烷 "
    "氨气 氮气 乙烯 乙烷 压强 液位 物位 开度 高度 流量".split()))
NAMES.update(zip([f"{i}" for i in range(1001, 1016)],
                 "局部通风机 风门 风筒状态 设备开停 开关 风向 煤仓空满 烟雾 断电器 主通风机 馈电器 声光报警器 "
                 "计量开停控制器 控制量 馈电".split()))
NAMES.update({"3001": "产量", "3002": "瓦斯抽放量", "3003": "排水量", "3004": "钩数", "3005": "水流量",
              "4001": "分站", "4002": "电源状态"})
assert len(NAMES) == 53 + 15 + 5 + 2

POINT_CODE = re.compile(r"(?P<mine>\d{12})(?P<system>\d{2})(?P<kind>MN|KG|LJ|DT)(?P<sensor>\d{4})(?P<number>.+)")
NUMBER = re.compile(r"-?\d+(\.\d+)?")
TIME = "%Y-%m-%d %H:%M:%S"


def _is_time(text: str) -> bool:
    try:
        datetime.strptime(text, TIME)
        return True
    except ValueError:
        return False


# --- the checks ---------------------------------------------------------------------------------

def check_file(name: str, data: bytes) -> list[tuple[str, str, str, str]]:
    found: list[tuple[str, str, str, str]] = []

    def flag(rule, severity, where, what):
        found.append((rule, severity, where, what))

    m = NAME.fullmatch(name)
    if m is None:
        flag("file", "break", name, "name")
        return found
    mine, kind_of_file, stamp = m.groups()
    if data[:3] == b"\xef\xbb\xbf":
        flag("file", "break", name, "BOM")
        data = data[3:]
    text = data.decode("utf-8", errors="replace")
    if not text.endswith("||"):
        flag("file", "break", name, "no ||")
        return found
    parts = text[:-2].split("~")
    if parts[-1] != "":
        flag("file", "break", name, "text after the last record")
    parts = parts[:-1]
    if kind_of_file not in HEADER_LEN or not parts:
        flag("file", "break", name, "type")
        return found
    header = parts[0].split(";")
    if len(header) != HEADER_LEN[kind_of_file]:
        flag("fields", "break", name + ":header", "header length")
        return found
    if header[0] != mine:
        flag("file", "break", name + ":header", "mine code")
    if not _is_time(header[-1]) or datetime.strptime(header[-1], TIME).strftime("%Y%m%d%H%M%S") != stamp:
        flag("file", "break", name + ":header", "header time is not the name's time")
    if kind_of_file == "CDDY":
        try:
            expiry = datetime.strptime(header[5], "%Y-%m-%d").date()
            if _is_time(header[-1]) and expiry <= datetime.strptime(header[-1], TIME).date():
                flag("expiry", "risk", name + ":header", "expired or today's date")
        except ValueError:
            flag("expiry", "risk", name + ":header", "field 6 is not a date")
    for n, part in enumerate(parts[1:], start=1):
        f = part.split(";")
        where = f"{name}:{n}"
        if len(f) not in RECORD_LEN[kind_of_file]:
            flag("fields", "break", where, f"{len(f)} fields")
            continue
        _fields(kind_of_file, f, mine, where, flag)
    return found


def _fields(typ, f, mine, where, flag):
    numbers = CDDY_NUMBERS if typ == "CDDY" else NUMBERS[typ]
    for i in numbers:
        if f[i] and not NUMBER.fullmatch(f[i]):
            flag("number", "break", where, f"field {i + 1}")
    for i in TIMES[typ]:
        if i < len(f) and f[i] and not _is_time(f[i]):
            flag("time", "break", where, f"field {i + 1}")
    if typ in SUBSTATION and len(f[SUBSTATION[typ]]) > 17:
        flag("substation-code", "break", where, "over 17 characters")
    xyz = CDDY_XYZ if typ == "CDDY" else (2, 3, 4) if typ == "FZDY" else ()
    for i in xyz:
        if NUMBER.fullmatch(f[i]) and "." in f[i] and len(f[i].split(".")[1]) > 2:
            flag("coordinates", "risk", where, f"field {i + 1}")
    if typ == "YCBJ" and f[4] not in ANOMALIES:
        flag("anomaly-code", "break", where, f[4])
    if typ in ("FZDY", "FZSS"):
        return
    m = POINT_CODE.fullmatch(f[0])
    if m is None or m["mine"] != mine:
        flag("point-code", "break", where, "structure")
        return
    if len(f[0]) > 28 or len(m["number"]) > 8:
        flag("point-code", "break", where, "length")
    elif typ == "CDDY" and len(m["number"]) != 8:
        flag("point-number-form", "risk", where, "not 8 characters")
    sensor, kind = m["sensor"], m["kind"]
    if sensor not in NAMES:
        flag("sensor-code", "break", where, sensor)
    elif kind not in KIND_OF_FAMILY[sensor[:2]]:
        flag("sensor-kind", "risk", where, kind)
    if typ in NAMED and sensor in NAMES and f[NAMED[typ]] != NAMES[sensor]:
        flag("sensor-name", "risk", where, f[NAMED[typ]])
    if typ == "CDDY":
        if (f[1], f[3], f[4]) != (m["system"], sensor, kind):
            flag("point-code-mismatch", "break", where, "")
        if kind != "MN" and any(f[i] for i in CDDY_LIMITS):
            flag("definition-empty", "break", where, kind)
        on, off = f[16], f[17]
        if kind == "KG":
            if not on or not off or NUMBER.fullmatch(on) or NUMBER.fullmatch(off):
                flag("onoff-text", "risk", where, f"{on}/{off}")
        elif on or off:
            flag("onoff-text", "risk", where, f"{on}/{off} on {kind}")
    if typ == "CDSS":
        if not f[5].isdigit():
            flag("status", "break", where, f[5])
            return
        s = int(f[5])
        if s & ~sum(STATUS_BITS):
            flag("status", "break", where, str(s))
        elif s not in (0,) + STATUS_BITS:
            flag("status-combined", "risk", where, str(s))
        if f[3] == "" and s == 0:
            flag("empty-value", "risk", where, "")


def check_dir(folder: Path) -> list[tuple[str, str, str, str]]:
    out = []
    for p in sorted(Path(folder).glob("*.txt")):
        out += check_file(p.name, p.read_bytes())
    return out


def breaks(found) -> list:
    return [x for x in found if x[1] == "break"]
