"""Topology files: the shipped topologies, the model's queries, validation, and the documented examples."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from grayctl.errors import InputError
from grayctl.source import ValueProblem
from grayctl.topology import Call, Parallel, list_topologies, load_topology

ROOT = Path(__file__).resolve().parents[2]
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


def test_list_topologies_names_every_shipped_file() -> None:
    names = [n for n, _, _ in list_topologies()]
    assert {"three-tier", "gen3-disaggregated"} <= set(names)
    assert all(not s.startswith("INVALID") for _, _, s in list_topologies())


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
    blocks = [b for b in re.findall(r"```yaml\n(.*?)```", text, flags=re.S) if b.startswith("# file: topology")]
    assert blocks
    for i, block in enumerate(blocks):
        load_topology(_write(tmp_path, block, f"example{i}.yaml"))
