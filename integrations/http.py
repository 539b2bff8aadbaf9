"""What every adapter that speaks HTTP shares: its session, the meaning of an HTTP status, Retry-After, scrubbing.

One TLS rule: ``verify=False`` (PORTAL_TLS_VERIFY=false) wins over a CA bundle; a bundle otherwise replaces
the default CAs. One retry policy: idempotent requests are retried after a connection error, a timeout or a
5xx, with a short backoff; a POST is retried only when its connection could not be made, since it may have
taken effect before the answer was lost. A 429 is never retried nor slept through here: it becomes
``RateLimited`` with the server's Retry-After, and the caller decides when to try again.

How to read a system's own message out of its answer stays with each adapter: that is where systems differ.

Every call is measured here, by the system it went to: ``portal_integration_request_duration_seconds`` (one
call, retries included, by ``outcome``: ok, client_error, denied, rate_limited, server_error, unreachable) and
``portal_integration_errors_total`` (the outcomes that say the system failed us: all but ok and client_error).
Sessions made by ``session`` or ``configure`` are measured by their adapter; clients with a transport of their
own call ``observe`` (the Kubernetes API's).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any

import requests
import urllib3
from prometheus_client import Counter, Histogram
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from integrations.errors import (
    AuthFailed, Conflict, IntegrationError, InvalidRequest, NotFound, RateLimited, Unavailable,
)

IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
TRANSIENT_STATUSES = (500, 502, 503, 504)

CALLS = Histogram("portal_integration_request_duration_seconds",
                  "Time an outside system took to answer one call (retries included), by system and outcome.",
                  ["system", "outcome"])
ERRORS = Counter("portal_integration_errors", "Calls to an outside system that got no answer, a 5xx, a 429 "
                 "or a refusal (401, 403), by system and outcome.", ["system", "outcome"])
FAILURES = frozenset({"unreachable", "server_error", "rate_limited", "denied"})


def outcome(status: int | None) -> str:
    """What a call's answer says, in the few words the metrics use; ``None``: there was no answer."""
    if status is None:
        return "unreachable"
    if status in (401, 403):
        return "denied"
    if status == 429:
        return "rate_limited"
    if status >= 500:
        return "server_error"
    return "client_error" if status >= 400 else "ok"


def observe(system: str, outcome: str, seconds: float) -> None:
    """Count one call to ``system`` that took ``seconds`` and ended in ``outcome`` (see ``outcome()``)."""
    CALLS.labels(system=system, outcome=outcome).observe(seconds)
    if outcome in FAILURES:
        ERRORS.labels(system=system, outcome=outcome).inc()


class MeasuredAdapter(HTTPAdapter):
    """requests' adapter, measuring each call it sends (urllib3's retries happen inside one call)."""

    def __init__(self, system: str, **kwargs: Any):
        self.system = system
        super().__init__(**kwargs)

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        started = time.perf_counter()
        try:
            response = super().send(request, *args, **kwargs)
        except Exception:
            observe(self.system, outcome(None), time.perf_counter() - started)
            raise
        observe(self.system, outcome(response.status_code), time.perf_counter() - started)
        return response


def tls_verify(verify: bool, ca_bundle: str) -> bool | str:
    """What requests' ``verify`` takes: False, the CA bundle's path, or True for the default CAs."""
    return (ca_bundle or True) if verify else False


def retry_policy(retries: int) -> Retry:
    """The retry policy as urllib3 takes it: for requests' sessions here, and for clients built on urllib3 alone
    (the Kubernetes client's ``Configuration.retries``)."""
    return Retry(total=retries, connect=retries, read=retries, status=retries, other=0, backoff_factor=0.2,
                 allowed_methods=IDEMPOTENT, status_forcelist=TRANSIENT_STATUSES, raise_on_status=False,
                 respect_retry_after_header=False)


def configure(session: requests.Session, verify: bool, ca_bundle: str, retries: int,
              system: str = "other") -> requests.Session:
    """Give ``session`` (one of ours, or a client library's) the TLS setting and the retry policy, its calls
    measured as calls to ``system``; returns it."""
    adapter = MeasuredAdapter(system, max_retries=retry_policy(retries))
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.verify = tls_verify(verify, ca_bundle)
    return session


def session(verify: bool, ca_bundle: str, retries: int, auth: Any = None, system: str = "other") -> requests.Session:
    """A new session with ``auth`` (a requests auth, a (user, password) pair, or None), TLS and retries, its
    calls measured as calls to ``system``."""
    made = configure(requests.Session(), verify, ca_bundle, retries, system)
    made.auth = auth
    return made


def measure(session: requests.Session, system: str) -> requests.Session:
    """Measure the calls of a client library's ``session`` as calls to ``system``, keeping its retry policy."""
    for prefix in ("http://", "https://"):
        current = session.adapters.get(prefix)
        session.mount(prefix, MeasuredAdapter(system, max_retries=current.max_retries if current else 0))
    return session


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date), or None when it says nothing."""
    value = (headers.get("Retry-After") or "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def error_for_status(system: str, status: int, message: str, retry_after: float | None = None) -> IntegrationError:
    """The error an HTTP error status means; ``retry_after`` is kept by a 429's RateLimited."""
    if status in (401, 403):
        return AuthFailed(system, message, status)
    if status == 404:
        return NotFound(system, message, status)
    if status == 409:
        return Conflict(system, message, status)
    if status == 429:
        return RateLimited(system, message, retry_after, status)
    if status >= 500:
        return Unavailable(system, message, status)
    if status >= 400:
        return InvalidRequest(system, message, status)
    return IntegrationError(system, message, status)


def transport_error(system: str, exc: requests.RequestException, timeout: float) -> IntegrationError:
    """What a request that got no answer means: timeouts and refused connections are worth retrying later."""
    # Once urllib3's retries are spent, a read timeout arrives as a ConnectionError wrapping it.
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    if isinstance(exc, requests.Timeout) or isinstance(reason, urllib3.exceptions.ReadTimeoutError):
        return Unavailable(system, f"no answer within {timeout:g}s")
    if isinstance(exc, requests.exceptions.SSLError):
        return IntegrationError(system, "TLS handshake failed: check tls_verify and ca_bundle")
    if isinstance(exc, requests.ConnectionError):
        return Unavailable(system, f"cannot connect ({type(exc).__name__})")
    return IntegrationError(system, f"request failed ({type(exc).__name__})")


def scrub(text: str, *secrets: str, mask: str = "***") -> str:
    """``text`` with each non-empty secret replaced by ``mask``: for messages a system may have echoed one into."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, mask)
    return text
