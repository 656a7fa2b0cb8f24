"""Deploying gen1, gen2 and gen3 on a private netns lab, driving them with the real load generator.

One 14-node lab (12 app nodes for gen3, a monitor, a client) with its own name, address ranges
(10.217.x) and lab home under a tmp dir, removed in a finalizer together with whatever is deployed,
also when a test fails. Everything goes through the CLI (``grayctl deploy|load|undeploy``), i.e.
through the roles over SSH, as a user would run it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from grayctl.lab.definition import load_lab
from grayctl.paths import PROJECT_ROOT

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the netns lab needs root (namespaces, links, cgroups)"),
]

RATE = "15/s"
DURATION = "8s"


class DeployLab:
    def __init__(self, tmp: Path) -> None:
        self.name = f"d{os.getpid() % 100000}"
        self.tmp = tmp
        self.file = tmp / f"{self.name}.yml"
        # generous per-node CPU: 14 nodes share 2 cores with everything else on the machine
        self.file.write_text(yaml.safe_dump({
            "name": self.name, "nodes": {"count": 14},
            "networks": {"management": "10.217.0.0/24", "data": "10.217.64.0/24"},
            "limits": {"cpu": "100%", "memory": "256MiB"},
        }))
        self.env = {**os.environ, "GRAYCTL_LAB_HOME": str(tmp / "labs")}
        os.environ["GRAYCTL_LAB_HOME"] = self.env["GRAYCTL_LAB_HOME"]
        self.defn = load_lab(str(self.file))
        self.dir = self.defn.lab_dir

    def grayctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([sys.executable, "-m", "grayctl", *args, "--lab", str(self.file)],
                              env=self.env, capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=600, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"grayctl {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def load(self, topology: str, tag: str, seed: int = 7) -> tuple[dict, Path]:
        fetch = self.tmp / f"load-{tag}"
        # The generator's keep-up bounds are relaxed: the 2 cores are shared with other jobs, and
        # this test is about the deployment (no errors, same sequence), not the generator's precision.
        proc = self.grayctl("load", topology, "--rate", RATE, "--duration", DURATION, "--seed", str(seed),
                            "--fetch-dir", str(fetch), "--json", "--send-error-bound-ms", "500",
                            "--rate-bound-pct", "10")
        summary = json.loads(proc.stdout)
        (records,) = fetch.glob("*/requests.parquet")
        return summary, records

    def state_dirs(self) -> list[Path]:
        return sorted((self.dir / "nodes").glob("*/state"))

    def runtime_pids(self) -> list[str]:
        out = subprocess.run(["pgrep", "-f", f"grayctl[.](runtime|workload) --config {self.dir}/"],
                             capture_output=True, text=True, check=False).stdout
        return out.split()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):
    lab = DeployLab(tmp_path_factory.mktemp("deploy-lab"))
    try:
        lab.grayctl("lab", "up")
        yield lab
    finally:
        if (lab.dir / "state.json").exists():
            for topo in ("gen3-disaggregated",):  # undeploy acts on every node, whatever is deployed
                lab.grayctl("undeploy", topo, check=False)
            lab.grayctl("lab", "down", check=False)


def _ok(summary: dict) -> None:
    assert summary["valid"], summary.get("reason")
    assert summary["sent"] > 0
    assert sum(summary["errors"].values()) == 0 if isinstance(summary["errors"], dict) else summary["errors"] == 0, \
        summary["errors"]
    assert set(summary["by_type"]) == {"read-home-timeline", "read-user-timeline", "compose-post"}


def test_gen1_deploys_idempotently_serves_the_mix_and_the_seed_fixes_the_sequence(lab: DeployLab) -> None:
    first = lab.grayctl("deploy", "gen1-monolith").stdout
    assert "1 replica(s)" in first
    again = lab.grayctl("deploy", "gen1-monolith").stdout
    assert "already deployed" in again and "0 change(s)" in again, again
    s1, r1 = lab.load("gen1-monolith", "gen1-a")
    _ok(s1)
    s2, r2 = lab.load("gen1-monolith", "gen1-b")
    _ok(s2)
    # same seed: same schedule digest, and the records hold the same types in the same intended order
    assert s1["schedule"]["sha256"] == s2["schedule"]["sha256"]
    t1, t2 = pq.read_table(r1).to_pandas(), pq.read_table(r2).to_pandas()
    assert list(t1.sort_values("seq")["type"]) == list(t2.sort_values("seq")["type"])
    offsets = [(t["intended_ns"] - t["intended_ns"].min()).astype("int64").tolist() for t in (
        t1.sort_values("seq"), t2.sort_values("seq"))]
    assert offsets[0] == offsets[1]
    other, _ = lab.load("gen1-monolith", "gen1-c", seed=8)
    assert other["schedule"]["sha256"] != s1["schedule"]["sha256"]


def test_gen2_redeploy_replaces_gen1_and_serves_the_mix(lab: DeployLab) -> None:
    out = lab.grayctl("deploy", "gen2-coarse").stdout
    assert "6 replica(s)" in out  # read-path runs 3 (a peer cohort)
    # gen1's monolith lived on node01, where gen2's frontend now runs: exactly the new replicas are left
    assert not list((lab.dir / "nodes").glob("*/state/services/monolith-0"))
    summary, _ = lab.load("gen2-coarse", "gen2")
    _ok(summary)


def test_gen3_serves_the_mix_and_a_compose_post_is_one_trace_across_its_services(lab: DeployLab) -> None:
    lab.grayctl("deploy", "gen3-disaggregated")
    assert len(lab.runtime_pids()) == 14  # 12 services, post-storage-service with 3 replicas
    summary, _ = lab.load("gen3-disaggregated", "gen3")
    _ok(summary)
    spans = []
    for path in (lab.dir / "nodes").glob("*/state/services/*/spans.jsonl"):
        spans += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    by_trace: dict[str, list[dict]] = defaultdict(list)
    for s in spans:
        by_trace[s["trace_id"]].append(s)
    composes = [t for t in by_trace.values()
                if any(s["kind"] == "server" and s["endpoint"] == "compose-post" and s["parent_id"] is None
                       for s in t)]
    assert composes, "no compose-post trace found"
    trace = composes[0]
    services = {s["service"] for s in trace if s["kind"] == "server"}
    assert {"nginx-frontend", "compose-post-service", "text-service", "url-shorten-service",
            "user-mention-service", "user-service", "media-service", "unique-id-service",
            "post-storage-service", "user-timeline-service", "home-timeline-service",
            "social-graph-service"} <= services, services
    ids = {s["span_id"] for s in trace}
    roots = [s for s in trace if s["parent_id"] is None]
    assert len(roots) == 1 and all(s["parent_id"] in ids for s in trace if s["parent_id"] is not None)


def test_undeploy_leaves_no_process_and_no_file_and_the_lab_resets_clean(lab: DeployLab) -> None:
    lab.grayctl("undeploy", "gen3-disaggregated")
    assert lab.runtime_pids() == []
    leftovers = [p for d in lab.state_dirs() for p in d.iterdir() if p.name != "workload"]
    assert leftovers == [], leftovers
    out = lab.grayctl("lab", "reset").stdout  # reimage + baseline verify (exit 5 on drift)
    assert "reset" in out
    # after reset the client's workload files are gone too and nothing runs
    assert [p for d in lab.state_dirs() for p in d.iterdir()] == []
    assert re.search(r"every node was already clean|reset", out)
