"""Domain exceptions raised by services, and the handlers that answer them.

Every error answers with a page, or with a fragment for an HTMX request, and a
4xx status; an unexpected exception answers 500 without leaking its text.
"""

from __future__ import annotations

from flask import Flask, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from portal.htmx import is_htmx


class DomainError(Exception):
    status = 400
    title = "Bad request"

    def __init__(self, message: str = ""):
        super().__init__(message)
        self.message = message or self.title


class NotFound(DomainError):
    """Absent, or not visible to this user: the two are indistinguishable on purpose."""

    status = 404
    title = "Not found"


class PermissionDenied(DomainError):
    status = 403
    title = "Forbidden"


class Conflict(DomainError):
    status = 409
    title = "Conflict"


class ValidationFailed(DomainError):
    """Input refused, with a message per field (``""`` for the form as a whole)."""

    status = 422
    title = "Invalid input"

    def __init__(self, errors: dict[str, list[str]] | str):
        if isinstance(errors, str):
            errors = {"": [errors]}
        self.errors = errors
        super().__init__("; ".join(m for msgs in errors.values() for m in msgs))


def _error_response(status: int, title: str, message: str):
    template = "errors/_message.html" if is_htmx() else "errors/page.html"
    resp = render_template(template, status=status, title=title, message=message)
    headers = {"Vary": "HX-Request"}
    if is_htmx():
        # Errors go to the page's message area, whatever the element that asked.
        headers.update({"HX-Retarget": "#flash", "HX-Reswap": "innerHTML"})
    return resp, status, headers


def init_app(app: Flask) -> None:
    @app.errorhandler(DomainError)
    def domain_error(exc: DomainError):
        return _error_response(exc.status, exc.title, exc.message)

    @app.errorhandler(CSRFError)
    def csrf_error(exc: CSRFError):
        return _error_response(
            400, "Form expired", "The form's security token is missing or expired. Reload the page and try again."
        )

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        if exc.code is None or exc.code < 400:
            return exc
        if exc.code == 429:
            return _error_response(429, "Too many attempts", "Too many attempts. Wait a minute and try again.")
        return _error_response(exc.code, exc.name, exc.description or exc.name)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        app.logger.exception("unhandled error on %s %s", request.method, request.path)
        return _error_response(500, "Internal error", "Something went wrong on our side; it has been logged.")
