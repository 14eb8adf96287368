"""edge_agent/fastyaml.py reads what PyYAML reads, or leaves the text to PyYAML."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from edge_agent import fastyaml
from edge_agent.config import load_site
from edge_agent.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
FILES = sorted(p for p in ROOT.rglob("*.y*ml") if ".venv" not in p.parts and p.suffix in (".yaml", ".yml"))


def pyyaml(text: str):
    return yaml.load(text, Loader=fastyaml.StrictLoader)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_yaml_file_of_the_repository_reads_the_same(path):
    text = path.read_text(encoding="utf-8")
    got = fastyaml.load(text)
    if got is not None:
        ref = pyyaml(text)
        assert got == ref and repr(got) == repr(ref)


def test_the_site_files_of_the_repository_take_the_fast_path():
    for name in ("config/example-site.yaml", "config/demo.yaml", "tests/golden/site.yaml"):
        assert fastyaml.load((ROOT / name).read_text(encoding="utf-8")) is not None, name


SAME = [
    "a: 1\nb: 0001\nc: 1.5\nd: ~\ne: true\nf: 2027-06-30\ng: '0001'\nh: \"x\"\ni: hr:0\nj:\n",
    "k: v # comment\nl: 'it''s' # c\nm: \"a\\tb\"\nn: x#y\no: -5\np: [0, 4]\nq: {high: 1, low: 2}\n",
    "points:\n- id: A\n  sensor: '0001'\n- id: B\n  alarm: {high: 1.0,\n    high_clear: 0.9}\n",
    "s:\n  - a\n  -\n  - 'b'\n  - {x: 1}\n  -   id: 2\n      more: [1, 2]\nt: 煤矿 示例\n1: int key\nnull: x\n",
    "x:\r\n  y: 1\r\n",
    "a: \"#not a comment\"\nb: 'x: y'\nc: \"q\\\"uote\"\n",
]

FALLS_BACK = [
    "a: &x 1\nb: *x\n", "a: !!str 1\n", "a: |\n  text\n", "a: >\n  folded\n", "a: one\n  two\n",
    "---\na: 1\n", "a: 1\na: 2\n", "a:\tb\n", "<<: {a: 1}\n", "a: 'open\n  close'\n", "a: b: c\n",
    "a: [1,\n  2 # c\n  ]\n", "- - a\n", "? a\n: b\n", "a: {x: 1, x: 2}\n", "a:\n b: 1\n  c: 2\n", "\ufeffa: 1\n",
]


@pytest.mark.parametrize("text", SAME)
def test_plain_block_yaml_reads_as_pyyaml_reads_it(text):
    got = fastyaml.load(text)
    assert got is not None
    assert got == pyyaml(text) and repr(got) == repr(pyyaml(text))


@pytest.mark.parametrize("text", FALLS_BACK)
def test_anything_else_is_left_to_pyyaml(text):
    assert fastyaml.load(text) is None


def test_a_key_twice_still_names_its_line(tmp_path):
    text = (ROOT / "config/example-site.yaml").read_text(encoding="utf-8")
    site = tmp_path / "site.yaml"
    text = text.replace("site:\n", "site:\n  mine_name: a\n  mine_name: b\n", 1)
    site.write_text(text, encoding="utf-8")
    line = text[:text.index("  mine_name: b")].count("\n") + 1
    with pytest.raises(ConfigError) as exc:
        load_site(str(site))
    assert f"site.yaml:{line}: key 'mine_name' appears twice" in str(exc.value)
