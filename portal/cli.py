"""Flask commands: `flask worker`, the configuration reference, and rotating the secrets key."""

from __future__ import annotations

import os

import click
from flask import Flask


def init_app(app: Flask) -> None:
    @app.cli.command("worker")
    @click.option("--burst", is_flag=True, help="Stop when the queues are empty.")
    @click.option("--name", default=None, help="Worker name (defaults to RQ's).")
    @click.argument("queues", nargs=-1)
    def worker(burst: bool, name: str | None, queues: tuple[str, ...]) -> None:
        """Run an RQ worker on QUEUES (all of the portal's queues but the built-in runner's when none is given)."""
        from jobs import ALL_QUEUES, DEFAULT_QUEUES
        from jobs.worker import run_worker

        unknown = set(queues) - set(ALL_QUEUES)
        if unknown:
            raise click.BadParameter(f"unknown queue(s) {', '.join(sorted(unknown))}; known: {', '.join(ALL_QUEUES)}")
        run_worker(list(queues) or DEFAULT_QUEUES, burst=burst, name=name)

    @app.cli.command("watch-clusters")
    @click.option("--refresh", default=30.0, show_default=True, help="Seconds between two reads of the registry.")
    def watch_clusters(refresh: float) -> None:
        """Keep the cluster cache: list-then-watch every registered cluster until SIGTERM or SIGINT."""
        import logging
        import signal
        import threading

        from portal.services.cluster_cache import keep_cluster_cache

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        keep_cluster_cache(app.config["PORTAL"], stop, refresh)

    @app.cli.command("collect-logs")
    @click.option("--interval", default=2.0, show_default=True, help="Seconds between two reads of every container.")
    @click.option("--refresh", default=30.0, show_default=True,
                  help="Seconds between two reads of the applications and clusters.")
    @click.option("--once", is_flag=True, help="One round of every cluster, then exit.")
    def collect_logs_command(interval: float, refresh: float, once: bool) -> None:
        """Ship the applications' pod logs to the central log store (embedded mode: what Fluent Bit does in a
        cluster) until SIGTERM or SIGINT."""
        import logging
        import signal
        import threading

        from portal.errors import Conflict
        from portal.services.log_collector import collect_logs

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        stop = threading.Event()
        if not once:  # the process's own: a test's runner keeps its handlers and loggers
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: stop.set())
            for client in ("opensearch", "elastic_transport"):  # a line per request otherwise
                logging.getLogger(client).setLevel(logging.WARNING)
        try:
            done = collect_logs(app.config["PORTAL"], stop, interval, refresh, once)
        except Conflict as exc:
            raise click.UsageError(exc.message) from None
        for cluster, result in done.items():
            click.echo(f"{cluster}: {result if isinstance(result, str) else f'{result.lines} lines'}")
        if any(isinstance(result, str) for result in done.values()):
            raise SystemExit(1)

    @app.cli.command("metrics-server")
    @click.option("--host", default="0.0.0.0", show_default=True)
    @click.option("--port", default=9100, show_default=True, type=int)
    def metrics_server(host: str, port: int) -> None:
        """Serve /metrics of the worker processes sharing PROMETHEUS_MULTIPROC_DIR (a worker pod's sidecar)."""
        import signal
        import threading
        from wsgiref.simple_server import WSGIRequestHandler, make_server

        from portal.config import prometheus_multiproc_dir
        from portal.ops.views import metrics_only_app

        directory = prometheus_multiproc_dir()
        if not directory:
            raise click.UsageError("PROMETHEUS_MULTIPROC_DIR is not set: there is nothing of other processes to serve.")
        os.makedirs(directory, exist_ok=True)

        class Quiet(WSGIRequestHandler):
            def log_message(self, *args) -> None:  # a line per scrape otherwise
                pass

        server = make_server(host, port, metrics_only_app(app.config["PORTAL"].metrics_token), handler_class=Quiet)
        def stop(signum, frame) -> None:  # serve_forever ends once shutdown() is called from another thread
            threading.Thread(target=server.shutdown, daemon=True).start()

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, stop)
        click.echo(f"serving the metrics of {directory} on {host}:{server.server_port}")
        try:
            server.serve_forever()
        finally:
            server.server_close()

    @app.cli.command("config-reference")
    def config_reference() -> None:
        """Print every PORTAL_* setting with its type, default and meaning: docs/configuration.md (Markdown)."""
        from portal.config import reference_document

        click.echo(reference_document(), nl=False)

    @app.cli.command("rotate-secrets")
    def rotate_secrets_command() -> None:
        """Re-encrypt every stored secret with the first key of PORTAL_SECRET_KEYS."""
        from portal.services.secrets import rotate_secrets

        click.echo(f"re-encrypted {rotate_secrets()} secrets with the first configured key")

    @app.cli.command("register-cluster")
    @click.argument("name")
    @click.option("--api-url", required=True, help="The API server's URL.")
    @click.option("--kubeconfig", "kubeconfig", type=click.Path(exists=True, dir_okay=False),
                  help="A kubeconfig file with embedded credentials (kept encrypted).")
    @click.option("--team", "teams", multiple=True, help="A team deploying there (repeatable).")
    @click.option("--central", is_flag=True, help="The central cluster (where Argo CD runs).")
    def register_cluster_command(name: str, api_url: str, kubeconfig: str | None, teams: tuple[str, ...],
                                 central: bool) -> None:
        """Register (or update) a cluster and bind it to teams, as an admin would on the Clusters page."""
        from pathlib import Path

        from portal.errors import ValidationFailed
        from portal.services.clusters import ClusterInput, ensure_cluster_from_command_line

        data = ClusterInput(name=name, api_url=api_url, is_central=central, team_names=list(teams),
                            kubeconfig=Path(kubeconfig).read_text() if kubeconfig else "")
        try:
            cluster = ensure_cluster_from_command_line(data)
        except ValidationFailed as exc:
            raise click.UsageError(str(exc)) from None
        click.echo(f"cluster {cluster.name} at {cluster.api_url} for {', '.join(teams) or 'no team'}")
