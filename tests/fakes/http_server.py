"""What the HTTP fakes of outside systems share: a real server on 127.0.0.1 and faults injected ahead of it.

A subclass answers requests in ``respond`` (a werkzeug Response, or any WSGI application such as a Flask
app) and may keep its own request log through ``received`` (as a request arrives) or ``answered`` (once
its answer is known). ``fail_next`` works the same in every fake: the next matching requests wait, then
answer the injected status, before the system itself is asked, as a proxy in front of it would.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from typing import Any, Callable, Self

from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

WSGIApplication = Callable[[dict[str, Any], Callable[..., Any]], Any]


@dataclass
class Fault:
    """An injected answer: ``status`` None only delays the request, which is then answered normally."""

    method: str
    path: re.Pattern[str]
    status: int | None
    headers: dict[str, str]
    body: Any
    delay: float | None
    times: int

    def matches(self, method: str, path: str) -> bool:
        return self.method in ("*", method) and self.path.search(path) is not None


class _QuietHandler(WSGIRequestHandler):
    def log(self, type: str, message: str, *args: Any) -> None:  # each fake keeps its own request log
        pass


class FakeHTTPServer:
    """A werkzeug server in a daemon thread: ``start()``, ``url``, ``stop()``, or ``with`` for both."""

    thread_name = "fake-http"
    #: The Content-Type of an injected text body, unless the fault's headers say otherwise.
    fault_text_type = "text/plain; charset=utf-8"

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._faults: list[Fault] = []
        self._server: Any = None
        self._thread: threading.Thread | None = None

    # --- running -------------------------------------------------------------------------------------

    def start(self) -> Self:
        self._stopping.clear()
        self._server = make_server("127.0.0.1", 0, self._wsgi, threaded=True, request_handler=_QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=self.thread_name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes the requests that wait in an injected delay
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=10)
            self._server = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start the fake first"
        return f"http://127.0.0.1:{self._server.server_port}"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- faults --------------------------------------------------------------------------------------

    def fail_next(self, method: str, path_regex: str, status: int | None = None, headers: dict[str, str] | None = None,
                  body: Any = None, delay: float | None = None, times: int = 1) -> None:
        """Make the next ``times`` requests whose method (or ``*``) and path (``re.search``, see ``fault_path``)
        match wait ``delay`` seconds, then answer ``status`` with ``headers`` and ``body`` (JSON unless bytes
        or str; by default the system's own error body for the status). With no status they are only
        delayed, then answered normally: a slow server."""
        with self._lock:
            self._faults.append(Fault(method.upper(), re.compile(path_regex), status, dict(headers or {}), body,
                                      delay, times))

    def _take_fault(self, method: str, path: str) -> Fault | None:
        fault = next((f for f in self._faults if f.matches(method, path)), None)
        if fault is not None:
            fault.times -= 1
            if fault.times <= 0:
                self._faults.remove(fault)
        return fault

    def fault_response(self, fault: Fault) -> Response:
        body = self.fault_body(fault.status) if fault.body is None else fault.body
        if isinstance(body, (bytes, str)):
            return Response(body, fault.status, {"Content-Type": self.fault_text_type, **fault.headers})
        return Response(json.dumps(body), fault.status, {**fault.headers, "Content-Type": "application/json"})

    # --- what a fake fills in ------------------------------------------------------------------------

    def fault_path(self, request: Request) -> str:
        """The path a fault's ``path_regex`` is searched in."""
        return request.path

    def fault_body(self, status: int) -> Any:
        """The body of an injected ``status`` when the test gave none."""
        return b""

    def received(self, request: Request) -> None:
        """A request arrived (called under the fake's lock, before any fault)."""

    def respond(self, request: Request) -> WSGIApplication:
        """The system's answer to ``request``."""
        raise NotImplementedError

    def answered(self, request: Request, response: WSGIApplication) -> None:
        """``response`` is what ``request`` gets, an injected fault or the system's answer."""

    def _wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        with self._lock:
            self.received(request)
            fault = self._take_fault(request.method, self.fault_path(request))
        if fault is not None and fault.delay:
            self._stopping.wait(fault.delay)
        if fault is not None and fault.status is not None:
            response: WSGIApplication = self.fault_response(fault)
        else:
            response = self.respond(request)
        self.answered(request, response)
        return response(environ, start_response)
