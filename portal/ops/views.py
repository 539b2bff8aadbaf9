"""/healthz, /readyz and /metrics: for the kubelet's probes and Prometheus. No login, CSRF or rate limit.

/healthz says the process answers and touches nothing else: a database or Redis outage must not get every
web pod restarted. /readyz says whether this pod should get traffic (see ``portal.services.readiness``).
/metrics is open unless PORTAL_METRICS_TOKEN is set; then it asks for that token as a bearer token.
"""

from __future__ import annotations

import hmac

from flask import Blueprint, Flask, Response, current_app, jsonify, request

from jobs import ALL_QUEUES
from portal.extensions import csrf, limiter
from portal.metrics import exposition
from portal.services.readiness import OK, migrations_head, quick_redis, readiness

bp = Blueprint("ops", __name__)
csrf.exempt(bp)
limiter.exempt(bp)
NO_STORE = {"Cache-Control": "no-store"}


def init_app(app: Flask) -> None:
    """Register the endpoints; the migrations' head is read here, once (the scripts do not change under us)."""
    app.extensions["ops_redis"] = quick_redis(app.config["PORTAL"].redis_url)  # connects at its first command
    app.extensions["migrations_head"] = migrations_head(app.extensions["migrate"].directory)
    app.register_blueprint(bp)


@bp.route("/healthz")
def healthz():
    return Response("ok\n", 200, {"Content-Type": "text/plain; charset=utf-8", **NO_STORE})


@bp.route("/readyz")
def readyz():
    checks = readiness(current_app.extensions["ops_redis"], current_app.extensions["migrations_head"])
    status = 200 if all(value == OK for value in checks.values()) else 503
    return jsonify(checks), status, NO_STORE


@bp.route("/metrics")
def metrics():
    token = current_app.config["PORTAL"].metrics_token
    if token and not _bearer_matches(request.headers.get("Authorization", ""), token):
        return Response("a bearer token is needed\n", 401,
                        {"WWW-Authenticate": 'Bearer realm="metrics"', "Content-Type": "text/plain; charset=utf-8"})
    from prometheus_client import CONTENT_TYPE_LATEST

    body = exposition(current_app.extensions["ops_redis"], ALL_QUEUES)
    return Response(body, 200, {"Content-Type": CONTENT_TYPE_LATEST, **NO_STORE})


def _bearer_matches(header: str, token: str) -> bool:
    scheme, _, given = header.partition(" ")
    # Compared in constant time, whatever the scheme, so that the answer's time says nothing of the token.
    same = hmac.compare_digest(given.strip().encode(), token.encode())
    return scheme.lower() == "bearer" and same


def metrics_only_app(token: str) -> Flask:
    """What ``flask metrics-server`` serves beside a worker: /metrics of the processes sharing its
    PROMETHEUS_MULTIPROC_DIR (the jobs' and steps' figures; the queues are the web's to report), behind the
    same token, and /healthz."""
    from prometheus_client import CONTENT_TYPE_LATEST

    app = Flask("portal-worker-metrics")

    @app.route("/healthz")
    def alive():
        return Response("ok\n", 200, {"Content-Type": "text/plain; charset=utf-8", **NO_STORE})

    @app.route("/metrics")
    def scrape():
        if token and not _bearer_matches(request.headers.get("Authorization", ""), token):
            return Response("a bearer token is needed\n", 401, {"WWW-Authenticate": 'Bearer realm="metrics"',
                                                                "Content-Type": "text/plain; charset=utf-8"})
        return Response(exposition(None, []), 200, {"Content-Type": CONTENT_TYPE_LATEST, **NO_STORE})

    return app
