"""``grayctl lab bootstrap|up|status|reset|down|doctor`` — the local lab's lifecycle.

Parses options, calls ``grayctl.lab.lifecycle`` and renders; every command but ``--help`` needs root.
"""

from __future__ import annotations

import json
import textwrap

import click

from grayctl.errors import DriftError, LabError
from grayctl.lab.definition import load_lab
from grayctl.lab.lifecycle import (
    DoctorReport,
    LabRecord,
    run_lab_bootstrap,
    run_lab_doctor,
    run_lab_down,
    run_lab_reset,
    run_lab_status,
    run_lab_up,
)

_lab_option = click.option("--lab", "lab_name", default="local", show_default=True, metavar="NAME_OR_PATH",
                           help="A lab name (inventories/<name>/lab.yml), a path to a lab.yml, or an Ansible "
                                "inventory of a physical lab (docs/reimage.md).")
_json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


def _verbose() -> bool:
    ctx = click.get_current_context()
    root = ctx.find_root()
    return bool(root.obj and root.obj.get("verbose"))


@click.group()
def lab() -> None:
    """Bootstrap, create, inspect, reset and remove the lab."""


@lab.command()
@click.option("--with-test-tools", is_flag=True,
              help="Also install what only grayctl's test suite and benchmarks use (chromium, mininet, wrk, "
                   "IPMI and libvirt stand-ins; roles/lab_bootstrap/README.md).")
def bootstrap(with_test_tools: bool) -> None:
    """Install what the local lab needs on this machine (Debian packages; idempotent), then check
    what the fault backend this host would choose needs."""
    check = run_lab_bootstrap(with_test_tools=with_test_tools, verbose=_verbose())
    click.echo("packages installed" + (" (with the test tools)" if with_test_tools else ""))
    click.echo(check.summary())
    if check.ok:
        click.echo("bootstrap done: this machine has what the local lab needs")
        return
    # Not an error: the packages are in; what is left is outside apt's reach (a pip package in the
    # nodes' interpreter) or only matters to network faults. 'grayctl lab doctor' exits 3 on it.
    click.echo(f"bootstrap done, but network faults will fail until {len(check.missing)} thing(s) are fixed:")
    for need in check.missing:
        click.echo(textwrap.indent(need.render(), "  "))


@lab.command()
@click.option("--nodes", type=click.IntRange(1, 250), default=None, help="Node count (default: the definition's).")
@_lab_option
@_json_option
def up(nodes: int | None, lab_name: str, as_json: bool) -> None:
    """Create the lab (or grow/shrink it), then record every node's golden baseline."""
    record = run_lab_up(load_lab(lab_name), nodes, verbose=_verbose())
    if as_json:
        click.echo(json.dumps(record.to_dict(), indent=2))
        return
    verb = "up" if record.changed else "already up"
    click.echo(f"lab {record.lab} {verb}: {len(record.nodes)} nodes, {len(record.created)} resources created"
               + (f", {len(record.removed)} removed" if record.removed else "")
               + f" ({_timing(record)})")
    click.echo("\n".join(_node_table(record)))
    click.echo(f"\ninventory: {record.inventory}   baseline: {record.baseline}")
    click.echo(f"try: ansible -i {record.inventory} lab_nodes -m ansible.builtin.ping")


@lab.command()
@_lab_option
@_json_option
def status(lab_name: str, as_json: bool) -> None:
    """Nodes, addresses, roles and whether Ansible reaches each over SSH."""
    record = run_lab_status(load_lab(lab_name), verbose=_verbose())
    if as_json:
        click.echo(json.dumps(record.to_dict(), indent=2))
        return
    click.echo(f"lab {record.lab}: {record.status}   dir: {record.lab_dir}")
    if record.status != "up":
        rep = record.report
        if rep.get("exists") or rep.get("unrecorded"):
            click.echo("  resources remain: run 'grayctl lab doctor'")
        return
    click.echo("\n".join(_node_table(record, reach=True)))
    down = [n.name for n in record.nodes if n.reachable is False]
    if down:
        click.echo(f"\nunreachable: {', '.join(down)}")


@lab.command()
@_lab_option
@click.option("--accept-drift", is_flag=True,
              help="Do not refuse a node that differs from its golden baseline: report the deviation instead.")
@_json_option
def reset(lab_name: str, accept_drift: bool, as_json: bool) -> None:
    """Reimage every node to its golden baseline, then verify it (exit 5 on drift).

    netns labs are reset in place; a physical lab (--lab an Ansible inventory) is reimaged through
    each node's backend (grayctl_reimage: pxe, ipmi, redfish, libvirt, proxmox, none).
    """
    record = run_lab_reset(load_lab(lab_name), verbose=_verbose(), accept_drift=accept_drift)
    if as_json:
        click.echo(json.dumps(record.to_dict(), indent=2))
        return
    if record.cleaned:
        for node, actions in sorted(record.cleaned.items()):
            click.echo(f"  {node}: {', '.join(actions)}")
    else:
        click.echo("  every node was already clean")
    for node, checks in sorted(record.drift.items()):
        click.echo(f"  {node}: drift accepted (check: golden -> now):")
        for c in checks:
            click.echo(f"    {c['check']}: {c['golden']} -> {c['seen']}" + (f"  ({c['why']})" if c.get("why") else ""))
    click.echo(f"lab {record.lab} reset: {len(record.nodes)} nodes, baseline {record.baseline} ({_timing(record)})")


