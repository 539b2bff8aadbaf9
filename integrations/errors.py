"""One error hierarchy for every outside system.

Adapters translate their library's errors into these classes, keeping the
original as ``__cause__`` and the system's own message, so that the engine
decides what to do (retry, stop, report) without knowing which system spoke.
"""

from __future__ import annotations


class IntegrationError(Exception):
    """Root of every outside-system error. ``transient`` errors are worth retrying."""

    transient = False

    def __init__(self, system: str, message: str, status: int | None = None):
        super().__init__(f"{system}: {message}")
        self.system = system
        self.message = message
        self.status = status


class Unavailable(IntegrationError):
    """The system did not answer, timed out, or answered 5xx: try again later."""

    transient = True


class RateLimited(Unavailable):
    """429: try again after ``retry_after`` seconds, when the system said."""

    def __init__(self, system: str, message: str, retry_after: float | None = None, status: int | None = 429):
        super().__init__(system, message, status)
        self.retry_after = retry_after


class NotFound(IntegrationError):
    pass


class Conflict(IntegrationError):
    """The thing exists already in a way we cannot adopt, or a concurrent change won."""


class AuthFailed(IntegrationError):
    """401 or 403: the portal's credentials are wrong, expired, or lack a permission."""


class InvalidRequest(IntegrationError):
    """The system refused the request as malformed (400, 422)."""
