"""Lifecycle of Neo4jServer with a fake ``java`` process and a fake driver (no real Neo4j)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import graph.connection
from graph.server import Neo4jServer, server
from graphrec.errors import Neo4jAuthError, Neo4jUnavailableError, ProvisionError
from tests.unit.graph._server_fakes import FakeDriver, make_fake_java, make_server, pid_gone


@pytest.fixture
def fake_java(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    java = make_fake_java(tmp_path, "hang")
    monkeypatch.setattr(server, "check_java", lambda: (str(java), 17))
    return java


@pytest.fixture
def srv(tmp_path: Path) -> Neo4jServer:
    s = make_server(tmp_path)
    yield s
    s.stop()


def _unavailable(info, verify=True):  # noqa: ANN001, ANN202
    raise Neo4jUnavailableError("not yet")


def test_status_of_a_fresh_home(srv: Neo4jServer) -> None:
    st = srv.status()
    assert not st.running
    assert st.pid is None and st.bolt_uri is None
    assert st.password_file == str(srv.home / "password")
    assert srv.connection_info() is None


def test_stale_pid_file_is_removed(srv: Neo4jServer) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    srv.state_file.parent.mkdir(parents=True)
    srv.state_file.write_text(json.dumps({"pid": dead.pid, "bolt_port": 1, "http_port": 2}))
    st = srv.status()
    assert not st.running
    assert st.stale_pid_removed
    assert not srv.state_file.exists()


def test_recycled_pid_of_another_process_is_not_our_server(srv: Neo4jServer) -> None:
    import os

    srv.state_file.parent.mkdir(parents=True)
    srv.state_file.write_text(json.dumps({"pid": os.getpid(), "bolt_port": 1, "http_port": 2}))
    st = srv.status()
    assert not st.running and st.stale_pid_removed
    assert srv.stop() is False  # and we certainly did not signal ourselves


def test_corrupt_state_file_reads_as_stopped(srv: Neo4jServer) -> None:
    srv.state_file.parent.mkdir(parents=True)
    srv.state_file.write_text("{not json")
    assert not srv.status().running


def test_port_in_use_is_reported_before_anything_starts(srv: Neo4jServer, fake_java: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", srv.http_port))
        listener.listen(1)
        with pytest.raises(ProvisionError, match=f"HTTP port {srv.http_port} .* already in use"):
            srv.start(timeout=5)
    assert not srv.state_file.exists()
    assert not srv.password_file.exists()


def test_no_java_is_reported(srv: Neo4jServer, monkeypatch: pytest.MonkeyPatch) -> None:
    from graph.server import tools

    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setattr(tools.shutil, "which", lambda name: None)
    with pytest.raises(ProvisionError, match="Java not found"):
        srv.start(timeout=5)


def test_not_answering_in_time_shows_the_log_and_cleans_up(srv: Neo4jServer, fake_java: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(graph.connection, "open_driver", _unavailable)
    with pytest.raises(ProvisionError, match=r"did not answer on bolt://127.0.0.1:\d+ within 2 s") as info:
        srv.start(timeout=2)
    msg = str(info.value)
    assert str(srv.log_file) in msg
    assert "fake neo4j: starting" in msg
    assert "\n" not in msg
    assert not srv.state_file.exists()  # the hanging process was stopped
    assert srv._proc is not None and pid_gone(srv._proc.pid)


def test_process_dying_at_start_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    java = make_fake_java(tmp_path, "die")
    monkeypatch.setattr(server, "check_java", lambda: (str(java), 17))
    monkeypatch.setattr(graph.connection, "open_driver", _unavailable)
    srv = make_server(tmp_path)
    with pytest.raises(ProvisionError, match=r"exited with status 1 while starting.*ERROR boom"):
        srv.start(timeout=30)
    assert not srv.status().running


def test_wrong_password_is_an_auth_error(srv: Neo4jServer, fake_java: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def reject(info, verify=True):  # noqa: ANN001, ANN202
        raise Neo4jAuthError("rejected")

    monkeypatch.setattr(graph.connection, "open_driver", reject)
    with pytest.raises(Neo4jAuthError, match="rejected the password in .*password"):
        srv.start(timeout=10)
    assert not srv.status().running


def test_start_status_second_start_and_stop(srv: Neo4jServer, fake_java: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    drivers: list[FakeDriver] = []

    def open_fake(info, verify=True):  # noqa: ANN001, ANN202
        drivers.append(FakeDriver())
        return drivers[-1]

    monkeypatch.setattr(graph.connection, "open_driver", open_fake)
    monkeypatch.setattr(Neo4jServer, "_check_browser", lambda self, url, timeout: None)
    info = srv.start(timeout=10)
    assert info.uri == f"bolt://127.0.0.1:{srv.bolt_port}"
    assert info.browser_url == f"http://127.0.0.1:{srv.http_port}/browser/"
    assert info.user == "neo4j"
    assert len(info.password) >= 16
    assert drivers and drivers[-1].closed and "RETURN 1" in drivers[-1].queries[0]
    # password file: only the user can read it
    assert srv.password_file.read_text().strip() == info.password
    assert srv.password_file.stat().st_mode & 0o777 == 0o600
    conf = (srv.home / "conf" / "neo4j.conf").read_text()
    assert f"server.bolt.listen_address=127.0.0.1:{srv.bolt_port}" in conf
    st = srv.status()
    assert st.running and st.pid == srv._proc.pid
    assert srv.connection_info() == info
    # a second start starts nothing
    first_pid = st.pid
    assert srv.start(timeout=10) == info
    assert srv.status().pid == first_pid
    # another object for the same home sees the same server
    twin = Neo4jServer(srv.home, srv.version, srv.jars, bolt_port=1, http_port=2)
    assert twin.status().pid == first_pid
    assert twin.connection_info() == info
    assert srv.stop() is True
    assert pid_gone(first_pid)
    assert not srv.status().running
    assert srv.stop() is False


def test_password_is_kept_across_starts(srv: Neo4jServer, fake_java: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(graph.connection, "open_driver", lambda info, verify=True: FakeDriver())
    monkeypatch.setattr(Neo4jServer, "_check_browser", lambda self, url, timeout: None)
    first = srv.start(timeout=10).password
    srv.stop()
    assert srv.start(timeout=10).password == first


def test_data_without_password_file_is_refused(srv: Neo4jServer, fake_java: Path) -> None:
    (srv.home / "data" / "databases" / "system").mkdir(parents=True)
    with pytest.raises(ProvisionError, match="password file .* is missing"):
        srv.start(timeout=5)


def test_stop_escalates_to_sigkill(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = tmp_path / "stubborn-java"
    script.write_text(
        "#!/bin/sh\n"
        'case "$*" in *set-initial-password*) exit 0;; esac\n'
        f"exec {sys.executable} -c \"import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); open('{tmp_path}/ignoring', 'w').close(); time.sleep(120)\" \"$@\"\n"
    )
    script.chmod(0o755)
    monkeypatch.setattr(server, "check_java", lambda: (str(script), 17))
    monkeypatch.setattr(graph.connection, "open_driver", lambda info, verify=True: FakeDriver())
    monkeypatch.setattr(Neo4jServer, "_check_browser", lambda self, url, timeout: None)
    monkeypatch.setattr(Neo4jServer, "STOP_TIMEOUT_S", 1.0)
    srv = make_server(tmp_path)
    srv.start(timeout=10)
    pid = srv.status().pid
    assert pid is not None
    for _ in range(200):  # wait until SIGTERM is really ignored
        if (tmp_path / "ignoring").exists():
            break
        time.sleep(0.05)
    assert (tmp_path / "ignoring").exists()
    assert srv.stop() is True
    assert pid_gone(pid)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_die_with_parent_server_goes_when_its_starter_dies(tmp_path: Path) -> None:
    java = make_fake_java(tmp_path, "hang")
    starter = f"""
