"""`python -m testbed.demo`: the portal with its embedded defaults on this machine.

Starts Redis if none answers at PORTAL_REDIS_URL, applies the migrations,
then runs one RQ worker and the web server (gunicorn) until interrupted, and
stops exactly what it started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from portal.config import INSTANCE_DIR, PROJECT_ROOT, Settings
from testbed.process import port_open
from testbed.services import RedisServer


def main() -> int:
    settings = Settings.from_env()
    host = os.environ.get("PORTAL_HOST", "127.0.0.1")
    port = int(os.environ.get("PORTAL_PORT", "5000"))
    started: list = []
    children: list[subprocess.Popen] = []
    redis = urlsplit(settings.redis_url)
    if not port_open(redis.port or 6379, redis.hostname or "127.0.0.1"):
        if redis.hostname not in ("127.0.0.1", "localhost"):
            print(f"Redis at {settings.redis_url} does not answer.", file=sys.stderr)
            return 1
        print(f"Starting Redis on port {redis.port or 6379} (data in instance/redis)")
        started.append(RedisServer.start(workdir=INSTANCE_DIR / "redis", port=redis.port or 6379))

    bin_dir = Path(sys.executable).parent
    env = {**os.environ}
    try:
        subprocess.run([sys.executable, "-m", "flask", "--app", "app", "db", "upgrade"], cwd=PROJECT_ROOT, env=env,
                       check=True)
        children.append(subprocess.Popen([sys.executable, "-m", "flask", "--app", "app", "worker"],
                                         cwd=PROJECT_ROOT, env=env))
        children.append(subprocess.Popen(
            [str(bin_dir / "gunicorn"), "--bind", f"{host}:{port}", "--workers", "2", "--access-logfile", "-",
             "app:app"], cwd=PROJECT_ROOT, env=env))
        deadline = time.monotonic() + 30
        while not port_open(port, host) and time.monotonic() < deadline:
            if any(c.poll() is not None for c in children):
                raise RuntimeError("the web server or the worker exited at start; see the messages above")
            time.sleep(0.1)
        print(f"\n  Portal running at http://{host}:{port}/  (the first account to sign up becomes admin)\n"
              "  Press Ctrl-C to stop.\n", flush=True)
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        while all(c.poll() is None for c in children):
            time.sleep(0.5)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        for c in children:
            if c.poll() is None:
                c.terminate()
        for c in children:
            try:
                c.wait(15)
            except subprocess.TimeoutExpired:
                c.kill()
        for server in started:
            server.stop()


if __name__ == "__main__":
    sys.exit(main())
