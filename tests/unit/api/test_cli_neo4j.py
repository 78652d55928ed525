"""CLI plumbing: connection resolution, ``graphrec neo4j ...`` output and one-line errors, ``bench``."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import graph.connection
from api.cli import common
from benchmarks.cli import build_bench_app
from graph.server import Neo4jServer, server
from graphrec.errors import Neo4jAuthError, Neo4jUnavailableError
from graphrec.settings import Settings, get_settings
from tests.unit.graph._server_fakes import FakeDriver, make_fake_java, make_ready_jar_cache
from tests.unit.cli_runner import run_cli

VERSION = "5.26.19"



@pytest.fixture
def no_neo4j_uri(monkeypatch: pytest.MonkeyPatch, graphrec_home: Path) -> Path:
    for name in ("NEO4J_URI", "GRAPHREC_NEO4J_URI", "NEO4J_PASSWORD", "NEO4J_USER", "NEO4J_DATABASE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(graphrec_home)  # no stray .env
    get_settings.cache_clear()
    return graphrec_home


@pytest.fixture
def fake_server_env(no_neo4j_uri: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The user's server with a fake java, a ready jar cache and free ports; stopped afterwards."""
    from graph.server import free_port

    java = make_fake_java(tmp_path, "hang")
    monkeypatch.setattr(server, "check_java", lambda: (str(java), 17))
    make_ready_jar_cache(no_neo4j_uri / "jars" / VERSION)
    monkeypatch.setenv("GRAPHREC_NEO4J_BOLT_PORT", str(free_port()))
    monkeypatch.setenv("GRAPHREC_NEO4J_HTTP_PORT", str(free_port()))
    monkeypatch.setattr(Neo4jServer, "_check_browser", lambda self, url, timeout: None)
    get_settings.cache_clear()
    yield no_neo4j_uri
    from graph.server import server_from_settings

    get_settings.cache_clear()
    server_from_settings(get_settings()).stop()


def test_connection_info_from_neo4j_uri(monkeypatch: pytest.MonkeyPatch, graphrec_home: Path) -> None:
    monkeypatch.setenv("NEO4J_URI", "bolt://db.example:7687")
    monkeypatch.setenv("NEO4J_USER", "alice")
    monkeypatch.setenv("NEO4J_PASSWORD", "s3cret-pass")
    monkeypatch.setenv("NEO4J_DATABASE", "recs")
    info = common.connection_info(Settings())
    assert (info.uri, info.user, info.password, info.database) == ("bolt://db.example:7687", "alice", "s3cret-pass", "recs")
    assert not (graphrec_home / "neo4j").exists()  # nothing provisioned


def test_connection_info_when_not_running(no_neo4j_uri: Path) -> None:
    with pytest.raises(Neo4jUnavailableError) as info:
        common.connection_info(Settings())
    assert str(info.value) == "Neo4j is not running: run `graphrec neo4j start` or set NEO4J_URI"


def test_open_graph_closes_the_driver(monkeypatch: pytest.MonkeyPatch, graphrec_home: Path) -> None:
    monkeypatch.setenv("NEO4J_URI", "bolt://db.example:7687")
    driver = FakeDriver()
    monkeypatch.setattr(graph.connection, "open_driver", lambda info, verify=True: driver)
    with common.open_graph(Settings()) as d:
        assert d is driver
        assert not driver.closed
    assert driver.closed


def test_open_graph_wrong_password_is_an_auth_error(monkeypatch: pytest.MonkeyPatch, graphrec_home: Path) -> None:
    monkeypatch.setenv("NEO4J_URI", "bolt://db.example:7687")

    def reject(info, verify=True):  # noqa: ANN001, ANN202
        raise Neo4jAuthError(f"Neo4j at {info.uri} rejected the user name or password")

    monkeypatch.setattr(graph.connection, "open_driver", reject)
    with pytest.raises(Neo4jAuthError, match="rejected the user name or password"), common.open_graph(Settings()):
        pass


