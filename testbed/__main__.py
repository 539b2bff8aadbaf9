"""`python -m testbed up|down|status`: named control planes and the registry, left running in the background.

    python -m testbed up [--clusters central,dev,ops] [--nodes 3]
    python -m testbed status
    python -m testbed down

State lives in ``TESTBED_STATE`` (default ``.cache/testbed/state`` in the
checkout): one folder per cluster with its kubeconfig, and ``testbed.json``
with the process ids that ``down`` stops, and nothing else.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

from testbed.cluster import Cluster
from testbed.process import MissingComponent
from testbed.registry import RegistryServer

STATE = Path(os.environ.get("TESTBED_STATE") or Path(__file__).resolve().parent.parent / ".cache" / "testbed" / "state")
RECORD = STATE / "testbed.json"


def up(names: list[str], nodes: int) -> dict:
    if RECORD.exists():
        raise SystemExit(f"a testbed is already up (see {RECORD}); run `python -m testbed down` first")
    STATE.mkdir(parents=True, exist_ok=True)
    record: dict = {"clusters": {}, "registry": None}
    start = time.monotonic()
    try:
        registry = RegistryServer.start(STATE / "registry")
        record["registry"] = {"url": registry.url, "pids": {"registry": registry.process.proc.pid}}
        for name in names:
            cluster = Cluster(name, STATE / name, nodes=nodes).start()
            record["clusters"][name] = cluster.describe()
    except BaseException:
        _write(record)
        down()
        raise
    record["seconds"] = round(time.monotonic() - start, 1)
    _write(record)
    return record


def _write(record: dict) -> None:
    RECORD.write_text(json.dumps(record, indent=2))


def _pids(record: dict) -> list[int]:
    pids = list((record.get("registry") or {}).get("pids", {}).values())
    for cluster in record.get("clusters", {}).values():
        # Stopped in reverse start order: KWOK and the controllers first, etcd last.
        pids += list(cluster["pids"].values())[::-1]
    return pids


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def down() -> list[int]:
    """Stop exactly the processes `up` recorded, then remove the state."""
    if not RECORD.exists():
        return []
    pids = _pids(json.loads(RECORD.read_text()))
    for pid in pids:
        if _alive(pid):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 15
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    shutil.rmtree(STATE, ignore_errors=True)
    return pids


def status() -> dict:
    if not RECORD.exists():
        return {}
    record = json.loads(RECORD.read_text())
    record["alive"] = {pid: _alive(pid) for pid in _pids(record)}
    record["rss_mb"] = round(sum(_rss_kb(pid) for pid in _pids(record) if _alive(pid)) / 1024)
    return record


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--clusters", default="central,dev,ops", help="names of the clusters (default central,dev,ops)")
    parser.add_argument("--nodes", type=int, default=3, help="KWOK nodes per cluster (default 3)")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            record = up([n for n in args.clusters.split(",") if n], args.nodes)
            print(f"up in {record['seconds']} s; registry {record['registry']['url']}")
            for name, cluster in record["clusters"].items():
                print(f"  {name}: {cluster['server']}  KUBECONFIG={cluster['kubeconfig']}")
        elif args.command == "down":
            print(f"stopped {len(down())} processes")
        else:
            record = status()
            if not record:
                print("no testbed is up")
                return 1
            alive = sum(record["alive"].values())
            print(f"{alive}/{len(record['alive'])} processes alive, {record['rss_mb']} MB resident")
            for name, cluster in record["clusters"].items():
                print(f"  {name}: {cluster['server']}  KUBECONFIG={cluster['kubeconfig']}")
    except MissingComponent as exc:
        print(exc, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
