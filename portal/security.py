"""Response headers that every page carries."""

from __future__ import annotations

from flask import Flask, Response, request

# No inline scripts anywhere: HTMX is configured through a <meta> tag, so 'self' suffices.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
)


HSTS = "max-age=31536000; includeSubDomains"  # a year; browsers heed it only over HTTPS


def init_app(app: Flask) -> None:
    behind_tls = app.config["PORTAL"].public_url.startswith("https://")

    @app.after_request
    def headers(resp: Response) -> Response:
        if behind_tls or request.is_secure:  # TLS ends at the ingress: its URL says so, not the request
            resp.headers.setdefault("Strict-Transport-Security", HSTS)
        resp.headers.setdefault("Content-Security-Policy", CSP)
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("Referrer-Policy", "same-origin")
        resp.headers.setdefault("X-Frame-Options", "DENY")
        return resp
