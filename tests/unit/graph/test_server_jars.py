"""The shared jar cache, with Maven faked (nothing is downloaded)."""

from __future__ import annotations

import subprocess
import zipfile
from pathlib import Path

import pytest

from graph.server import jars as jars_mod
from graph.server import tools
from graph.server.jars import JarCache, _artifact_name
from graphrec.errors import ProvisionError

VERSION = "5.26.19"


@pytest.mark.parametrize(
    ("jar", "name"),
    [
        ("commons-lang3-3.14.0.jar", "commons-lang3"),
        ("RoaringBitmap-0.7.17.jar", "RoaringBitmap"),
        ("neo4j-5.26.19.jar", "neo4j"),
        ("json-smart-2.5.0.jar", "json-smart"),
        ("noversion.jar", "noversion"),
    ],
)
def test_artifact_name(jar: str, name: str) -> None:
    assert _artifact_name(jar) == name


def _zip(path: Path, entries: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as z:
        for entry in entries:
            z.writestr(entry, "x")


class FakeMaven:
    """Stands in for ``subprocess.run`` of ``mvn``: fills the output directory like Maven would."""

    def __init__(self, good: bool = True, fail: bool = False) -> None:
        self.calls: list[list[str]] = []
        self.good = good
        self.fail = fail

    def __call__(self, cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        self.calls.append(cmd)
        if self.fail:
            return subprocess.CompletedProcess(cmd, 1, stdout="[ERROR] Failed to execute goal: Could not resolve dependencies\n", stderr="")
        out = Path(next(a for a in cmd if a.startswith("-DoutputDirectory=")).split("=", 1)[1])
        pom = Path(cmd[cmd.index("-f") + 1])
        if pom.name == "pom.xml":
            _zip(out / f"neo4j-{VERSION}.jar", ["org/neo4j/server/CommunityEntryPoint.class"] if self.good else ["other.class"])
            _zip(out / "neo4j-browser-5.24.0.jar", ["browser/index.html"])
            _zip(out / "commons-lang3-3.14.0.jar", ["a.class"])
        else:
            _zip(out / f"apoc-core-{VERSION}.jar", ["apoc/A.class"])
            _zip(out / f"apoc-common-{VERSION}.jar", ["apoc/B.class"])
            _zip(out / "commons-lang3-3.12.0.jar", ["a.class"])  # already in lib/: dropped
            _zip(out / "opencsv-5.7.1.jar", ["c.class"])
        return subprocess.CompletedProcess(cmd, 0, stdout="", stderr="")


@pytest.fixture
def fake_mvn(monkeypatch: pytest.MonkeyPatch) -> FakeMaven:
    monkeypatch.setattr(tools.shutil, "which", lambda name: f"/usr/bin/{name}")
    maven = FakeMaven()
    monkeypatch.setattr(jars_mod.subprocess, "run", maven)
    return maven


def test_ensure_fetches_once_and_fills_lib_and_apoc(tmp_path: Path, fake_mvn: FakeMaven) -> None:
    cache = JarCache(tmp_path / "jars", VERSION)
    assert not cache.is_ready()
    cache.ensure()
    assert cache.is_ready()
    assert (cache.lib / f"neo4j-{VERSION}.jar").is_file()
    assert sorted(p.name for p in cache.apoc_dir.glob("*.jar")) == [f"apoc-common-{VERSION}.jar", f"apoc-core-{VERSION}.jar", "opencsv-5.7.1.jar"]
    assert "dependency:copy-dependencies" in fake_mvn.calls[0]
    assert "-DincludeScope=runtime" in fake_mvn.calls[0]
    pom = (cache.root / "pom.xml").read_text()
    assert f"<version>{VERSION}</version>" in pom and "neo4j-browser" in pom and "neo4j-server" in pom
    calls = len(fake_mvn.calls)
    assert cache.ensure() == 0.0  # cached: Maven is not run again
    assert len(fake_mvn.calls) == calls


def test_second_cache_object_reuses_the_download(tmp_path: Path, fake_mvn: FakeMaven) -> None:
    JarCache(tmp_path / "jars", VERSION).ensure()
    calls = len(fake_mvn.calls)
    assert JarCache(tmp_path / "jars", VERSION).ensure() == 0.0
    assert len(fake_mvn.calls) == calls


def test_maven_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tools.shutil, "which", lambda name: None)
    with pytest.raises(ProvisionError, match="Maven"):
        JarCache(tmp_path / "jars", VERSION).ensure()


def test_maven_failure_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tools.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(jars_mod.subprocess, "run", FakeMaven(fail=True))
    cache = JarCache(tmp_path / "jars", VERSION)
    with pytest.raises(ProvisionError, match=r"Maven could not download Neo4j 5.26.19 .*Could not resolve dependencies") as info:
        cache.ensure()
    assert "\n" not in str(info.value)
    assert not cache.is_ready()


def test_wrong_jars_are_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tools.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(jars_mod.subprocess, "run", FakeMaven(good=False))
    cache = JarCache(tmp_path / "jars", VERSION)
    with pytest.raises(ProvisionError, match="CommunityEntryPoint.class not found"):
        cache.ensure()
    assert not cache.is_ready()
    assert not cache.lib.exists()
