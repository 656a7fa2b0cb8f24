"""The runtime config contract: resolving a topology into one process's JSON, and validating it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from grayctl.runtime.config import (
    FORMAT,
    CallSpec,
    ParallelSpec,
    RuntimeConfigError,
    load_runtime_config,
    service_config,
    validate_runtime_config,
)
from grayctl.topology import TOPOLOGIES_DIR, Topology, load_topology

APP = """
name: {name}
application:
  components:
    front:
      endpoints:
        page:
          work: {{cpu: 1ms, response_size: 2KiB}}
          calls:
            - parallel: [mid.relay, {{call: db.get, timeout: 200ms, retries: 2, backoff: 5ms}}]
            - db.get
    mid:
      concurrency: {{workers: 2, queue: 3}}
      endpoints:
        relay: {{work: {{cpu: {{dist: lognormal, mean: 1ms, p99: 5ms}}}}, calls: [db.get]}}
    db:
      store: {{latency: 2ms, cache_hit_ratio: 90%}}
      endpoints:
        get: {{work: {{store_ops: 2}}}}
  requests:
    page: {{entry: front.page, mix: 100%}}
decomposition:
{decomposition}
placement:
{placement}
"""


def topo(tmp_path: Path, name: str, services: dict[str, list[str]]) -> Topology:
    decomposition = "\n".join(f"  {s}: [{', '.join(c)}]" for s, c in services.items())
    placement = "\n".join(f"  {s}: {{slots: [n{i}]}}" for i, s in enumerate(services))
    path = tmp_path / f"{name}.yaml"
    path.write_text(APP.format(name=name, decomposition=decomposition, placement=placement))
    return load_topology(path)


def placement_of(t: Topology, replicas: int = 1) -> dict[str, list[dict[str, object]]]:
    return {s: [{"data_ip": f"10.0.{i}.{r + 1}", "port": 8000 + i, "mgmt_ip": f"10.1.{i}.{r + 1}",
                 "metrics_port": 9000 + i} for r in range(replicas)] for i, s in enumerate(t.services)}


def resolve(t: Topology, service: str, **kw: object) -> dict[str, object]:
    return service_config(t, service, placement_of(t, 2), spans_path="/tmp/s.jsonl", log_path="/tmp/l.jsonl",
                          seed=7, **kw)  # type: ignore[arg-type]


def test_gen3_style_config_holds_only_its_components_and_the_services_it_calls(tmp_path: Path) -> None:
    t = topo(tmp_path, "g3", {"front": ["front"], "mid": ["mid"], "db": ["db"]})
    cfg = resolve(t, "front")
    assert cfg["format"] == FORMAT
    assert list(cfg["components"]) == ["front"]  # type: ignore[arg-type]
    assert cfg["downstreams"] == {"mid": ["http://10.0.1.1:8001", "http://10.0.1.2:8001"],
                                  "db": ["http://10.0.2.1:8002", "http://10.0.2.2:8002"]}
    assert cfg["listen"] == {"ip": "10.0.0.1", "port": 8000}
    assert cfg["metrics"] == {"ip": "10.1.0.1", "port": 9000}
    step0 = cfg["components"]["front"]["endpoints"]["page"]["calls"][0]["parallel"]  # type: ignore[index]
    assert step0[1] == {"call": "db.get", "service": "db", "timeout": 0.2, "retries": 2, "backoff": 0.005}
    # the leaf calls nobody: no downstreams at all
    assert resolve(t, "db")["downstreams"] == {}
    json.dumps(cfg)  # JSON-serialisable as is


def test_gen1_style_calls_are_in_process_and_need_no_downstreams(tmp_path: Path) -> None:
    t = topo(tmp_path, "g1", {"app": ["front", "mid", "db"]})
    cfg = validate_runtime_config(resolve(t, "app"))
    assert cfg.downstreams == {}
    page = cfg.components["front"].endpoints["page"]
    assert isinstance(page.steps[0], ParallelSpec)
    assert all(c.service is None for c in page.steps[0].calls)
    assert isinstance(page.steps[1], CallSpec) and page.steps[1].service is None


def test_mixed_decomposition_keeps_same_service_calls_in_process(tmp_path: Path) -> None:
    t = topo(tmp_path, "g2", {"web": ["front", "mid"], "db": ["db"]})
    cfg = validate_runtime_config(resolve(t, "web"))
    first = cfg.components["front"].endpoints["page"].steps[0]
    assert isinstance(first, ParallelSpec)
    assert [(c.target, c.service) for c in first.calls] == [("mid.relay", None), ("db.get", "db")]
    assert list(cfg.downstreams) == ["db"]


def test_resolved_config_carries_units_as_numbers(tmp_path: Path) -> None:
    t = topo(tmp_path, "g3", {"front": ["front"], "mid": ["mid"], "db": ["db"]})
    mid = validate_runtime_config(resolve(t, "mid")).components["mid"]
    assert (mid.workers, mid.queue) == (2, 3)
    assert mid.endpoints["relay"].cpu.dist == "lognormal" and mid.endpoints["relay"].cpu.p99 == pytest.approx(0.005)
    db = validate_runtime_config(resolve(t, "db")).components["db"]
    assert db.store is not None and db.store.cache_hit_ratio == pytest.approx(0.9)
    assert db.store.cache_latency is not None and db.store.cache_latency.mean == pytest.approx(100e-6)
    assert db.endpoints["get"].store_ops == 2
    front = validate_runtime_config(resolve(t, "front")).components["front"]
    assert front.endpoints["page"].response_size == 2048


def test_replica_and_bind_addresses_are_chosen_per_process(tmp_path: Path) -> None:
    t = topo(tmp_path, "g3", {"front": ["front"], "mid": ["mid"], "db": ["db"]})
    cfg = resolve(t, "mid", replica=1, listen_ip="0.0.0.0")
    assert cfg["listen"] == {"ip": "0.0.0.0", "port": 8001} and cfg["metrics"]["ip"] == "10.1.1.2"  # type: ignore[index]
    with pytest.raises(RuntimeConfigError, match="replica 2"):
        resolve(t, "mid", replica=2)


def test_missing_placement_of_a_called_service_is_an_error(tmp_path: Path) -> None:
    t = topo(tmp_path, "g3", {"front": ["front"], "mid": ["mid"], "db": ["db"]})
    placement = placement_of(t)
    del placement["db"]
    with pytest.raises(RuntimeConfigError, match="'db' has no replica addresses"):
        service_config(t, "front", placement, spans_path="s", log_path="l")
    with pytest.raises(RuntimeConfigError, match="unknown service 'nope'"):
        service_config(t, "nope", placement, spans_path="s", log_path="l")


@pytest.mark.parametrize("name", sorted(p.stem for p in TOPOLOGIES_DIR.glob("*.yaml")))
def test_every_service_of_shipped_topologies_resolves_and_validates(name: str, tmp_path: Path) -> None:
    t = load_topology(name)
    placement = placement_of(t)
    for svc in t.services:
        cfg = service_config(t, svc, placement, spans_path="s", log_path="l")
        path = tmp_path / f"{svc}.json"
        path.write_text(json.dumps(cfg))
        loaded = load_runtime_config(path)
        assert set(loaded.components) == set(t.services[svc].components)


def good(tmp_path: Path) -> dict[str, object]:
    t = topo(tmp_path, "g3", {"front": ["front"], "mid": ["mid"], "db": ["db"]})
    return resolve(t, "front")


def write(tmp_path: Path, data: object) -> Path:
    p = tmp_path / "cfg.json"
    p.write_text(data if isinstance(data, str) else json.dumps(data))
    return p


def test_load_reports_unreadable_and_non_json_files_clearly(tmp_path: Path) -> None:
    with pytest.raises(RuntimeConfigError, match="cannot read"):
        load_runtime_config(tmp_path / "absent.json")
    with pytest.raises(RuntimeConfigError, match="not JSON: .* line 1"):
        load_runtime_config(write(tmp_path, "{nope"))


def test_load_lists_every_problem_with_its_json_path(tmp_path: Path) -> None:
    cfg = good(tmp_path)
    cfg["format"] = "other/9"
    cfg["listen"] = {"ip": "127.0.0.1", "port": 70000}
    cfg["downstreams"] = {"mid": ["http://10.0.1.1:8001"]}  # db missing
    cfg["components"]["front"]["concurrency"]["workers"] = 0  # type: ignore[index]
    cfg["bogus"] = 1
    with pytest.raises(RuntimeConfigError) as err:
        load_runtime_config(write(tmp_path, cfg))
    text = err.value.render()
    assert "$.format" in text and "$.listen.port" in text and "$.bogus: unknown field" in text
    assert "$.components.front.concurrency.workers" in text
    assert "call to service 'db', which has no entry in $.downstreams" in text
    assert err.value.exit_code == 2


def test_in_process_call_to_a_component_not_in_this_service_is_rejected(tmp_path: Path) -> None:
    cfg = good(tmp_path)
    cfg["components"]["front"]["endpoints"]["page"]["calls"][1]["service"] = None  # type: ignore[index]
    with pytest.raises(RuntimeConfigError, match="in-process call to db.get, which this service does not run"):
        validate_runtime_config(cfg)


def test_bad_distribution_and_call_fields_are_named(tmp_path: Path) -> None:
    cfg = good(tmp_path)
    page = cfg["components"]["front"]["endpoints"]["page"]  # type: ignore[index]
    page["cpu"] = {"dist": "weibull", "mean": 0.001}
    page["calls"][1]["timeout"] = "1s"
    with pytest.raises(RuntimeConfigError) as err:
        validate_runtime_config(cfg)
    text = err.value.render()
    assert "cpu.dist: 'weibull' is not one of" in text
    assert "calls[1].timeout: expected a number" in text
