"""Real search engines for the tests: a single OpenSearch (or Elasticsearch) node run from Maven Central's jars.

``SearchNode.start(workdir)`` builds the engine's jars if this machine has none
(see ``testbed.search.jars``), starts the node with a small heap on 127.0.0.1,
and returns once ``/_cluster/health`` reports at least yellow. The node's
console output goes to ``<workdir>/<engine>.log``; its data, logs and config
live under ``<workdir>/home``.

    python -m testbed.search build [ENGINE ...]   build what is missing, say how long it took
    python -m testbed.search path [ENGINE ...]    where each build is, or would be
"""

from __future__ import annotations

import json
import shutil
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from testbed.process import ServerProcess
from testbed.search.jars import ENGINES, Engine, ensure, java, java_version

__all__ = ["ENGINES", "SearchNode"]


@dataclass
class SearchNode:
    engine: Engine
    process: ServerProcess
    port: int
    workdir: Path
    owns_workdir: bool  # made by start(): removed by stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def start(cls, workdir: Path | None = None, port: int = 0, engine: str = "opensearch",
              timeout: float = 120.0, heap: str | None = None) -> "SearchNode":
        """Start a node of ``engine`` on ``port`` (0: any free one, as the node itself chooses it), with the
        small test heap or, given ``heap`` (a JVM size such as "1g"), that much as both its least and most."""
        spec = ENGINES[engine]
        java_path = java(spec.min_java)
        build = ensure(engine)
        owns_workdir = workdir is None
        workdir = Path(workdir or tempfile.mkdtemp(prefix=f"portal-{engine}-"))
        home = workdir / "home"
        (home / "tmp").mkdir(parents=True, exist_ok=True)
        # The node writes the ports it bound here once it is up; one left by an earlier run must not be read.
        ports_file = home / "logs" / "http.ports"
        ports_file.unlink(missing_ok=True)
        jvm = spec.java_args(build, java_version(java_path))
        if heap:  # before the main class, after the small defaults: the JVM takes the last -Xms and -Xmx
            jvm[-1:-1] = [f"-Xms{heap}", f"-Xmx{heap}"]
        argv = [java_path, f"-Djava.io.tmpdir={home / 'tmp'}", *jvm, str(home), f"http.port={port}"]
        bound = {"port": port}

        def healthy() -> bool:
            if not bound["port"]:
                if not ports_file.exists():
                    return False
                bound["port"] = _first_port(ports_file)
            return _cluster_ready(bound["port"])

        process = ServerProcess(name=engine, argv=argv, workdir=workdir, healthy=healthy).start(timeout)
        return cls(spec, process, bound["port"], workdir, owns_workdir)

    def info(self) -> dict:
        """What ``GET /`` answers: the node's name, cluster and version."""
        with urllib.request.urlopen(self.url + "/", timeout=10) as resp:
            return json.load(resp)

    def rss_bytes(self) -> int:
        """The node's resident memory (its JVM's, heap and everything else)."""
        for line in Path(f"/proc/{self.process.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError(f"no VmRSS for process {self.process.proc.pid}")

    def stop(self) -> None:
        self.process.stop(timeout=30)
        if self.owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def _first_port(ports_file: Path) -> int:
    # One "host:port" a line, such as "127.0.0.1:9200" (or "[::1]:9200").
    first = ports_file.read_text().split()[0]
    return int(first.rsplit(":", 1)[1])


def _cluster_ready(port: int) -> bool:
    url = f"http://127.0.0.1:{port}/_cluster/health?wait_for_status=yellow&timeout=1s"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return json.load(resp).get("status") in ("yellow", "green")
    except (urllib.error.URLError, OSError, ValueError):
        return False  # not listening yet, or 408 while the cluster is still red