def test_status_when_stopped(no_neo4j_uri: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(["neo4j", "status"], capsys)
    assert code == 0
    assert f"Neo4j {VERSION}: stopped" in out
    assert str(no_neo4j_uri / "neo4j" / VERSION / "password") in out


def test_status_json(no_neo4j_uri: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["neo4j", "status", "--json"], capsys)
    data = json.loads(out)
    assert code == 0
    assert data["running"] is False and data["external"] is False
    assert data["password_file"].endswith("password")


def test_external_server_provisions_nothing(monkeypatch: pytest.MonkeyPatch, graphrec_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("NEO4J_URI", "bolt://db.example:7687")
    for cmd in (["neo4j", "start"], ["neo4j", "stop"], ["neo4j", "status"]):
        code, out, _ = run_cli(cmd, capsys)
        assert code == 0
        assert "NEO4J_URI is set (bolt://db.example:7687)" in out
    assert not (graphrec_home / "neo4j").exists() and not (graphrec_home / "jars").exists()


@pytest.mark.parametrize(
    ("which", "expected"),
    [
        ({"java": None, "mvn": "/usr/bin/mvn"}, "Java not found"),
    ],
)
def test_start_without_java_is_one_line(
    which: dict[str, str | None], expected: str, no_neo4j_uri: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from graph.server import tools

    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setattr(tools.shutil, "which", lambda name: which.get(name))
    code, out, err = run_cli(["neo4j", "start"], capsys)
    assert code == 3
    assert err.startswith("graphrec: error: ") and expected in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_start_without_maven_is_one_line(no_neo4j_uri: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from graph.server import free_port, tools

    java = make_fake_java(tmp_path, "hang")
    monkeypatch.setattr(server, "check_java", lambda: (str(java), 17))
    monkeypatch.setattr(tools.shutil, "which", lambda name: None)
    monkeypatch.setenv("GRAPHREC_NEO4J_BOLT_PORT", str(free_port()))
    monkeypatch.setenv("GRAPHREC_NEO4J_HTTP_PORT", str(free_port()))
    code, _, err = run_cli(["neo4j", "start"], capsys)
    assert code == 3
    assert "Maven (`mvn`) not found" in err and err.count("\n") == 1


def test_start_port_in_use_names_the_port(fake_server_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        code, _, err = run_cli(["neo4j", "start", "--bolt-port", str(port)], capsys)
    assert code == 3
    assert f"Bolt port {port} on 127.0.0.1 is already in use" in err and err.count("\n") == 1


def test_start_wrong_password_exit_code(fake_server_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def reject(info, verify=True):  # noqa: ANN001, ANN202
        raise Neo4jAuthError("rejected")

    monkeypatch.setattr(graph.connection, "open_driver", reject)
    code, _, err = run_cli(["neo4j", "start"], capsys)
    assert code == 5
    assert "rejected the password" in err and err.count("\n") == 1


def test_start_timeout_is_one_line(fake_server_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def unavailable(info, verify=True):  # noqa: ANN001, ANN202
        raise Neo4jUnavailableError("not yet")

    monkeypatch.setattr(graph.connection, "open_driver", unavailable)
    code, _, err = run_cli(["neo4j", "start", "--timeout", "2"], capsys)
    assert code == 3
    assert "did not answer" in err and "console.log" in err and err.count("\n") == 1


def test_start_twice_then_stop(fake_server_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(graph.connection, "open_driver", lambda info, verify=True: FakeDriver())
    code, out, _ = run_cli(["neo4j", "start"], capsys)
    assert code == 0
    assert f"Neo4j {VERSION} started" in out and "Bolt URI:      bolt://127.0.0.1:" in out and "/browser/" in out
    code, out, _ = run_cli(["neo4j", "start"], capsys)
    assert code == 0 and "already running" in out
    code, out, _ = run_cli(["neo4j", "status", "--json"], capsys)
    status = json.loads(out)
    assert status["running"] is True and status["pid"] > 0
    info = common.connection_info(Settings())
    assert info.uri == status["bolt_uri"] and info.password
    code, out, _ = run_cli(["neo4j", "stop"], capsys)
    assert code == 0 and "Neo4j stopped" in out
    code, out, _ = run_cli(["neo4j", "stop"], capsys)
    assert code == 0 and "not running" in out


def test_bench_registers_present_topics(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.ModuleType("api.cli.bench_fake")

    def register_bench(bench_app: typer.Typer) -> None:
        @bench_app.command("fake")
        def fake_cmd() -> None:
            typer.echo("rows/s: 42")

    fake.register_bench = register_bench  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "api.cli.bench_fake", fake)
    root = typer.Typer()
    root.add_typer(build_bench_app(("api.cli.bench_fake", "api.cli.bench_absent_topic")), name="bench")

    @root.command("other")
    def other() -> None:  # a second command keeps typer from collapsing the group
        pass

    result = CliRunner().invoke(root, ["bench", "fake"])
    assert result.exit_code == 0
    assert "rows/s: 42" in result.output


def test_bench_import_errors_inside_a_topic_are_not_hidden(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "bench_broken_topic.py").write_text("import graphrec_no_such_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="graphrec_no_such_dependency"):
        build_bench_app(("bench_broken_topic",))
