"""``graphrec neo4j start|stop|status|style``: the project's own Neo4j server and its Browser style.

The server is assembled from Maven Central jars into ``GRAPHREC_HOME`` (see ``graph/server``).
When ``NEO4J_URI`` is set, graphrec uses that server and these commands provision nothing.
"""

from __future__ import annotations

import json
import time

import typer

from graphrec.settings import Settings, get_settings

HELP = "Run the project's own Neo4j 5.26 Community server (assembled from Maven Central jars; no Docker)."


def _external_note(settings: Settings) -> str:
    return (
        f"NEO4J_URI is set ({settings.neo4j_uri}): graphrec uses that server and provisions nothing.\n"
        "To caption nodes by name in its Neo4j Browser, paste the command `graphrec neo4j style` prints."
    )


def _print_block(status_line: str, bolt_uri: str | None, browser_url: str | None, user: str, password_file: str, home: str, log_file: str) -> None:
    typer.echo(status_line)
    if bolt_uri:
        typer.echo(f"  Bolt URI:      {bolt_uri}")
    if browser_url:
        typer.echo(f"  Browser:       {browser_url}   (connect with the Bolt URI, user and password below)")
    typer.echo(f"  User:          {user}")
    typer.echo(f"  Password file: {password_file}   (`cat` it; readable only by you)")
    typer.echo(f"  Home:          {home}")
    typer.echo(f"  Server log:    {log_file}")
    if browser_url:
        typer.echo("  Browser style: applied when the Browser connects (users by id, items by title; `graphrec neo4j style`)")


def start(
    bolt_port: int | None = typer.Option(None, "--bolt-port", min=1, max=65535, help="Bolt port (default: GRAPHREC_NEO4J_BOLT_PORT, 7687)."),
    http_port: int | None = typer.Option(None, "--http-port", min=1, max=65535, help="HTTP/Browser port (default: GRAPHREC_NEO4J_HTTP_PORT, 7474)."),
    timeout: float | None = typer.Option(None, "--timeout", min=1.0, help="Seconds to wait for the first answer (default: GRAPHREC_NEO4J_START_TIMEOUT_S)."),
) -> None:
    """Provision (first time: download the jars once) and start Neo4j in the background; wait until it answers."""
    from graph.server import server_from_settings

    settings = get_settings()
    if settings.neo4j_uri:
        typer.echo(_external_note(settings))
        return
    server = server_from_settings(settings, bolt_port=bolt_port, http_port=http_port)
    st = server.status()
    if st.stale_pid_removed:
        typer.echo("Removed a stale pid file (the previous server is gone).")
    if st.running:
        _print_block(f"Neo4j {st.version} is already running (pid {st.pid}); nothing to do.", st.bolt_uri, st.browser_url, st.user, st.password_file, st.home, st.log_file)
        return
    t0 = time.perf_counter()
    server.start(timeout=timeout or settings.neo4j_start_timeout_s)
    st = server.status()
    _print_block(
        f"Neo4j {st.version} started in {time.perf_counter() - t0:.1f} s (pid {st.pid}).",
        st.bolt_uri, st.browser_url, st.user, st.password_file, st.home, st.log_file,
    )


def stop() -> None:
    """Stop the provisioned Neo4j (clean shutdown; killed only if it hangs for 120 s)."""
    from graph.server import server_from_settings

    settings = get_settings()
    if settings.neo4j_uri:
        typer.echo(_external_note(settings))
        return
    server = server_from_settings(settings)
    st = server.status()
    if not st.running:
        typer.echo("Neo4j is not running." + (" (removed a stale pid file)" if st.stale_pid_removed else ""))
        return
    t0 = time.perf_counter()
    server.stop()
    typer.echo(f"Neo4j stopped (pid {st.pid}, {time.perf_counter() - t0:.1f} s).")


def status(as_json: bool = typer.Option(False, "--json", help="Print the status as JSON.")) -> None:
    """Say whether the provisioned Neo4j runs, with its URIs and where the password file is."""
    from graph.server import server_from_settings

    settings = get_settings()
    if settings.neo4j_uri:
        if as_json:
            typer.echo(json.dumps({"external": True, "running": None, "bolt_uri": settings.neo4j_uri, "user": settings.neo4j_user, "database": settings.neo4j_database}))
        else:
            typer.echo(_external_note(settings))
        return
    st = server_from_settings(settings).status()
    if as_json:
        typer.echo(json.dumps({"external": False, **st.model_dump()}))
        return
    line = f"Neo4j {st.version}: running (pid {st.pid})" if st.running else f"Neo4j {st.version}: stopped"
    if st.stale_pid_removed:
        line += " (removed a stale pid file)"
    _print_block(line, st.bolt_uri, st.browser_url, st.user, st.password_file, st.home, st.log_file)


def style(grass: bool = typer.Option(False, "--grass", help="Print the GraSS file instead of the :style command.")) -> None:
    """Print the Neo4j Browser style command (users by id, items by title, attributes by name) to paste into any Browser."""
    from graph.server.browser import grass_text, style_command

    typer.echo(grass_text().rstrip() if grass else style_command())


def register(app: typer.Typer) -> None:
    """Add the ``neo4j`` command group to the ``graphrec`` app."""
    neo4j_app = typer.Typer(name="neo4j", help=HELP, no_args_is_help=True)
    neo4j_app.command("start")(start)
    neo4j_app.command("stop")(stop)
    neo4j_app.command("status")(status)
    neo4j_app.command("style")(style)
    app.add_typer(neo4j_app, name="neo4j")
