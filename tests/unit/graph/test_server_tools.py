"""Java and Maven checks of the provisioning, with faked executables and subprocesses."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from graph.server import tools
from graph.server.tools import check_java, check_maven, parse_java_version
from graphrec.errors import ProvisionError


@pytest.mark.parametrize(
    ("text", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15\nOpenJDK Runtime Environment', 17),
        ('openjdk version "21" 2023-09-19', 21),
        ('openjdk version "21.0.2" 2024-01-16 LTS', 21),
        ('java version "1.8.0_392"\nJava(TM) SE Runtime Environment', 8),
        ('openjdk version "11.0.22" 2024-01-16', 11),
        ('openjdk version "17-ea" 2021-03-16', 17),
    ],
)
def test_parse_java_version(text: str, major: int) -> None:
    assert parse_java_version(text) == major


def test_parse_java_version_rejects_garbage() -> None:
    with pytest.raises(ProvisionError, match="could not read the Java version"):
        parse_java_version("bash: java: command not found")


def _fake_run(stderr: str):
    def run(cmd, **kwargs):  # noqa: ANN001, ANN202
        return subprocess.CompletedProcess(cmd, 0, stdout="", stderr=stderr)

    return run


def test_no_java(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setattr(tools.shutil, "which", lambda name: None)
    with pytest.raises(ProvisionError, match="Java not found") as info:
        check_java()
    assert "\n" not in str(info.value)


def test_java_too_old(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setattr(tools.shutil, "which", lambda name: "/opt/jdk11/bin/java")
    monkeypatch.setattr(tools.subprocess, "run", _fake_run('openjdk version "11.0.22" 2024-01-16'))
    with pytest.raises(ProvisionError, match=r"Java 11 found at /opt/jdk11/bin/java, but Neo4j 5.26 needs Java 17"):
        check_java()


def test_java_8_legacy_format_too_old(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setattr(tools.shutil, "which", lambda name: "/usr/bin/java")
    monkeypatch.setattr(tools.subprocess, "run", _fake_run('java version "1.8.0_392"'))
    with pytest.raises(ProvisionError, match="Java 8 found"):
        check_java()


@pytest.mark.parametrize("version", ["17.0.15", "21.0.2"])
def test_java_ok(monkeypatch: pytest.MonkeyPatch, version: str) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setattr(tools.shutil, "which", lambda name: "/usr/bin/java")
    monkeypatch.setattr(tools.subprocess, "run", _fake_run(f'openjdk version "{version}" 2025-01-01'))
    java, major = check_java()
    assert java == "/usr/bin/java"
    assert major == int(version.split(".")[0])


def test_java_home_wins_over_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    java = tmp_path / "jdk" / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text("#!/bin/sh\n")
    java.chmod(0o755)
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "jdk"))
    monkeypatch.setattr(tools.shutil, "which", lambda name: "/usr/bin/java")
    seen: list[list[str]] = []

    def run(cmd, **kwargs):  # noqa: ANN001, ANN202
        seen.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, stdout="", stderr='openjdk version "21" 2023-09-19')

    monkeypatch.setattr(tools.subprocess, "run", run)
    assert check_java() == (str(java), 21)
    assert seen[0][0] == str(java)


def test_java_does_not_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setattr(tools.shutil, "which", lambda name: "/usr/bin/java")

    def run(cmd, **kwargs):  # noqa: ANN001, ANN202
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tools.subprocess, "run", run)
    with pytest.raises(ProvisionError, match="could not run"):
        check_java()


def test_no_maven(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tools.shutil, "which", lambda name: None)
    with pytest.raises(ProvisionError, match=r"Maven \(`mvn`\) not found"):
        check_maven()


def test_maven_found(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tools.shutil, "which", lambda name: f"/usr/bin/{name}")
    assert check_maven() == "/usr/bin/mvn"
