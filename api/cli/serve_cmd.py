"""``graphrec serve``: run the REST API with uvicorn (127.0.0.1 unless configured otherwise)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add ``graphrec serve``."""

    @app.command("serve")
    def serve_cmd(
        host: str | None = typer.Option(None, "--host", help="Bind address (default: GRAPHREC_API_HOST, 127.0.0.1)."),
        port: int | None = typer.Option(None, "--port", help="Port (default: GRAPHREC_API_PORT, 8000)."),
        log_level: str = typer.Option("warning", "--log-level", help="uvicorn log level."),
        workers: int | None = typer.Option(None, "--workers", min=1, max=64,
                                           help="Worker processes (default: GRAPHREC_API_WORKERS, 1)."),
    ) -> None:
        """Serve /v1 (docs at /docs, metrics at /metrics) until interrupted."""
        import uvicorn

        from api.main import create_app
        from graphrec.settings import get_settings

        settings = get_settings()
        h, p = host or settings.api_host, port or settings.api_port
        n = workers or settings.api_workers
        typer.echo(f"graphrec API on http://{h}:{p}/v1 (docs: http://{h}:{p}/docs), {n} worker(s); Ctrl-C stops it")
        if n == 1:
            uvicorn.run(create_app(settings), host=h, port=p, log_level=log_level, access_log=False)
        else:  # each worker process builds its own app from the same settings (the environment)
            uvicorn.run("api.main:create_app", factory=True, workers=n, host=h, port=p, log_level=log_level, access_log=False)
