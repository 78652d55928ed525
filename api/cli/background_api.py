"""Run ``graphrec serve`` in a child process for the commands that need a live API (demo, bench serve)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from graphrec.errors import ConfigError


@dataclass(frozen=True)
class BackgroundAPI:
    """A running API child process and its base URL (``http://host:port``)."""

    process: subprocess.Popen[bytes]
    base_url: str


@contextmanager
def background_api(
    host: str, port: int, env: Mapping[str, str] | None = None, timeout_s: float = 120.0, quiet: bool = False
) -> Iterator[BackgroundAPI]:
    """Start ``graphrec serve --host HOST --port PORT``, wait until ``/v1/health`` answers 200, stop it on exit.

    Args:
        host: Bind address.
        port: Port.
        env: Environment of the child (default: this process's).
        timeout_s: How long to wait for the first healthy answer.
        quiet: Discard the child's stdout and keep its stderr (shown in the error if it does not come
            up) instead of letting both through to the terminal.

    Raises:
        ConfigError: The API exited or did not become healthy in time.
    """
    import httpx

    proc = subprocess.Popen(
        [sys.executable, "-m", "api.cli.main", "serve", "--host", host, "--port", str(port)],
        env=dict(env) if env is not None else None,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL if quiet else None,
        stderr=subprocess.PIPE if quiet else None,
    )
    base = f"http://{host}:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        with httpx.Client(base_url=base, timeout=10.0) as client:
            while True:
                try:
                    if client.get("/v1/health").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read().decode(errors="replace")[-2000:] if quiet and proc.poll() is not None and proc.stderr else ""
                    raise ConfigError(f"the API did not come up on {base} (port in use? try another port) {err}".strip())
                time.sleep(0.3)
        yield BackgroundAPI(process=proc, base_url=base)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
