"""Topology files: the shipped topologies, the model's queries, validation, and the documented examples."""

from __future__ import annotations

import re
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from grayctl.cli import cli
from grayctl.errors import InputError, LabError
from grayctl.source import ValueProblem
from grayctl.topology import Call, Parallel, list_topologies, load_topology
from grayctl.topology.render import to_dot, to_image

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "corpus" / "topologies"
GENERATIONS = ("gen1-monolith", "gen2-coarse", "gen3-disaggregated")
SOCIAL = ["nginx-frontend", "compose-post-service", "text-service", "url-shorten-service", "user-mention-service",
          "user-service", "media-service", "unique-id-service", "post-storage-service", "user-timeline-service",
          "home-timeline-service", "social-graph-service"]


def _write(tmp_path: Path, text: str, name: str = "t.yaml") -> Path:
    f = tmp_path / name
    f.write_text(textwrap.dedent(text))
    return f


def test_gen3_declares_the_twelve_socialnetwork_components_one_service_each() -> None:
    t = load_topology("gen3-disaggregated")
    assert list(t.components) == SOCIAL
    assert all(t.services[c].components == (c,) for c in SOCIAL)
    assert {n: r.mix.value for n, r in t.requests.items()} == {
        "read-home-timeline": 60.0, "read-user-timeline": 30.0, "compose-post": 10.0}


def test_gen3_compose_post_has_the_deathstarbench_call_graph() -> None:
    t = load_topology("gen3-disaggregated")
    steps = t.endpoint("compose-post-service.compose").calls
    assert isinstance(steps[0], Parallel)
    assert {c.component for c in steps[0].calls} == {"text-service", "user-service", "media-service",
                                                     "unique-id-service"}
    assert isinstance(steps[1], Call) and steps[1].component == "post-storage-service"
    assert {c.component for c in steps[2].calls} == {"user-timeline-service", "home-timeline-service"}
    tree = [target for _, target, _, _ in t.call_tree("nginx-frontend.compose-post")]
    assert "social-graph-service.get-followers" in tree
    assert {c.component for c in t.endpoint("text-service.process").calls[0].calls} == {
        "url-shorten-service", "user-mention-service"}


def test_read_paths_go_through_post_storage() -> None:
    t = load_topology("gen3-disaggregated")
    for req in ("read-home-timeline", "read-user-timeline"):
        tree = [target for _, target, _, _ in t.call_tree(t.requests[req].entry)]
        assert tree[-1] == "post-storage-service.read-posts"


def test_three_tier_has_three_services_and_two_request_types() -> None:
    t = load_topology("three-tier")
    assert list(t.services) == ["frontend", "api", "store"]
    assert len(t.requests) == 2
    assert t.slots() == ["app1", "app2", "app3"]
    assert t.services["api"].replicas == 2 and t.services["api"].replica_slots() == ["app2", "app2"]
    assert [s.port for s in t.services.values()] == [8100, 8101, 8102]


def test_co_located_replicas_get_ports_of_their_own_and_the_fault_covers_them_all() -> None:
    from grayctl.experiment import load_experiment
    from grayctl.lab.definition import load_lab
    from grayctl.plan import build_plan

    api = load_topology("three-tier").services["api"]
    assert api.replica_ports() == [(8101, 9101), (8103, 9103)]  # after every service's own pair
    plan = build_plan(load_experiment(ROOT / "experiments" / "three-tier-loss.yaml"), load_lab("local"))
    reps = [r for r in plan.replicas if r.service == "api"]
    assert len({r.node for r in reps}) == 1 and len({(r.port, r.metrics_port) for r in reps}) == 2
    per_node = [(r.node, p) for r in plan.replicas for p in (r.port, r.metrics_port)]
    assert len(per_node) == len(set(per_node))  # no two listeners on one node share a port
    (fault,) = plan.faults
    assert fault.ports == (8101, 8103)


def test_co_located_replica_ports_skip_explicit_and_reserved_ports(tmp_path: Path) -> None:
    f = _write(tmp_path, """\
        name: t
        application:
          components:
            a: {endpoints: {x: {work: {cpu: 1ms}}}}
            b: {endpoints: {y: {work: {cpu: 1ms}}}}
          requests: {r: {entry: a.x, mix: 100%}}
        ports: {base: 8100, metrics_base: 9298}
        decomposition: {a: [a], b: [b]}
        placement:
          a: {slots: [app1], replicas: 3}
          b: {slots: [app2], port: 8102}
        """)
    t = load_topology(f)
    # 8102 is b's (explicit); 9301-9303 are the lab's exporters and observer on every node
    assert t.services["a"].replica_ports() == [(8100, 9298), (8103, 9300), (8104, 9304)]
    assert t.services["b"].replica_ports() == [(8102, 9299)]
    assert t.services["a"].to_dict()["replica_ports"] == [[8100, 9298], [8103, 9300], [8104, 9304]]
    assert "replica_ports" not in t.services["b"].to_dict()


