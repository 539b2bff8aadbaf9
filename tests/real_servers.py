"""What the tests of the adapters share about the servers they talk to over real HTTP: which server (a real
system named by environment variables, or the fake), waiting for a server's asynchronous work, and what an
HTTP failure injected into a fake must become."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import pytest

from integrations.errors import IntegrationError, RateLimited

T = TypeVar("T")


def configured(system: str, names: Sequence[str]) -> dict[str, str] | None:
    """The values of the environment variables ``names`` when all are set (the tests then run against the real
    ``system``), None when none is (against the fake); the test fails when only some are."""
    values = {name: os.environ.get(name, "") for name in names}
    if all(values.values()):
        return values
    if any(values.values()):
        pytest.fail(f"set all of {', '.join(names)} to test a real {system}, or none of them to test the fake",
                    pytrace=False)
    return None


def wait_for(check: Callable[[], T], timeout: float = 60.0, what: str = "condition") -> T:
    """Poll ``check`` until it returns something true, and return that; fail after ``timeout`` seconds."""
    deadline, delay = time.monotonic() + timeout, 0.05
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(delay)
        delay = min(delay * 2, 0.5)
    raise AssertionError(f"{what} not reached in {timeout:.0f} s")


def assert_translated(error: IntegrationError, expected: type[IntegrationError], system: str, status: int,
                      said: str, headers: Mapping[str, Any], secret: str) -> None:
    """``error`` is what an HTTP ``status`` answered with ``headers`` must become: exactly ``expected``, of
    ``system``, with the status, the system's own message (``said``) and the status in its message, the
    original as its cause, never ``secret``, and a 429's Retry-After."""
    assert type(error) is expected and error.system == system and error.status == status
    assert said in error.message and f"HTTP {status}" in error.message
    assert error.__cause__ is not None and secret not in str(error)
    if expected is RateLimited:
        assert isinstance(error, RateLimited) and error.retry_after == float(headers["Retry-After"])
