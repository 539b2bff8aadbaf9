"""Test helpers: a client that signs requests with the CSRF token, and HTMX request headers."""

from __future__ import annotations

from flask import session
from flask_login import FlaskLoginClient
from flask_wtf.csrf import generate_csrf

from portal.extensions import db

HTMX = {"HX-Request": "true"}


class PortalClient(FlaskLoginClient):
    """Test client that logs in a given ``user=`` and sends a valid CSRF token with every POST.

    ``csrf=False`` on a request sends none, to test that the portal refuses it.
    Each request runs in its own application context, as in production, so
    nothing cached on ``g`` or in the database session leaks between requests;
    the test's own session is committed before and after, so that each side
    sees what the other wrote.
    """

    def open(self, *args, **kwargs):
        send_csrf = kwargs.pop("csrf", True)
        method = kwargs.get("method", "GET")
        if send_csrf and method not in ("GET", "HEAD", "OPTIONS"):
            headers = dict(kwargs.pop("headers", None) or {})
            headers.setdefault("X-CSRFToken", self.csrf_token())
            kwargs["headers"] = headers
        db.session.commit()
        with self.application.app_context():
            resp = super().open(*args, **kwargs)
        db.session.commit()
        return resp

    def csrf_token(self) -> str:
        app = self.application
        with self.session_transaction() as sess:
            raw = sess.get("csrf_token")
        with app.app_context(), app.test_request_context():
            if raw:
                session["csrf_token"] = raw
            token = generate_csrf()
            raw = session["csrf_token"]
        with self.session_transaction() as sess:
            sess["csrf_token"] = raw
        return token
