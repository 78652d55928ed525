"""Port checks and neo4j.conf rendering."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from graph.server import ports
from graph.server.config import render_conf
from graph.server.ports import check_port_free, free_port
from graphrec.errors import ProvisionError


def test_port_in_use_names_the_port() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        with pytest.raises(ProvisionError, match=rf"Bolt port {port} on 127.0.0.1 is already in use.*--bolt-port"):
            check_port_free(port, "Bolt")


def test_free_port_is_bindable() -> None:
    port = free_port()
    assert 0 < port < 65536
    check_port_free(port, "HTTP")


def test_port_check_with_faked_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    class BusySocket:
        def __init__(self, *args: object) -> None:
            pass

        def setsockopt(self, *args: object) -> None:
            pass

        def bind(self, addr: tuple[str, int]) -> None:
            raise OSError(98, "Address already in use")

        def close(self) -> None:
            pass

    monkeypatch.setattr(ports.socket, "socket", BusySocket)
    with pytest.raises(ProvisionError, match="HTTP port 7474 on 127.0.0.1 is already in use") as info:
        check_port_free(7474, "HTTP")
    assert "--http-port" in str(info.value)


def _conf_dict(text: str) -> dict[str, str]:
    rows = [line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#")]
    return {k: v for k, v in rows}


def test_conf_is_local_small_and_private(tmp_path: Path) -> None:
    conf = _conf_dict(render_conf(tmp_path / "home", tmp_path / "jars" / "lib", 17687, 17474, "1g", "512m", apoc=False))
    assert conf["server.default_listen_address"] == "127.0.0.1"
    assert conf["server.bolt.listen_address"] == "127.0.0.1:17687"
    assert conf["server.http.listen_address"] == "127.0.0.1:17474"
    assert conf["server.https.enabled"] == "false"
    assert conf["dbms.security.auth_enabled"] == "true"
    assert conf["server.memory.heap.max_size"] == "1g"
    assert conf["server.memory.pagecache.size"] == "512m"
    assert conf["dbms.usage_report.enabled"] == "false"
    assert conf["server.directories.data"] == str((tmp_path / "home" / "data").resolve())
    assert conf["server.directories.lib"] == str((tmp_path / "jars" / "lib").resolve())
    assert "dbms.security.procedures.unrestricted" not in conf


def test_conf_apoc_and_extra(tmp_path: Path) -> None:
    conf = _conf_dict(
        render_conf(tmp_path, tmp_path / "lib", 1, 2, "512m", "128m", apoc=True, extra={"db.tx_log.preallocate": "false", "server.memory.pagecache.size": "64m"})
    )
    assert conf["dbms.security.procedures.unrestricted"] == "apoc.*"
    assert conf["db.tx_log.preallocate"] == "false"
    assert conf["server.memory.pagecache.size"] == "64m"
