"""A private netns lab for end-to-end ``grayctl run`` tests (tests/lab/test_run.py, test_gen3_run.py).

Each test module gets its own lab name, address range and lab home under a tmp dir, so a user's
``local`` lab is never touched. grayctl is driven as a user drives it: a subprocess.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

from grayctl.dataset.labels import user_latency_ns
from grayctl.lab.definition import load_lab
from grayctl.paths import PROJECT_ROOT
from grayctl.phases import figures_by_phase


def request_figures(ds: Path, request_type: str) -> dict:
    """One request type's figures per phase of the dataset ``ds`` (grayctl.phases.figures_by_phase:
    phase -> p50_s, p99_s, requests, ...), from requests.parquet and the manifest's phase times."""
    manifest = json.loads((ds / "manifest.json").read_text())
    requests = pd.read_parquet(ds / "requests.parquet")
    one = requests[requests["type"] == request_type]
    phases = [(p["phase"], p["start_s"], p["end_s"]) for p in manifest["times"]["phases"]]
    return figures_by_phase(one["intended_ns"].astype("int64").to_numpy(), user_latency_ns(one),
                            one["error_kind"].notna().to_numpy(), manifest["times"]["start_ns"], phases)


def dataset_dir(stdout: str) -> Path:
    """The dataset a ``grayctl run`` printed (its ``dataset:`` line)."""
    line = next(x for x in stdout.splitlines() if x.strip().startswith("dataset:"))
    return Path(line.split("dataset:", 1)[1].strip())


class RunLab:
    def __init__(self, tmp: Path, *, prefix: str, count: int, network: str) -> None:
        """``network``: the first two octets' /16 prefix, e.g. ``10.236`` (management .0/24, data .64/24)."""
        self.name = f"{prefix}{os.getpid() % 100000}"
        self.tmp = tmp
        self.file = tmp / f"{self.name}.yml"
        # generous per-node CPU: the nodes share 2 cores with everything else on the machine
        self.file.write_text(yaml.safe_dump({
            "name": self.name, "nodes": {"count": count},
            "networks": {"management": f"{network}.0.0/24", "data": f"{network}.64.0/24"},
            "limits": {"cpu": "100%", "memory": "384MiB"},
        }))
        self.env = {**os.environ, "GRAYCTL_LAB_HOME": str(tmp / "labs")}
        os.environ["GRAYCTL_LAB_HOME"] = self.env["GRAYCTL_LAB_HOME"]
        self.defn = load_lab(str(self.file))
        self.dir = self.defn.lab_dir

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "grayctl", *args]

    def grayctl(self, *args: str, check: bool = True, timeout: int = 900) -> subprocess.CompletedProcess[str]:
        """Run grayctl; past ``timeout`` it gets SIGINT (a user's Ctrl-C: it reverts and cleans up), not SIGKILL."""
        argv = self.argv(*args)
        with subprocess.Popen(argv, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              cwd=PROJECT_ROOT) as p:
            try:
                out, err = p.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.send_signal(signal.SIGINT)
                out, err = p.communicate(timeout=900)
                raise AssertionError(f"grayctl {' '.join(args)} took over {timeout} s; interrupted:\n{out}\n{err}")
        proc = subprocess.CompletedProcess(argv, p.returncode, out, err)
        if check and proc.returncode != 0:
            raise AssertionError(f"grayctl {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def experiment(self, doc: dict, name: str) -> Path:
        p = self.tmp / f"{name}.yaml"
        p.write_text(yaml.safe_dump({**doc, "lab": str(self.file)}, sort_keys=False))
        return p

    def baseline_verifies(self) -> bool:
        return subprocess.run(["ansible-playbook", "-i", str(self.defn.inventory_path), "playbooks/baseline.yml"],
                              env=self.env, cwd=PROJECT_ROOT, capture_output=True, timeout=300, check=False).returncode == 0

    def leftovers(self) -> list[str]:
        """Anything a run could leave: grayctl processes of this lab, qdiscs or nft rules on the nodes."""
        out = []
        ps = subprocess.run(["pgrep", "-af", "grayctl[.](runtime|workload|faults|observer|exporters)|"
                             f"prometheus.*{self.dir}"], capture_output=True, text=True, check=False).stdout
        out += [line for line in ps.splitlines() if str(self.dir) in line]
        for node in self.defn.node_names:
            ns = self.defn.netns_of(node)
            qd = subprocess.run(["ip", "netns", "exec", ns, "tc", "qdisc", "show", "dev", "data"],
                                capture_output=True, text=True, check=False).stdout
            out += [f"{node}: {q}" for q in qd.splitlines() if any(k in q for k in ("netem", "prio", "htb", "tbf"))]
            nft = subprocess.run(["ip", "netns", "exec", ns, "nft", "list", "ruleset"], capture_output=True,
                                 text=True, check=False).stdout
            out += [f"{node}: nft {line.strip()}" for line in nft.splitlines() if "table" in line]
        return out + [str(p) for p in self.dir.glob("nodes/*/state/*")]

    def down(self, topology: str) -> None:
        """Fixture finalizer: revert, undeploy, take the lab down (also after a failed test)."""
        if (self.dir / "state.json").exists():
            self.grayctl("fault", "revert", "--all", "--lab", str(self.file), check=False)
            self.grayctl("undeploy", topology, "--lab", str(self.file), check=False)
            self.grayctl("lab", "down", "--lab", str(self.file), check=False)
