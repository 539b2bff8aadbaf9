"""Serves the site's files, with /healthz and /readyz for Kubernetes' probes. Standard library only.

    python serve.py --port 8080 --directory public
"""

from __future__ import annotations

import argparse
import functools
import http.server
import os
import signal
import sys
from urllib.parse import urlsplit

PROBES = {"/healthz", "/readyz"}


class SiteHandler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        if not self._answer_probe(body=True):
            super().do_GET()

    def do_HEAD(self):
        if not self._answer_probe(body=False):
            super().do_HEAD()

    def _answer_probe(self, body: bool) -> bool:
        path = urlsplit(self.path).path
        if path not in PROBES:
            return False
        # Ready only while there is an index page to serve; alive as long as we answer at all.
        ok = path == "/healthz" or os.path.isfile(os.path.join(self.directory, "index.html"))
        payload = b"ok\n" if ok else b"no index.html\n"
        self.send_response(200 if ok else 503)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if body:
            self.wfile.write(payload)
        return True

    def list_directory(self, path):
        # No directory listings: a folder without index.html is simply not found.
        self.send_error(404, "Not found")
        return None

    def end_headers(self):
        self.send_header("X-Content-Type-Options", "nosniff")
        super().end_headers()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bind", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--directory", default="public")
    args = parser.parse_args(argv)
    handler = functools.partial(SiteHandler, directory=os.path.abspath(args.directory))
    # As PID 1 in a container, SIGTERM is ignored unless handled: stop at once instead of
    # waiting for Kubernetes' grace period to end in a SIGKILL.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with http.server.ThreadingHTTPServer((args.bind, args.port), handler) as server:
        print(f"Serving {args.directory} on {args.bind}:{args.port}", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
