"""`python -m testbed up|status|down`: clusters and the registry left running, then stopped by their ids."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

from kubernetes import client, config

ROOT = Path(__file__).resolve().parent.parent


def run_testbed(*args: str, state: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "testbed", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "TESTBED_STATE": str(state)}, timeout=240)


def test_up_status_down_with_two_clusters_and_the_registry(tmp_path):
    state = tmp_path / "state"
    up = run_testbed("up", "--clusters", "dev,ops", "--nodes", "2", state=state)
    assert up.returncode == 0, up.stderr
    record = json.loads((state / "testbed.json").read_text())
    pids = [p for c in record["clusters"].values() for p in c["pids"].values()] + [record["registry"]["pids"]["registry"]]
    try:
        assert set(record["clusters"]) == {"dev", "ops"}
        for name in ("dev", "ops"):
            api = config.new_client_from_config(str(state / name / "kubeconfig"))
            nodes = client.CoreV1Api(api).list_node().items
            assert sorted(n.metadata.name for n in nodes) == [f"{name}-node-0", f"{name}-node-1"]
            api.close()
        with urllib.request.urlopen(record["registry"]["url"] + "/v2/", timeout=5) as resp:
            assert resp.status == 200
        status = run_testbed("status", state=state)
        assert status.returncode == 0 and f"{len(pids)}/{len(pids)} processes alive" in status.stdout
        assert run_testbed("up", state=state).returncode != 0  # one testbed at a time
    finally:
        down = run_testbed("down", state=state)
    assert down.returncode == 0 and f"stopped {len(pids)} processes" in down.stdout
    for pid in pids:
        stat = Path(f"/proc/{pid}/stat")
        assert not stat.exists() or stat.read_text().split()[2] == "Z", f"process {pid} still running"
    assert not state.exists()
    assert run_testbed("status", state=state).returncode == 1