import os, sys
sys.path.insert(0, {str(Path(__file__).resolve().parents[3])!r})
from pathlib import Path
from graph.server import Neo4jServer
from tests.unit.graph._server_fakes import make_ready_jar_cache
srv = Neo4jServer(Path({str(tmp_path / 'home')!r}), "5.26.19", make_ready_jar_cache(Path({str(tmp_path / 'jars')!r})), die_with_parent=True)
srv.home.mkdir(parents=True)
srv._prepare_home()
srv._launch({str(java)!r})
print(srv._proc.pid, flush=True)
os._exit(0)  # dies without stopping the server
"""
    out = subprocess.run([sys.executable, "-c", starter], capture_output=True, text=True, timeout=60, check=True).stdout
    pid = int(out.split()[0])
    for _ in range(100):
        if pid_gone(pid):
            break
        time.sleep(0.1)
    assert pid_gone(pid)


def test_generated_passwords_are_letters_and_digits() -> None:
    """neo4j-admin reads a positional password starting with '-' as an option; ours never start so."""
    passwords = {server.new_password() for _ in range(2000)}
    assert len(passwords) == 2000
    assert all(len(p) == 24 and p.isascii() and p.isalnum() for p in passwords)
    assert {p[0] for p in passwords} <= set(server.PASSWORD_ALPHABET)
