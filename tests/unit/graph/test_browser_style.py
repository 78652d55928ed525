"""The shipped Neo4j Browser style: captions by name, parsed like the Browser, applied through neo4j.conf."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from graph.server.browser import (
    POST_CONNECT_SETTING,
    grass_text,
    parse_grass,
    post_connect_command,
    style_command,
    style_rules,
)
from graph.server.config import render_conf
from graphrec.vocabulary import ATTRIBUTE_LABELS, CAPTIONS, ITEM, USER
from tests.unit.cli_runner import run_cli


def test_parse_grass_like_the_browser() -> None:
    text = "node { diameter: 50px; }\nnode.User {\n  color: #4C8EDA;\n  caption: '{id}';\n}\nrelationship { caption: '<type>'; }"
    assert parse_grass(text) == {
        "node": {"diameter": "50px"},
        "node.User": {"color": "#4C8EDA", "caption": "{id}"},
        "relationship": {"caption": "<type>"},
    }


def test_every_label_is_captioned_by_its_naming_property() -> None:
    rules = style_rules()
    assert rules["node.User"]["caption"] == "{id}"
    assert rules["node.Item"]["caption"] == "{title}"
    for label in ATTRIBUTE_LABELS.values():
        assert rules[f"node.{label}"]["caption"] == "{name}"
    for label, prop in CAPTIONS.items():
        assert rules[f"node.{label}"]["caption"] == "{" + prop + "}", label
    assert CAPTIONS[USER] == "id" and CAPTIONS[ITEM] == "title"


def test_captions_name_only_scalar_properties() -> None:
    """No caption shows list-valued serving data (embeddings, statistics): only the naming properties."""
    for selector, decls in style_rules().items():
        caption = decls.get("caption")
        if caption is None or not selector.startswith("node."):
            continue
        props = re.findall(r"\{([^{}]*)\}", caption)
        assert props and set(props) <= set(CAPTIONS.values()), (selector, caption)
        assert not any(p.startswith(("emb_", "txt_", "fus_", "prof_", "pop_")) for p in props)


def test_post_connect_command_survives_the_browser_split() -> None:
    """The Browser splits post-connect commands on ';' outside quotes and prefixes each with ':'."""
    cmd = post_connect_command()
    assert ";" not in cmd
    assert cmd.startswith("style {")
    assert json.loads(cmd.removeprefix("style ")) == style_rules()
    assert style_command() == ":" + cmd


def test_provisioned_conf_applies_the_style(tmp_path: Path) -> None:
    conf = render_conf(tmp_path / "home", tmp_path / "lib", 17687, 17474, "1g", "512m", apoc=False)
    lines = dict(ln.split("=", 1) for ln in conf.splitlines() if "=" in ln and not ln.startswith("#"))
    assert lines[POST_CONNECT_SETTING] == post_connect_command()
    off = render_conf(tmp_path / "home", tmp_path / "lib", 17687, 17474, "1g", "512m", apoc=False, browser_style=False)
    assert POST_CONNECT_SETTING not in off


def test_cli_prints_the_style(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["neo4j", "style"], capsys)
    assert code == 0 and out.strip() == style_command()
    code, out, _ = run_cli(["neo4j", "style", "--grass"], capsys)
    assert code == 0 and out.strip() == grass_text().strip()
