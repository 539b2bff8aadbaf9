"""The developer portal: a Flask application built by create_app()."""

from __future__ import annotations

from typing import Any, Mapping

from flask import Flask
from jinja2 import StrictUndefined

from portal.config import INSTANCE_DIR, Settings, instance_secret_key


def create_app(config: Settings | Mapping[str, Any] | None = None) -> Flask:
    """Build the portal. ``config`` is a Settings, or overrides applied to the PORTAL_* environment."""
    if isinstance(config, Settings):
        settings = config
    else:
        settings = Settings.from_env().replace(dict(config or {}))

    app = Flask(__name__, instance_path=str(INSTANCE_DIR))
    _configure(app, settings)

    from portal import cli, database, errors, extensions, logging_config, metrics, security, templating
    from portal.auth.session import init_login

    logging_config.configure(settings)  # once per process
    logging_config.init_app(app)  # first, so that every other hook's lines carry the request's id
    metrics.init_app(app)
    database.init_app(app)
    extensions.migrate.init_app(app, extensions.db, directory=str(INSTANCE_DIR.parent / "migrations"), render_as_batch=True)
    extensions.csrf.init_app(app)
    extensions.limiter.init_app(app)
    init_login(app)
    errors.init_app(app)
    templating.init_app(app)
    security.init_app(app)
    cli.init_app(app)

    from jobs import init_app as init_jobs

    init_jobs(app)

    from portal.admin.views import bp as admin_bp
    from portal.apps.views import bp as apps_bp
    from portal.auth.views import bp as auth_bp
    from portal.boards.views import bp as boards_bp
    from portal.builds.views import bp as builds_bp
    from portal.dashboard.views import bp as dashboard_bp
    from portal.deployments.views import bp as deployments_bp
    from portal.git.views import bp as git_bp
    from portal.hooks.views import bp as hooks_bp
    from portal.projects.views import bp as projects_bp
    from portal.logs.views import bp as logs_bp
    from portal.provisioning.views import bp as provisioning_bp
    from portal.resources.views import bp as resources_bp
    from portal.teams.views import bp as teams_bp

    for bp in (auth_bp, dashboard_bp, projects_bp, apps_bp, provisioning_bp, builds_bp, deployments_bp, teams_bp,
               resources_bp, logs_bp, boards_bp, admin_bp, hooks_bp, git_bp):
        app.register_blueprint(bp)

    from portal.ops import views as ops

    ops.init_app(app)
    return app


def _configure(app: Flask, settings: Settings) -> None:
    secret = settings.secret_key or instance_secret_key(INSTANCE_DIR)
    if settings.database_url.startswith("sqlite:///"):
        INSTANCE_DIR.mkdir(parents=True, exist_ok=True)
    storage = "memory://" if settings.testing and not settings.ratelimit_storage_url else (
        settings.ratelimit_storage_url or settings.redis_url
    )
    app.config.update(
        PORTAL=settings,
        SECRET_KEY=secret,
        TESTING=settings.testing,
        SQLALCHEMY_DATABASE_URI=settings.database_url,
        SQLALCHEMY_ENGINE_OPTIONS=_engine_options(settings.database_url),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.session_cookie_secure,
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SAMESITE="Lax",
        WTF_CSRF_TIME_LIMIT=None,  # tied to the session instead, so long-open pages keep working
        RATELIMIT_STORAGE_URI=storage,
        RATELIMIT_IN_MEMORY_FALLBACK_ENABLED=True,
        RATELIMIT_HEADERS_ENABLED=True,
        MAX_CONTENT_LENGTH=1024 * 1024,
    )
    if settings.strict_templates or settings.testing:
        app.jinja_env.undefined = StrictUndefined


def _engine_options(url: str) -> dict[str, Any]:
    if url.startswith("sqlite"):
        # Several processes (web, workers) share the file: wait for locks instead of failing.
        return {"connect_args": {"timeout": 30}}
    # A database host that drops packets must not hold a request (or a readiness probe) for minutes.
    return {"pool_pre_ping": True, "connect_args": {"connect_timeout": 5}}