@lab.command()
@_lab_option
@_json_option
def down(lab_name: str, as_json: bool) -> None:
    """Remove everything the lab made (from its record, in reverse order)."""
    definition = load_lab(lab_name)
    record = run_lab_down(definition, verbose=_verbose())
    if as_json:
        click.echo(json.dumps(record.to_dict(), indent=2))
        return
    unrecorded = record.report.get("unrecorded") or []
    if not record.removed:
        if unrecorded:
            # Typically a lab brought up under another GRAYCTL_LAB_HOME (a killed test run's): down
            # touches only what its record holds, so say where it looked instead of "nothing to remove".
            raise LabError(f"lab {record.lab}: its record (under {definition.lab_dir}) holds nothing to remove, but these carry the lab's "
                           f"names and were left alone: {', '.join(unrecorded)}",
                           hint="run `grayctl lab down` with the GRAYCTL_LAB_HOME (or `home:`) the lab was "
                                "brought up with; `grayctl lab doctor` lists them too")
        click.echo(f"lab {record.lab}: nothing recorded, nothing to remove")
        return
    counts: dict[str, int] = {}
    for r in record.removed:
        counts[r["kind"]] = counts.get(r["kind"], 0) + 1
    summary = ", ".join(f"{n} {k}" for k, n in counts.items())
    click.echo(f"lab {record.lab} down: removed {len(record.removed)} resources ({summary}) ({_timing(record)})")
    if unrecorded:
        click.echo("not in the record, so left alone: " + ", ".join(unrecorded))


@lab.command()
@_lab_option
@_json_option
def doctor(lab_name: str, as_json: bool) -> None:
    """List anything left behind, missing, unrecorded or drifted, and what the fault backend this host
    would choose lacks; exit 0 only when clean (3: resources or the backend, 5: drift alone)."""
    report = run_lab_doctor(load_lab(lab_name), verbose=_verbose())
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        click.echo("\n".join(_doctor_lines(report)))
    if not report.clean:
        problems = len(report.missing + report.left_behind + report.unrecorded + report.sshd_not_listening)
        needs = len(report.backend_missing)
        if problems or needs or report.status not in ("up", "down"):
            raise LabError(f"lab {report.lab} is not clean ({problems} resource problem(s), "
                           + (f"{needs} missing for the fault backend, " if needs else "")
                           + f"{len(report.drift)} drift finding(s))")
        raise DriftError(f"lab {report.lab}: {len(report.drift)} node(s) drifted from the golden baseline",
                         hint="'grayctl lab reset' brings them back")


def _doctor_lines(report: DoctorReport) -> list[str]:
    lines = [f"lab {report.lab}: {report.status}"]
    sections = [
        ("recorded but missing", report.missing),
        ("left behind (recorded, but the lab is not up)", report.left_behind),
        ("not in the record (never removed by grayctl; check and remove by hand)", report.unrecorded),
        ("sshd not listening", report.sshd_not_listening),
        ("drifted from the golden baseline", report.drift),
    ]
    for title, items in sections:
        if items:
            lines.append(f"  {title}:")
            lines += [f"    {item}" for item in items]
    fb = report.fault_backend
    if fb is not None:
        lines.append(f"  fault backend: {fb['backend']} ({fb['why']})")
        lines.append(f"    nodes' Python: {fb['python'] or '-'} ({fb['python_source']})")
        if report.backend_missing:
            lines.append(f"  missing for the {fb['backend']} fault backend (network faults fail without it):")
            for need in report.backend_missing:
                lines += [f"    {need['what']}: {need['why']}", f"      fix: {need['fix']}"]
    lines += [f"  note: {n}" for n in report.notes]
    lines.append("  clean" if report.clean else "  NOT clean")
    return lines


def _node_table(record: LabRecord, reach: bool = False) -> list[str]:
    head = ["node", "roles", "mgmt", "data", "netns"] + (["ssh"] if reach else [])
    rows = [[n.name, ",".join(n.roles), n.mgmt_ip, n.data_ip, n.netns]
            + ([{True: "ok", False: "UNREACHABLE", None: "-"}[n.reachable]] if reach else [])
            for n in record.nodes]
    widths = [max(len(str(r[i])) for r in [head] + rows) for i in range(len(head))]
    return ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [head] + rows]


def _timing(record: LabRecord) -> str:
    return ", ".join(f"{k} {v:.1f}s" for k, v in record.seconds.items())
