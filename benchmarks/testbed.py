"""The testbed's figures: warm `testbed up` of two clusters and the registry, its resident memory, `down`,
and a warm image build and push with buildah.

    .venv/bin/python -m benchmarks.testbed [--runs 5] [--settle 30]

Each run starts `python -m testbed up --clusters dev,ops` as a user would (a fresh process, its own state
folder), reads the resident memory of every recorded process right after `up` and again after ``--settle``
seconds, then times `down`. The binaries must be built already (`make testbed-binaries`): this measures the
warm path; the cold build is timed by hand (see the README).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.report import machine

ROOT = Path(__file__).resolve().parent.parent


def _testbed(state: Path, *args: str) -> str:
    env = {**os.environ, "TESTBED_STATE": str(state)}
    done = subprocess.run([sys.executable, "-m", "testbed", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    if done.returncode:
        raise SystemExit(f"testbed {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def _rss_mb(state: Path) -> float:
    from testbed.__main__ import _pids, _rss_kb

    record = json.loads((state / "testbed.json").read_text())
    return sum(_rss_kb(pid) for pid in _pids(record)) / 1024


def _summary(label: str, values: list[float], unit: str) -> str:
    values = sorted(values)
    p95 = values[min(len(values) - 1, round(0.95 * (len(values) - 1)))]
    return (f"{label:<44} median {statistics.median(values):8.1f} {unit}   p95 {p95:8.1f}   "
            f"min {values[0]:8.1f}   max {values[-1]:8.1f}   (n={len(values)})")


def _image_build(runs: int) -> list[float]:
    from testbed.images import ImageBuilder
    from testbed.registry import RegistryServer

    times = []
    with tempfile.TemporaryDirectory(prefix="portal-bench-images-") as tmp:
        work = Path(tmp)
        registry = RegistryServer.start(work / "registry")
        try:
            builder = ImageBuilder(work / "images")
            base = builder.busybox_base()
            context = work / "app"
            context.mkdir()
            (context / "Dockerfile").write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nCOPY . /srv\n"
                                                "RUN find /srv -type f | wc -l > /srv/count\n")
            for n in range(runs):
                (context / "version.txt").write_text(str(n))
                start = time.perf_counter()
                builder.build(context, f"localhost/bench/app:{n}", build_args={"BASE_IMAGE": base})
                builder.push(f"localhost/bench/app:{n}", f"{registry.host}/bench/app:{n}", tls_verify=False)
                times.append(time.perf_counter() - start)
            builder.remove_all()
        finally:
            registry.stop()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--settle", type=float, default=30.0)
    args = parser.parse_args()
    print("\n".join(machine()))
    ups, downs, rss_up, rss_settled = [], [], [], []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="portal-bench-testbed-") as tmp:
            state = Path(tmp) / "state"
            start = time.perf_counter()
            _testbed(state, "up", "--clusters", "dev,ops")
            ups.append(time.perf_counter() - start)
            rss_up.append(_rss_mb(state))
            time.sleep(args.settle)
            rss_settled.append(_rss_mb(state))
            start = time.perf_counter()
            _testbed(state, "down")
            downs.append(time.perf_counter() - start)
    builds = _image_build(args.runs)
    print(_summary("testbed up: 2 clusters x 3 nodes + registry", ups, "s"))
    print(_summary("resident memory right after up", rss_up, "MB"))
    print(_summary(f"resident memory {args.settle:.0f} s later", rss_settled, "MB"))
    print(_summary("testbed down", downs, "s"))
    print(_summary("buildah build + push of a small image", builds, "s"))


if __name__ == "__main__":
    main()
