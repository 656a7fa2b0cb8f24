"""What a new user does, from nothing (the `newcomer` tier).

1. A fresh clone of HEAD into a home directory whose path has a space in it, a clean environment
   (no inherited PATH, venv or PYTHONPATH) and the README's first command, `scripts/quickstart`:
   exit 0, a verified dataset, nothing left behind.
2. The package alone: `pip install` of that clone into a fresh venv outside it, the clone deleted,
   then `grayctl examples copy`, `validate`, `plan` and a `run` on the local lab.

Each installs into a fresh venv (pip's cache makes that minutes, not tens of minutes) and runs a
real experiment on a 14-node lab, so the tier has a budget of its own in scripts/test.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from grayctl.lab.definition import LabDefinition
from grayctl.paths import PROJECT_ROOT

pytestmark = [
    pytest.mark.newcomer,
    pytest.mark.skipif(os.geteuid() != 0, reason="the quickstart needs root"),
]

CLEAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
LAB_HOME = Path("/var/lib/grayctl/labs")


def _env(home: Path, **extra: str) -> dict[str, str]:
    return {"HOME": str(home), "PATH": CLEAN_PATH, "LANG": "C.UTF-8", "TERM": "dumb", **extra}


def _run(argv: list[str], env: dict[str, str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"{argv} exited {proc.returncode}\n{proc.stdout[-5000:]}\n{proc.stderr[-3000:]}"
    return proc


# The local lab's host-side names: its nodes' namespaces (gc-local-nodeNN) and links (<lab id>m001...);
# the other test files' labs, up on other workers meanwhile, are not this test's to count.
LOCAL_LINKS = LabDefinition(name="local").lab_id


def _machine() -> dict[str, set[str]]:
    """What the local lab leaves if it leaks: namespaces, links, lab processes."""
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    procs = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
    return {
        "netns": {n for n in netns if n.startswith("gc-local-")},
        "links": {name for line in links.splitlines() if ":" in line
                  if (name := line.split(":")[1].strip().split("@")[0]).startswith(LOCAL_LINKS)},
        "lab processes": {p for p in procs.splitlines() if str(LAB_HOME) in p},
    }


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory):
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    if "gc-local-" in netns:  # the quickstart's own test: it would leave a user's lab up, not take it down
        pytest.skip("a 'local' lab is up on this machine; the newcomer tier needs it down")
    home = Path("/root") / f"grayctl newcomer {os.getpid()}"
    home.mkdir()
    dest = home / "grayctl"
    head = subprocess.run(["git", "-C", str(PROJECT_ROOT), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(PROJECT_ROOT), str(dest)], check=True)
    subprocess.run(["git", "-C", str(dest), "checkout", "-q", head], check=True)
    try:
        yield home, dest
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_the_readme_first_command_from_a_home_clone_gives_a_verified_dataset(clone) -> None:
    home, dest = clone
    before = _machine()
    proc = _run(["scripts/quickstart"], _env(Path("/root")), dest, timeout=2400)
    out = proc.stdout
    m = re.search(r"dataset: (.+?)\s+\(grayctl dataset", out)
    assert m, out[-3000:]
    run_dir = Path(m.group(1))
    assert run_dir.is_relative_to(dest), run_dir
    verify = _run([str(dest / ".venv" / "bin" / "grayctl"), "dataset", "verify", str(run_dir)],
                  _env(Path("/root")), dest, timeout=300)
    assert "status complete" in verify.stdout, verify.stdout
    assert "the lab was removed without leftovers" in out, out[-2000:]
    # the install is the real package: its content comes from site-packages, not the checkout
    site = _run([str(dest / ".venv" / "bin" / "python"), "-c",
                 "import grayctl.paths as p; print(p.PROJECT_ROOT)"], _env(Path("/root")), home, 60)
    assert "site-packages/grayctl/_content" in site.stdout, site.stdout
    after = _machine()
    for kind in before:
        assert after[kind] <= before[kind], f"left behind ({kind}): {sorted(after[kind] - before[kind])}"


def test_the_package_alone_validates_plans_and_runs_the_shipped_examples(clone, tmp_path: Path) -> None:
    home, dest = clone
    venv = Path(f"/opt/grayctl-newcomer-{os.getpid()}")
    env = _env(Path("/root"))
    try:
        _run(["python3", "-m", "venv", str(venv)], env, tmp_path, 300)
        _run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", str(dest)], env, tmp_path, 1800)
        shutil.rmtree(dest)  # no checkout from here on
        env = _env(Path("/root"), PATH=f"{venv / 'bin'}:{CLEAN_PATH}")
        _run(["grayctl", "examples", "copy", "ex"], env, tmp_path, 60)
        seed = tmp_path / "ex" / "experiments" / "seed.yaml"
        _run(["grayctl", "validate", *map(str, sorted((tmp_path / "ex" / "experiments").glob("*.yaml")))],
             env, tmp_path, 120)
        plan = _run(["grayctl", "plan", str(seed)], env, tmp_path, 120)
        assert "gen3-disaggregated" in plan.stdout
        before = _machine()
        _run(["grayctl", "lab", "up"], env, tmp_path, 600)
        try:
            _run(["grayctl", "run", str(tmp_path / "ex" / "experiments" / "gen3-latency-quick.yaml"),
                  "--out", str(tmp_path / "runs")], env, tmp_path, 1200)
        finally:
            _run(["grayctl", "lab", "down"], env, tmp_path, 600)
        runs = [p for p in (tmp_path / "runs").iterdir() if p.is_dir() and not p.name.endswith(".run")]
        assert len(runs) == 1, runs
        verify = _run(["grayctl", "dataset", "verify", str(runs[0])], env, tmp_path, 300)
        assert "status complete" in verify.stdout, verify.stdout
        _run(["grayctl", "lab", "doctor"], env, tmp_path, 300)
        after = _machine()
        for kind in before:
            assert after[kind] <= before[kind], f"left behind ({kind}): {sorted(after[kind] - before[kind])}"
    finally:
        shutil.rmtree(venv, ignore_errors=True)
