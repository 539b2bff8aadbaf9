"""Flask-Login wiring: loading users, the login redirect (HTMX-aware), the waiting room for pending users."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, request, url_for
from flask_login import current_user

from portal.extensions import db, login_manager
from portal.htmx import is_htmx, redirect_to
from portal.models import User

# What a user whose membership awaits approval may still reach.
PENDING_ALLOWED = {"auth.pending", "auth.logout", "auth.account", "static", "boards.kiosk"}


def safe_next(target: str | None) -> str:
    """A local path to go to after signing in; anything that could leave the site becomes '/'."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _next_path() -> str:
    """Where the user was going: for HTMX, the page they were on rather than the fragment's URL."""
    if is_htmx():
        current = urlsplit(request.headers.get("HX-Current-URL", ""))
        path, query = current.path, current.query
    else:
        path, query = request.path, request.query_string.decode("utf-8", "replace")
    return safe_next(path + ("?" + query if query else ""))


def init_login(app: Flask) -> None:
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.session_protection = "basic"

    @login_manager.user_loader
    def load_user(user_id: str) -> User | None:
        return db.session.get(User, int(user_id)) if user_id.isdigit() else None

    @login_manager.unauthorized_handler
    def unauthorized():
        resp = redirect_to(url_for("auth.login", next=_next_path()))
        if is_htmx():
            resp.status_code = 401  # htmx follows HX-Redirect whatever the status
        return resp

    @app.before_request
    def pending_gate():
        if (
            current_user.is_authenticated
            and current_user.is_pending
            and request.endpoint not in PENDING_ALLOWED
        ):
            return redirect_to(url_for("auth.pending"))
        return None
