"""A Neo4j Community server run from the shared jar cache, in a home folder of its own.

Home layout (``settings.neo4j_home`` for the user's server, a temporary folder for test servers)::

    conf/neo4j.conf        rewritten on every start (ports may change)
    data/ logs/ run/ import/ plugins/
    password               the generated password of user ``neo4j`` (mode 0600)
    run/graphrec.json      state of the running server (pid, ports, version)
    logs/console.log       stdout/stderr of the JVM

The JVM is started directly (``org.neo4j.server.CommunityEntryPoint --console-mode``) in its own
session, so it outlives the ``graphrec`` process; ``stop`` sends SIGTERM (clean shutdown) and
SIGKILL only after :attr:`Neo4jServer.STOP_TIMEOUT_S`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from filelock import FileLock
from pydantic import BaseModel
from tenacity import RetryError, Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from graph.server.config import JVM_FLAGS, render_conf
from graph.server.jars import JarCache, default_jar_cache_dir
from graph.server.ports import check_port_free
from graph.server.tools import check_java
from graphrec.errors import Neo4jAuthError, Neo4jUnavailableError, ProvisionError, QueryError

if TYPE_CHECKING:
    from graph.connection import ConnectionInfo
    from graphrec.settings import Settings

log = logging.getLogger(__name__)

ENTRY_POINT = "org.neo4j.server.CommunityEntryPoint"
ADMIN_ENTRY_POINT = "org.neo4j.server.startup.Neo4jAdminCommand"
USER = "neo4j"


#: Characters of generated passwords: letters and digits only. ``neo4j-admin dbms set-initial-password``
#: takes the password as a positional argument, and one that starts with ``-`` (which ``token_urlsafe``
#: produces one time in 64) is read as an option: the start then fails with "Missing required parameter".
PASSWORD_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def new_password(length: int = 24) -> str:
    """A random password of ``length`` letters and digits (~143 bits at the default length)."""
    return "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(length))

class ServerStatus(BaseModel):
    """What ``graphrec neo4j status`` reports."""

    running: bool
    pid: int | None = None
    version: str
    home: str
    bolt_uri: str | None = None
    browser_url: str | None = None
    user: str = USER
    password_file: str
    log_file: str
    stale_pid_removed: bool = False


class _NotReady(Exception):
    """Internal: the server does not answer yet."""


class Neo4jServer:
    """One provisioned Neo4j Community server.

    Args:
        home (Path): Home folder of this server (created on first start).
        version (str): Neo4j version (must match the jar cache).
        jar_cache (JarCache | Path): The shared jars, or their folder (see
            :func:`graph.server.jars.default_jar_cache_dir`; :func:`server_from_settings` picks it).
        bolt_port (int, optional): Bolt port on 127.0.0.1. (default: ``7687``)
        http_port (int, optional): HTTP port on 127.0.0.1 (Browser). (default: ``7474``)
        heap (str, optional): JVM heap. (default: ``"1g"``)
        pagecache (str, optional): Page cache. (default: ``"512m"``)
        apoc (bool, optional): Install APOC core into plugins/. (default: ``True``)
        extra_conf (Mapping[str, str], optional): More neo4j.conf settings. (default: ``None``)
        die_with_parent (bool, optional): Linux only: the server gets SIGTERM when the process that
            started it dies (throwaway test servers; never left behind by a killed pytest).
            (default: ``False``)
    """

    STOP_TIMEOUT_S: float = 120.0

    def __init__(
        self,
        home: Path,
        version: str,
        jar_cache: JarCache | Path,
        bolt_port: int = 7687,
        http_port: int = 7474,
        heap: str = "1g",
        pagecache: str = "512m",
        apoc: bool = True,
        extra_conf: Mapping[str, str] | None = None,
        die_with_parent: bool = False,
    ) -> None:
        self.home = Path(home).expanduser().absolute()
        self.version = version
        self.jars = jar_cache if isinstance(jar_cache, JarCache) else JarCache(Path(jar_cache), version, apoc=apoc)
        self.bolt_port = bolt_port
        self.http_port = http_port
        self.heap = heap
        self.pagecache = pagecache
        self.apoc = apoc
        self.extra_conf = dict(extra_conf or {})
        self.die_with_parent = die_with_parent
        self._proc: subprocess.Popen[bytes] | None = None

    # -- paths -------------------------------------------------------------------------------

    @property
    def conf_dir(self) -> Path:
        """Folder of neo4j.conf."""
        return self.home / "conf"

    @property
    def password_file(self) -> Path:
        """File with the password of user ``neo4j`` (mode 0600)."""
        return self.home / "password"

    @property
    def state_file(self) -> Path:
        """State of the running server, written by :meth:`start`."""
        return self.home / "run" / "graphrec.json"

    @property
    def log_file(self) -> Path:
        """Console output of the JVM."""
        return self.home / "logs" / "console.log"

    # -- public API --------------------------------------------------------------------------

    def status(self) -> ServerStatus:
        """Report whether the server runs; removes a stale state/pid file."""
        state = self._read_state()
        stale = False
        if state is not None and not self._is_our_server(int(state.get("pid", -1))):
            self._clear_state()
            state, stale = None, True
        common = {
            "version": self.version,
            "home": str(self.home),
            "password_file": str(self.password_file),
            "log_file": str(self.log_file),
            "stale_pid_removed": stale,
        }
        if state is None:
            return ServerStatus(running=False, **common)
        return ServerStatus(
            running=True,
            pid=int(state["pid"]),
            bolt_uri=f"bolt://127.0.0.1:{state['bolt_port']}",
            browser_url=f"http://127.0.0.1:{state['http_port']}/browser/",
            **common,
        )

    def connection_info(self) -> ConnectionInfo | None:
        """How to reach the running server, or ``None`` when it is not running."""
        from graph.connection import ConnectionInfo

        st = self.status()
        if not st.running or st.bolt_uri is None:
            return None
        return ConnectionInfo(uri=st.bolt_uri, user=USER, password=self._read_password(), database="neo4j", browser_url=st.browser_url)

    def is_running(self) -> bool:
        """Whether this home's server process is alive."""
        return self.status().running

    def start(self, timeout: float = 180.0) -> ConnectionInfo:
        """Provision (once) and start the server, then wait until it answers ``RETURN 1``.

        A second call while the server runs returns its connection info and starts nothing.

        Args:
            timeout: Seconds to wait for the first answer.

        Returns:
            Connection info with the Bolt URI, user, password and Browser URL.

        Raises:
            ProvisionError: Java/Maven missing or too old, a port in use, the download failed,
                the process died, or it did not answer within ``timeout``.
            Neo4jAuthError: The server rejects the password in the password file.
        """
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "run").mkdir(exist_ok=True)
        with FileLock(str(self.home / "run" / ".graphrec.lock")):
            info = self.connection_info()
            if info is not None:
                return info
            java, _ = check_java()
            check_port_free(self.bolt_port, "Bolt")
            check_port_free(self.http_port, "HTTP")
            self.jars.ensure()
            self._prepare_home()
            password = self._ensure_password(java)
            self._launch(java)
        from graph.connection import ConnectionInfo

        info = ConnectionInfo(
            uri=f"bolt://127.0.0.1:{self.bolt_port}",
            user=USER,
            password=password,
            database="neo4j",
            browser_url=f"http://127.0.0.1:{self.http_port}/browser/",
        )
        try:
            self._wait_ready(info, timeout)
            self._check_browser(info.browser_url or "", timeout=30.0)
        except BaseException:
            self.stop()
            raise
        return info

    def stop(self) -> bool:
        """Stop the server: SIGTERM, wait, SIGKILL after :attr:`STOP_TIMEOUT_S`.

        Returns:
            Whether a running server was stopped.
        """
        state = self._read_state()
        pid = int(state["pid"]) if state else (self._proc.pid if self._proc else -1)
        if pid <= 0 or not self._is_our_server(pid):
            self._clear_state()
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.STOP_TIMEOUT_S
        while time.monotonic() < deadline and self._alive(pid):
            time.sleep(0.2)
        if self._alive(pid):
            log.warning("Neo4j (pid %d) did not stop within %.0f s; killing it", pid, self.STOP_TIMEOUT_S)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            while self._alive(pid):
                time.sleep(0.1)
        self._clear_state()
        return True

    # -- internals ---------------------------------------------------------------------------

    def _prepare_home(self) -> None:
        for sub in ("conf", "data", "logs", "run", "import", "plugins"):
            (self.home / sub).mkdir(parents=True, exist_ok=True)
        (self.conf_dir / "neo4j.conf").write_text(
            render_conf(self.home, self.jars.lib, self.bolt_port, self.http_port, self.heap, self.pagecache, self.apoc, self.extra_conf),
            encoding="utf-8",
        )
        plugins = self.home / "plugins"
        for old in plugins.glob("*.jar"):
            if old.is_symlink():
                old.unlink()
        if self.apoc:
            for jar in self.jars.apoc_dir.glob("*.jar"):
                target = plugins / jar.name
                if not target.exists():
                    target.symlink_to(jar)
        with contextlib.suppress(FileNotFoundError):
            (self.home / "run" / "neo4j.pid").unlink()  # the launcher refuses to start with a stale one

    def _read_password(self) -> str:
        try:
            return self.password_file.read_text(encoding="utf-8").strip()
        except OSError as e:
            raise ProvisionError(f"cannot read the Neo4j password file {self.password_file}: {e}") from e

    def _ensure_password(self, java: str) -> str:
        system_db = self.home / "data" / "databases" / "system"
        if self.password_file.is_file():
            password = self._read_password()
        elif system_db.exists():
            raise ProvisionError(
                f"the Neo4j server in {self.home} already has data but its password file {self.password_file} is missing: "
                f"restore it, or delete {self.home / 'data'} to start from an empty database"
            )
        else:
            password = new_password()
            fd = os.open(self.password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(password + "\n")
        os.chmod(self.password_file, 0o600)
        if not system_db.exists():
            self._set_initial_password(java, password)
        return password

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["NEO4J_HOME"] = str(self.home)
        env["NEO4J_CONF"] = str(self.conf_dir)
        return env

    def _set_initial_password(self, java: str, password: str) -> None:
        cmd = [java, "-cp", f"{self.jars.lib}/*", ADMIN_ENTRY_POINT, "dbms", "set-initial-password", "--verbose", password]
        try:
            proc = subprocess.run(cmd, env=self._env(), cwd=self.home, capture_output=True, text=True, timeout=300, check=False)
        except (OSError, subprocess.SubprocessError) as e:
            raise ProvisionError(f"could not set the initial Neo4j password: {e}") from e
        if proc.returncode != 0:
            lines = (proc.stderr + proc.stdout).strip().splitlines()
            detail = next((ln for ln in lines if "Exception:" in ln), lines[0] if lines else f"exit status {proc.returncode}")
            raise ProvisionError(f"could not set the initial Neo4j password: {detail.strip()[:400]}")

    def _launch(self, java: str) -> None:
        classpath = os.pathsep.join([f"{self.home / 'plugins'}/*", f"{self.conf_dir}/*", f"{self.jars.lib}/*"])
        cmd = [
            java,
            "-cp",
            classpath,
            *JVM_FLAGS,
            f"-Xms{self.heap}",
            f"-Xmx{self.heap}",
            ENTRY_POINT,
            f"--home-dir={self.home}",
            f"--config-dir={self.conf_dir}",
            "--console-mode",
        ]
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as out:
            out.write(f"\n--- graphrec: starting Neo4j {self.version} at {time.strftime('%Y-%m-%d %H:%M:%S')} ---\n".encode())
            out.flush()
            try:
                self._proc = subprocess.Popen(
                    cmd,
                    cwd=self.home,
                    env=self._env(),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=_die_with_parent if self.die_with_parent else None,  # noqa: PLW1509
                )
            except OSError as e:
                raise ProvisionError(f"could not start Java for Neo4j: {e}") from e
        state = {
            "pid": self._proc.pid,
            "bolt_port": self.bolt_port,
            "http_port": self.http_port,
            "version": self.version,
            "started_at": time.time(),
        }
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state), encoding="utf-8")
        tmp.replace(self.state_file)

    def _wait_ready(self, info: ConnectionInfo, timeout: float) -> None:
        from graph.connection import open_driver

        def probe() -> None:
            if self._proc is not None and self._proc.poll() is not None:
                raise ProvisionError(
                    f"Neo4j exited with status {self._proc.returncode} while starting; see {self.log_file}: {self._log_tail()}"
                )
            try:
                driver = open_driver(info, verify=True)
            except Neo4jUnavailableError as e:
                raise _NotReady(str(e)) from e
            try:
                driver.execute_query("RETURN 1 AS ok", database_="neo4j")
            except Exception as e:  # noqa: BLE001 - translated below
                from graph.connection import translate_error

                err = translate_error(e, info.uri)
                if isinstance(err, (Neo4jUnavailableError, QueryError)):  # databases still starting
                    raise _NotReady(str(err)) from e
                raise err from e
            finally:
                driver.close()

        try:
            for attempt in Retrying(
                retry=retry_if_exception_type(_NotReady), stop=stop_after_delay(timeout), wait=wait_fixed(0.5), reraise=False
            ):
                with attempt:
                    probe()
        except RetryError as e:
            raise ProvisionError(
                f"Neo4j did not answer on {info.uri} within {timeout:.0f} s (raise GRAPHREC_NEO4J_START_TIMEOUT_S or see "
                f"{self.log_file}): {self._log_tail()}"
            ) from e
        except Neo4jAuthError as e:
            raise Neo4jAuthError(
                f"Neo4j at {info.uri} rejected the password in {self.password_file}; if it was changed, put the new one "
                f"there, or delete {self.home / 'data'} to start from an empty database"
            ) from e

    def _check_browser(self, url: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last: str = ""
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - local http URL we built
                    body = resp.read(65536).decode("utf-8", "replace")
                if resp.status == 200 and "<html" in body.lower():
                    return
                last = f"HTTP {resp.status}"
            except (urllib.error.URLError, OSError) as e:
                last = str(e)
            time.sleep(0.5)
        raise ProvisionError(f"Neo4j answers on Bolt but the Browser at {url} does not ({last}); see {self.log_file}")

    def _log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_file.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        errors = [ln.strip() for ln in text if " ERROR " in ln or ln.startswith("Caused by:")]
        if errors:  # the first error and the root cause say more than the shutdown lines at the end
            picked = [errors[0]] + ([errors[-1]] if len(errors) > 1 else [])
            return " | ".join(picked)[-800:]
        tail = [line.strip() for line in text[-lines:] if line.strip()]
        return " | ".join(tail)[-800:] or "(empty log)"

    def _read_state(self) -> dict[str, object] | None:
        try:
            data = json.loads(self.state_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) and "pid" in data else None

    def _clear_state(self) -> None:
        for path in (self.state_file, self.home / "run" / "neo4j.pid"):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def _alive(self, pid: int) -> bool:
        if self._proc is not None and self._proc.pid == pid:
            return self._proc.poll() is None  # reaps our own child, so no zombie looks alive
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            return stat.rsplit(")", 1)[1].split()[0] != "Z"
        except (OSError, IndexError):
            return True

    def _is_our_server(self, pid: int) -> bool:
        """Alive and really this home's JVM (a recycled pid of another process does not count)."""
        if pid <= 0 or not self._alive(pid):
            return False
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return True  # no /proc (macOS): trust the pid
        args = [a.decode("utf-8", "replace") for a in cmdline if a]
        if not args:  # empty while the process execs (or for zombies, already excluded): alive, so ours
            return True
        return ENTRY_POINT in args and f"--home-dir={self.home}" in args


def _die_with_parent() -> None:
    """In the child before exec: ask Linux for SIGTERM when the parent dies (no-op elsewhere)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def server_from_settings(settings: Settings, bolt_port: int | None = None, http_port: int | None = None) -> Neo4jServer:
    """The user's provisioned server as configured by ``settings`` (ports may be overridden)."""
    return Neo4jServer(
        home=settings.neo4j_home,
        version=settings.neo4j_version,
        jar_cache=JarCache(default_jar_cache_dir(settings.home, settings.neo4j_version), settings.neo4j_version),
        bolt_port=bolt_port or settings.neo4j_bolt_port,
        http_port=http_port or settings.neo4j_http_port,
        heap=settings.neo4j_heap,
        pagecache=settings.neo4j_pagecache,
    )


__all__ = ["Neo4jServer", "ServerStatus", "server_from_settings"]