def test_resolve_target_maps_components_to_their_service_with_suggestions() -> None:
    t = load_topology(ROOT / "tests" / "corpus" / "topologies" / "good" / "monolith.yaml")
    assert t.resolve_target("db") == "monolith"
    assert t.resolve_target("monolith") == "monolith"
    assert t.service_of("logic") == "monolith"
    assert not t.is_network_hop("db") and t.is_network_hop("monolith")
    with pytest.raises(ValueProblem) as info:
        t.resolve_target("dbb")
    assert info.value.suggestion == "db"


def test_defaults_apply_to_calls_and_concurrency() -> None:
    t = load_topology(ROOT / "tests" / "corpus" / "topologies" / "good" / "monolith.yaml")
    par = t.endpoint("web.page").calls[0]
    assert isinstance(par, Parallel)
    logic, db = par.calls
    assert (logic.timeout.to_tc(), logic.retries) == ("500ms", 2)
    assert db.timeout.to_tc() == "250ms"
    assert t.components["web"].concurrency.workers == 8
    assert t.services["monolith"].port == 8200


def test_list_topologies_names_every_shipped_file_and_no_application_file() -> None:
    items = list_topologies()
    names = [n for n, _, _ in items]
    assert {"three-tier", *GENERATIONS} <= set(names)
    assert all(not s.startswith("INVALID") for _, _, s in items)
    assert "social-network" not in names and all(p.parent.name != "apps" for _, p, _ in items)


# -- one application, three decompositions ------------------------------------------------

def test_the_three_generations_do_the_same_work_per_request_and_differ_only_in_decomposition() -> None:
    gens = [load_topology(g) for g in GENERATIONS]
    app = ROOT / "topologies" / "apps" / "social-network.yaml"
    for t in gens:
        assert t.application_file is not None and t.application_file.resolve() == app.resolve()
        assert list(t.components) == SOCIAL
        assert t.to_dict()["application_file"] == "apps/social-network.yaml"
    first = gens[0]
    for t in gens[1:]:
        assert t.components == first.components  # endpoints, work, calls, timeouts, retries, pools, stores
        assert t.requests == first.requests
        assert t.to_dict()["application"] == first.to_dict()["application"]
    assert [len(t.services) for t in gens] == [1, 4, 12]
    assert len({tuple(t.services) for t in gens}) == 3


def test_gen1_is_one_service_on_one_slot_with_every_call_in_process() -> None:
    t = load_topology("gen1-monolith")
    assert list(t.services) == ["monolith"] and t.slots() == ["app1"]
    assert t.resolve_target("social-graph-service") == "monolith"
    assert not t.is_network_hop("social-graph-service")


def test_gen2_cuts_the_application_along_its_request_paths() -> None:
    t = load_topology("gen2-coarse")
    assert {n: s.components for n, s in t.services.items()} == {
        "frontend": ("nginx-frontend",),
        "write-path": ("compose-post-service", "text-service", "url-shorten-service", "user-mention-service",
                       "media-service", "unique-id-service"),
        "read-path": ("post-storage-service", "user-timeline-service", "home-timeline-service"),
        "user-graph": ("user-service", "social-graph-service"),
    }
    assert t.resolve_target("social-graph-service") == "user-graph"



def _network_hops(t: object, request: str) -> int:
    """Calls of one request that cross the network (caller and callee in different services)."""
    from grayctl.topology import Topology

    assert isinstance(t, Topology)
    hops, services = 0, []
    for depth, target, _call, _ in t.call_tree(t.requests[request].entry):
        svc = t.service_of(target.split(".")[0])
        del services[depth:]
        hops += bool(services) and services[-1] != svc
        services.append(svc)
    return hops


def test_network_hops_per_request_grow_from_gen1_to_gen3() -> None:
    hops = {g: {r: _network_hops(load_topology(g), r) for r in ("compose-post", "read-home-timeline",
                                                               "read-user-timeline")} for g in GENERATIONS}
    assert hops == {
        "gen1-monolith": {"compose-post": 0, "read-home-timeline": 0, "read-user-timeline": 0},
        "gen2-coarse": {"compose-post": 6, "read-home-timeline": 1, "read-user-timeline": 1},
        "gen3-disaggregated": {"compose-post": 11, "read-home-timeline": 2, "read-user-timeline": 2},
    }


