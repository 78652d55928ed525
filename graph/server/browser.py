"""The Neo4j Browser style graphrec ships: ``browser.grass`` and how a server applies it.

The style captions every node by the scalar property that names it (:data:`graphrec.vocabulary.CAPTIONS`:
users by ``id``, items by ``title``, attribute nodes and datasets by ``name``, the model pointer by
``version``), so list-valued serving data on the nodes (vectors, score statistics) never becomes a
caption.

A provisioned server applies it by itself: its ``neo4j.conf`` sets ``browser.post_connect_cmd`` to
``style <the style as JSON>``. Neo4j Browser 5 runs each post-connect command as ``:<command>`` once
it has connected; ``:style`` with inline GraSS (the Browser tries JSON first) replaces the Browser's
style, and no URL or file server is needed. For any other server, :func:`style_command` is the one
``:style`` command to paste into the Browser's editor.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

GRASS_FILE = "browser.grass"
"""The style file, package data of :mod:`graph.server`."""

POST_CONNECT_SETTING = "browser.post_connect_cmd"
"""The ``neo4j.conf`` setting Neo4j Browser reads its post-connect commands from."""


@cache
def grass_text() -> str:
    """The text of ``browser.grass``."""
    return resources.files(__package__).joinpath(GRASS_FILE).read_text(encoding="utf-8")


def parse_grass(text: str) -> dict[str, dict[str, str]]:
    """Parse GraSS (CSS-like) text into ``{selector: {property: value}}`` the way Neo4j Browser does.

    Quotes are dropped, braces inside quotes are kept (``caption: '{id}'`` -> ``"{id}"``), and
    declarations are split on ``;`` and then on ``:``.

    Args:
        text: GraSS text, e.g. ``node.User { caption: '{id}'; }``.

    Returns:
        The rules, selector -> declarations, in file order.
    """
    rules: dict[str, str] = {}
    inside_string = inside_props = False
    keyword = props = ""
    for c in text:
        if c in "'\"":
            inside_string = not inside_string
            continue
        if c == "{" and not inside_string:
            inside_props = True
            continue
        if c == "}" and not inside_string:
            inside_props = False
            rules[keyword] = props
            keyword = props = ""
            continue
        if inside_props:
            props += c
        elif not c.isspace():
            keyword += c
    parsed: dict[str, dict[str, str]] = {}
    for selector, body in rules.items():
        decls: dict[str, str] = {}
        for decl in body.split(";"):
            key, sep, value = decl.partition(":")
            if sep and key.strip() and value.strip():
                decls[key.strip()] = value.strip()
        parsed[selector] = decls
    return parsed


def style_rules() -> dict[str, dict[str, str]]:
    """The shipped style as Neo4j Browser stores it (``{"node.User": {"caption": "{id}", ...}, ...}``)."""
    return parse_grass(grass_text())


def style_json() -> str:
    """The shipped style as one line of JSON (no ``;``, so it survives the post-connect command split)."""
    return json.dumps(style_rules(), separators=(",", ":"))


def post_connect_command() -> str:
    """The value of ``browser.post_connect_cmd`` that applies the style (``style {...}``)."""
    return f"style {style_json()}"


def style_command() -> str:
    """The one command to paste into a Browser connected to any server: ``:style {...}``."""
    return f":{post_connect_command()}"


def browser_conf() -> dict[str, str]:
    """The ``neo4j.conf`` settings that make Neo4j Browser apply the style after it connects."""
    return {POST_CONNECT_SETTING: post_connect_command()}


__all__ = ["browser_conf", "grass_text", "parse_grass", "post_connect_command", "style_command", "style_json", "style_rules"]
