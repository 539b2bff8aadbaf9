"""gunicorn's settings for the portal, as the image runs it (``gunicorn --config gunicorn.conf.py app:app``).

gunicorn also reads this file by itself when started in the checkout (the chart's command, in the image's
folder, too); its command-line flags win. Each setting can be changed from the environment; anything else
through gunicorn's own ``GUNICORN_CMD_ARGS``.
"""

import os

# The image sets 0.0.0.0:8000; a gunicorn started in a checkout keeps to loopback.
bind = [os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")]
workers = int(os.environ.get("GUNICORN_WORKERS", "4"))
# A worker silent for this long is killed and replaced.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
# On SIGTERM, requests under way get this long to finish: under Kubernetes' default 30 s grace period, so that
# gunicorn stops them itself before the kubelet's SIGKILL.
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "25"))
# The workers' heartbeat files: in memory, and writable with a read-only root file system.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None

# The workers are separate processes: /metrics adds up all of their figures only when they keep them in one
# folder (prometheus_client's multiprocess mode), PROMETHEUS_MULTIPROC_DIR. The image names one for the web
# server alone in GUNICORN_PROMETHEUS_DIR (set here, before any worker starts), so that the worker and the
# migrations, started without this file, are not in multiprocess mode where that folder does not exist.
PROMETHEUS_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("GUNICORN_PROMETHEUS_DIR")
if PROMETHEUS_DIR:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = PROMETHEUS_DIR
    # Imported now: child_exit runs in gunicorn's SIGCHLD handler, where an import under way when a second
    # worker exits would be entered again and fail.
    from prometheus_client import multiprocess


def on_starting(server):
    """Make the Prometheus folder: under an emptyDir /tmp it is not there yet. A previous server's files are
    kept, so that its counts go on being added up after a container restarts in its pod (portal.metrics)."""
    if PROMETHEUS_DIR:
        os.makedirs(PROMETHEUS_DIR, exist_ok=True)


def child_exit(server, worker):
    """Drop a dead worker's live gauges from the Prometheus figures."""
    if PROMETHEUS_DIR:
        multiprocess.mark_process_dead(worker.pid)


# gunicorn's own lines (starting, a worker booted or killed) in the portal's format, so that every line of the
# container is one JSON object when PORTAL_LOG_FORMAT is json (its default).
if os.environ.get("PORTAL_LOG_FORMAT", "json") == "json":
    logconfig_dict = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "portal.logging_config.JsonFormatter"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
        "loggers": {name: {"handlers": ["stderr"], "level": "INFO", "propagate": False}
                    for name in ("gunicorn.error", "gunicorn.access")},
        "root": {"level": "INFO", "handlers": []},  # the portal's own handler is added by create_app
    }