def test_gen3_service_names_are_component_names_so_fault_targets_resolve() -> None:
    t = load_topology("gen3-disaggregated")
    assert list(t.services) == SOCIAL
    assert t.resolve_target("social-graph-service") == "social-graph-service"
    assert t.is_network_hop("social-graph-service")


def test_storage_like_components_model_a_cached_or_plain_store() -> None:
    t = load_topology("gen3-disaggregated")
    storage = ["post-storage-service", "user-timeline-service", "home-timeline-service", "social-graph-service",
               "url-shorten-service", "user-service"]
    assert all(t.components[c].store is not None for c in storage)
    assert all(t.components[c].store.cache_hit_ratio is not None  # type: ignore[union-attr]
               for c in storage if c != "url-shorten-service")
    assert t.components["media-service"].store is None and t.components["unique-id-service"].store is None


# -- application files: errors point into the right file ----------------------------------

def test_a_problem_in_the_application_file_names_that_file_and_line(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        load_topology(CORPUS / "bad" / "app-file-with-errors.yaml")
    problems = info.value.problems
    assert problems[0].file is not None and problems[0].file.endswith("app-file-with-errors.yaml")
    assert problems[0].line == 3 and problems[0].path == "application.from"
    app = [p for p in problems if p.file and p.file.endswith("apps/broken-app.yaml")]
    assert len(app) == 1 and app[0].line == 8 and app[0].path == "components.front.endpoints.post.calls[0]"
    assert app[0].suggestion == "text-service.process"


def test_a_yaml_syntax_error_in_the_application_file_is_reported_there(tmp_path: Path) -> None:
    (tmp_path / "apps").mkdir()
    (tmp_path / "apps" / "app.yaml").write_text("components:\n  web: {endpoints: [\n")
    topo = _write(tmp_path, """\
        application: {from: apps/app.yaml}
        decomposition: {web: [web]}
        placement: {web: {slots: [app1]}}
        """)
    with pytest.raises(InputError) as info:
        load_topology(topo)
    files = [(Path(p.file or "").name, p.line) for p in info.value.problems]
    assert files[0] == ("t.yaml", 1)
    assert files[1][0] == "app.yaml" and files[1][1] is not None
    assert "YAML syntax error" in info.value.problems[1].message


def test_a_topology_file_included_as_the_application_is_refused_at_its_topology_key(tmp_path: Path) -> None:
    """Found by tests/unit/test_fuzz_loaders.py: the refusal in the included file named no field."""
    (tmp_path / "apps").mkdir()
    (tmp_path / "apps" / "app.yaml").write_text("# not an app\nname: x\nplacement: {web: {slots: [app1]}}\n")
    topo = _write(tmp_path, """\
        application: {from: apps/app.yaml}
        decomposition: {web: [web]}
        placement: {web: {slots: [app1]}}
        """)
    with pytest.raises(InputError) as info:
        load_topology(topo)
    (app,) = [p for p in info.value.problems if Path(p.file or "").name == "app.yaml"]
    assert "is a topology file, not an application file" in app.message
    assert (app.line, app.path) == (3, "placement")


def test_a_symbolic_link_out_of_the_topology_directory_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside.yaml"
    outside.write_text("components: {web: {endpoints: {page: {}}}}\nrequests: {p: {entry: web.page, mix: 100%}}\n")
    (tmp_path / "topos").mkdir()
    (tmp_path / "topos" / "app.yaml").symlink_to(outside)
    topo = _write(tmp_path / "topos", """\
        application: {from: app.yaml}
        decomposition: {web: [web]}
        placement: {web: {slots: [app1]}}
        """)
    with pytest.raises(InputError) as info:
        load_topology(topo)
    assert "outside the topology's directory" in info.value.problems[0].message


def test_an_experiment_reports_problems_of_the_application_its_topology_includes(tmp_path: Path) -> None:
    from grayctl.experiment import load_experiment

    exp = _write(tmp_path, f"topology: {CORPUS / 'bad' / 'app-file-with-errors.yaml'}\n", "exp.yaml")
    with pytest.raises(InputError) as info:
        load_experiment(exp)
    assert any(p.file and p.file.endswith("apps/broken-app.yaml") and p.line == 8 for p in info.value.problems)


def test_an_application_file_given_as_a_topology_says_what_it_is() -> None:
    with pytest.raises(InputError) as info:
        load_topology(ROOT / "topologies" / "apps" / "social-network.yaml")
    assert "application file" in info.value.problems[0].message
    # Found by tests/unit/test_fuzz_loaders.py: it named no field; now the 'components' key.
    p = info.value.problems[0]
    assert p.path == "components" and p.line is not None and p.line > 1


# -- graph --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", [*GENERATIONS, "three-tier"])
def test_dot_has_a_cluster_per_service_and_one_edge_per_call(name: str) -> None:
    t = load_topology(name)
    dot = to_dot(t)
    assert dot.startswith(f'digraph "{name}" {{') and dot.rstrip().endswith("}")
    assert dot.count("{") == dot.count("}")
    clusters = re.findall(r'subgraph "cluster_([^"]+)"', dot)
    assert clusters == list(t.services)
    for svc in t.services.values():
        block = dot.split(f'subgraph "cluster_{svc.name}"', 1)[1].split("\n  }", 1)[0]
        assert re.findall(r'"component:([^"]+)" \[', block) == list(svc.components)
    edges = [line for line in dot.splitlines() if " -> " in line]
    calls = list(t.calls())
    assert len([e for e in edges if 'comment="entry"' in e]) == len(t.requests)
    call_edges = [e for e in edges if 'comment="network"' in e or 'comment="in-process"' in e]
    assert len(call_edges) == len(calls)
    network = sum(t.service_of(caller.split(".")[0]) != t.service_of(c.component) for caller, _, c, _ in calls)
    assert sum('comment="network"' in e for e in call_edges) == network
    assert sum("∥" in e for e in call_edges) == sum(par for _, _, _, par in calls)
    if shutil.which("dot"):
        done = subprocess.run(["dot", "-Tsvg"], input=dot.encode(), capture_output=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr.decode()
        assert b"<svg" in done.stdout


def test_dot_styles_in_process_calls_apart_from_network_calls() -> None:
    gen1, gen3 = to_dot(load_topology("gen1-monolith")), to_dot(load_topology("gen3-disaggregated"))
    assert 'comment="network"' not in gen1 and "in-process" in gen1 and 'style="dashed"' in gen1
    assert 'comment="in-process"' not in gen3
    assert "timeout 100ms, 2 retries (backoff 5ms)" in gen3  # compose -> unique-id, on its edge


def test_graph_command_writes_dot_and_refuses_images_without_graphviz(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    out = tmp_path / "g.dot"
    result = runner.invoke(cli, ["topology", "graph", "gen2-coarse", "-o", str(out)], obj={})
    assert result.exit_code == 0, result.output
    assert out.read_text().startswith('digraph "gen2-coarse"')
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    with pytest.raises(LabError) as info:
        to_image("digraph {}", "svg")
    assert "install graphviz" in (info.value.hint or "")
    result = runner.invoke(cli, ["topology", "graph", "gen2-coarse", "-o", str(tmp_path / "g.svg")], obj={})
    assert result.exit_code == 3 and "not installed" in result.output


def test_unknown_topology_name_suggests_the_closest() -> None:
    with pytest.raises(InputError) as info:
        load_topology("three-tire")
    assert info.value.problems[0].suggestion == "three-tier"


def test_a_cycle_is_reported_with_its_path(tmp_path: Path) -> None:
    f = _write(tmp_path, """\
        application:
          components:
            a: {endpoints: {x: {calls: [b.y]}}}
            b: {endpoints: {y: {calls: [a.x]}}}
          requests: {r: {entry: a.x, mix: 100%}}
        decomposition: {s: [a, b]}
        placement: {s: {slots: [n1]}}
        """)
    with pytest.raises(InputError) as info:
        load_topology(f)
    assert "call cycle: a.x -> b.y -> a.x" in info.value.problems[0].message


def test_all_structural_problems_are_reported_together(tmp_path: Path) -> None:
    f = _write(tmp_path, """\
        application:
          components:
            a: {endpoints: {x: {calls: [c.z]}}}
            b: {endpoints: {y: {}}}
          requests: {r: {entry: a.x, mix: 90%}}
        decomposition: {s: [a]}
        placement: {s: {slots: [n1], replicas: 0}}
        """)
    with pytest.raises(InputError) as info:
        load_topology(f)
    messages = " | ".join(p.message for p in info.value.problems)
    for part in ("unknown call target", "sums to 90%", "'b' is unplaced", "0 is too small"):
        assert part in messages


def test_to_dict_is_plain_json_data() -> None:
    import json

    d = load_topology("gen3-disaggregated").to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["services"]["social-graph-service"]["slots"] == ["app12"]


def test_topology_examples_in_the_docs_validate(tmp_path: Path) -> None:
    text = (ROOT / "docs" / "topology-format.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, flags=re.DOTALL)
    for block in blocks:  # application files first: topology examples may include them
        if m := re.match(r"# file: application (\S+)\n", block):
            (tmp_path / m.group(1)).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / m.group(1)).write_text(block)
    topologies = [b for b in blocks if b.startswith("# file: topology")]
    assert len(topologies) >= 3
    for i, block in enumerate(topologies):
        load_topology(_write(tmp_path, block, f"example{i}.yaml"))
