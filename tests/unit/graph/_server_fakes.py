"""Fakes for the provisioning tests: a fake ``java`` executable, a ready jar cache, a fake driver."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path
from typing import Any

from graph.server import JarCache, Neo4jServer, free_port

VERSION = "5.26.19"


def make_fake_java(tmp_path: Path, behaviour: str = "hang") -> Path:
    """Write an executable that stands in for ``java``.

    ``set-initial-password`` succeeds at once; a server launch prints a log line and then
    ``hang``s (sleeps, as a server that never answers) or ``die``s with status 1.
    """
    script = tmp_path / "fake-java"
    server = (
        f'exec {sys.executable} -c "import time; time.sleep(120)" "$@"'
        if behaviour == "hang"
        else 'echo "2026-01-01 ERROR boom: fake failure"; exit 1'
    )
    script.write_text(
        "#!/bin/sh\n"
        'case "$*" in *set-initial-password*) echo "password set"; exit 0;; esac\n'
        'case "$*" in *-version*) echo \'openjdk version "17.0.15" 2025-04-15\' >&2; exit 0;; esac\n'
        'echo "fake neo4j: starting"\n'
        f"{server}\n",
        encoding="utf-8",
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return script


def make_ready_jar_cache(root: Path) -> JarCache:
    """A jar cache that claims to be complete (no real jars: nothing is downloaded)."""
    jars = JarCache(root, VERSION)
    jars.lib.mkdir(parents=True, exist_ok=True)
    jars.apoc_dir.mkdir(parents=True, exist_ok=True)
    (jars.apoc_dir / f"apoc-core-{VERSION}.jar").write_bytes(b"")
    jars.marker.write_text("fake\n", encoding="utf-8")
    return jars


def make_server(tmp_path: Path) -> Neo4jServer:
    """A server in a fresh home under ``tmp_path`` on free ports with a ready (fake) jar cache."""
    return Neo4jServer(
        home=tmp_path / "home",
        version=VERSION,
        jar_cache=make_ready_jar_cache(tmp_path / "jars"),
        bolt_port=free_port(),
        http_port=free_port(),
    )


class FakeDriver:
    """Answers ``RETURN 1`` like a running server."""

    def __init__(self) -> None:
        self.closed = False
        self.queries: list[str] = []

    def execute_query(self, query: str, *args: Any, **kwargs: Any) -> Any:
        self.queries.append(query)
        return ([{"ok": 1}], None, None)

    def close(self) -> None:
        self.closed = True


def pid_gone(pid: int) -> bool:
    """Whether no live (non-zombie) process has this pid."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
