"""The run dataset, assembled from records of real components (see dataset_inputs.py): a real runtime,
the real load generator, real health checks. Node/network metrics are synthetic (no Prometheus in a
unit test) and say so in dataset_inputs.py.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import grayctl.dataset
from grayctl.cli import cli
from grayctl.dataset import assemble as assemble_mod
from grayctl.dataset.assemble import FILES, assemble_run
from grayctl.dataset.export import export_dataset
from grayctl.dataset.verify import verify_dataset

sys.path.insert(0, str(Path(__file__).parent))
from dataset_inputs import real_inputs

NS = 1_000_000_000


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return real_inputs(tmp_path_factory.mktemp("real"))


@pytest.fixture(scope="module")
def run(inputs: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("runs") / "run-0001"
    assemble_run(d, **inputs, status="complete")
    return d


def copy_of(run: Path, tmp_path: Path) -> Path:
    dest = tmp_path / run.name
    shutil.copytree(run, dest)
    return dest


def test_every_file_is_written_listed_and_verified(run: Path) -> None:
    m = json.loads((run / "manifest.json").read_text())
    assert m["status"] == "complete"
    assert sorted(m["files"]) == sorted(FILES)
    assert sorted(p.name for p in run.iterdir()) == sorted([*FILES, "manifest.json"])
    assert verify_dataset(run) == []
    assert m["fault_backends"] == ["test-endpoint-swap"]
    assert set(m["baseline"]["nodes"]) == {"n1", "n2"} and len(m["baseline"]["fingerprints_sha256"]) == 64
    assert m["slo"]["latency_source"] == "auto (baseline)"


def test_verify_catches_a_corrupted_byte(run: Path, tmp_path: Path) -> None:
    d = copy_of(run, tmp_path)
    p = d / "requests.parquet"
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0x01
    p.write_bytes(bytes(data))
    problems = verify_dataset(d)
    assert any(x.startswith("requests.parquet: sha256") for x in problems), problems


def test_verify_catches_a_missing_and_an_extra_file(run: Path, tmp_path: Path) -> None:
    d = copy_of(run, tmp_path)
    (d / "spans.parquet").unlink()
    (d / "notes.txt").write_text("added later")
    problems = verify_dataset(d)
    assert any("spans.parquet: listed in the manifest but missing" in x for x in problems)
    assert any(x.startswith("notes.txt") for x in problems)
    result = CliRunner().invoke(cli, ["dataset", "verify", str(d)])
    assert result.exit_code == 6 and "spans.parquet" in result.output


def test_an_interrupted_assembly_stays_incomplete(inputs: dict, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_a: object, **_k: object) -> None:
        raise KeyboardInterrupt("simulated crash while building features")

    monkeypatch.setattr(assemble_mod, "make_features", boom)
    d = tmp_path / "crashed"
    with pytest.raises(KeyboardInterrupt):
        assemble_run(d, **inputs, status="complete")
    m = json.loads((d / "manifest.json").read_text())
    assert m["status"] == "incomplete"
    present = {p.name for p in d.iterdir()}
    assert "features.parquet" not in present and not any(n.startswith(".tmp-") for n in present)
    assert set(m["files"]) == set()  # nothing claims to be whole
    problems = verify_dataset(d)
    assert problems and "status is 'incomplete'" in problems[0]


def test_a_failed_run_with_nothing_fetched_from_the_nodes_still_assembles(inputs: dict, tmp_path: Path) -> None:
    # a collect step that failed: no per-request records, spans or logs; Prometheus' metrics only
    d = tmp_path / "failed"
    m = assemble_run(d, **{**inputs, "requests_df": None, "spans_df": None, "logs_df": None}, status="failed")
    assert m["status"] == "failed" and (d / "report.html").is_file()
    assert len(pd.read_parquet(d / "requests.parquet")) == 0
    problems = verify_dataset(d)
    assert len(problems) == 1 and "status is 'failed'" in problems[0]  # whole, but says how the run ended


def test_labels_fault_window_matches_host_timestamps(run: Path, inputs: dict) -> None:
    lab = grayctl.dataset.load(run).labels
    inj = inputs["injections"][0]
    active = lab[lab["fault_active"]]
    first = active["ts"].iloc[0].value
    last_end = active["ts"].iloc[-1].value + NS
    assert abs(first - inj["start_ns"]) < NS and abs(last_end - inj["end_ns"]) < NS
    assert (active["fault_ids"] == "f1").all() and (active["fault_targets"] == "db").all()
    assert (lab.loc[~lab["fault_active"], "fault_ids"] == "").all()


def test_gray_is_slo_violation_while_observer_says_healthy(run: Path) -> None:
    lab = grayctl.dataset.load(run).labels
    expected = lab["slo_violation"] & lab["healthy_observed"].fillna(False).astype(bool)
    assert (lab["gray"] == expected).all()
    # the slow phase really hurt users, and /health stayed green: a gray failure
    assert lab.loc[lab["fault_active"], "gray"].sum() >= 2
    # before the fault users were fine (a baseline second that the fault's start overlaps is a fault second)
    assert not lab.loc[(lab["phase"] == "baseline") & ~lab["fault_active"], "slo_violation"].any()


def test_features_have_a_contiguous_second_index_with_explicit_missing_marks(run: Path) -> None:
    ds = grayctl.dataset.load(run)
    f, lab = ds.features, ds.labels
    assert (np.diff(f["ts"].astype("int64")) == NS).all() and f["ts"].equals(lab["ts"])
    assert str(f["ts"].dtype) == "datetime64[ns, UTC]"
    col = "system/n2/cpu_usage_ratio"
    assert col in f.columns and f"{col}__missing" in f.columns
    gap = f[f[f"{col}__missing"]]
    assert len(gap) >= 1 and gap[col].isna().all()  # the failed scrape is explicit
    assert f.loc[~f[f"{col}__missing"], col].notna().all()


def test_load_round_trips_every_table(run: Path, inputs: dict) -> None:
    ds = grayctl.dataset.load(run)
    assert len(ds.requests) == len(inputs["requests_df"])
    assert len(ds.spans) == len(inputs["spans_df"]) and str(ds.spans["start_ns"].dtype) == "datetime64[ns, UTC]"
    assert len(ds.observer) == len(inputs["observer_df"]) and len(ds.logs) == len(inputs["logs_df"])
    assert ds.experiment["name"] == "dstest-latency" and ds.injections[0]["id"] == "f1"
    assert set(ds.metrics.columns) == {"ts", "layer", "entity", "metric", "value"}
    pd.testing.assert_series_equal(ds.requests["latency_corrected_ns"], inputs["requests_df"]["latency_corrected_ns"],
                                   check_names=False)


def test_duckdb_reads_every_parquet_file_as_is(run: Path) -> None:
    for p in sorted(run.glob("*.parquet")):
        n = duckdb.sql(f"select count(*) from '{p}'").fetchall()[0][0]
        assert n == json.loads((run / "manifest.json").read_text())["files"][p.name]["rows"]
    gray = duckdb.sql(f"select count(*) from '{run / 'labels.parquet'}' where gray").fetchall()[0][0]
    assert gray >= 2


def test_export_rcaeval_writes_the_case_layout(run: Path, tmp_path: Path) -> None:
    case = export_dataset(run, "rcaeval", tmp_path / "rca")
    assert case == tmp_path / "rca" / "dstest" / "db_delay" / "1"
    for name in ("data.csv", "metrics.csv", "inject_time.txt", "logs.csv", "traces.csv"):
        assert (case / name).is_file(), name
    m = pd.read_csv(case / "metrics.csv")
    assert m.columns[0] == "time" and "n1_cpu-usage-ratio" in m.columns
    assert all("_" in c for c in m.columns[1:])
    inject = int((case / "inject_time.txt").read_text())
    assert m["time"].iloc[0] <= inject <= m["time"].iloc[-1]
    tr = pd.read_csv(case / "traces.csv")
    assert list(tr.columns[:4]) == ["time", "traceID", "spanID", "serviceName"] and len(tr) > 0
    assert export_dataset(run, "rcaeval", tmp_path / "rca").name == "2"  # repeats number on


def test_export_csv_and_parquet_and_the_cli(run: Path, tmp_path: Path) -> None:
    out = export_dataset(run, "csv", tmp_path / "csv")
    assert (out / "labels.csv").is_file() and (out / "manifest.json").is_file()
    copy = export_dataset(run, "parquet", tmp_path / "copy")
    assert verify_dataset(copy) == []
    r = CliRunner()
    res = r.invoke(cli, ["dataset", "ls", str(run.parent)])
    assert res.exit_code == 0 and "run-0001" in res.output and "network-latency@db" in res.output
    res = r.invoke(cli, ["dataset", "show", str(run)])
    assert res.exit_code == 0 and "gray" in res.output
    assert r.invoke(cli, ["dataset", "verify", str(run)]).exit_code == 0
    res = r.invoke(cli, ["dataset", "export", str(run), "--format", "rcaeval", "-o", str(tmp_path / "x")])
    assert res.exit_code == 0, res.output


def test_observer_verdicts_can_come_from_the_collectors_long_table() -> None:
    from grayctl.dataset.labels import (
        observer_from_metrics,
        observer_per_second,
        second_index,
    )

    t0 = 1_700_000_000 * NS
    long = pd.DataFrame({"ts": pd.to_datetime([t0, t0, t0 + NS, t0 + NS], unit="ns", utc=True),
                         "layer": "observer", "entity": ["db/0", "n1", "db/0", "n1"],
                         "metric": ["healthy", "node_up", "healthy", "target_up"], "value": [1.0, 1.0, 0.0, 1.0]})
    obs = observer_from_metrics(long)
    assert list(obs["check"]) == ["healthy", "node_up", "healthy"]
    per_s = observer_per_second(obs, second_index(t0, t0 + 3 * NS))
    assert per_s.iloc[0] == True and per_s.iloc[1] == False and per_s.isna().iloc[2]


def test_the_runs_writer_owns_the_manifest_to_the_end(inputs: dict, tmp_path: Path) -> None:
    """grayctl run's path: begin early, assemble through the same writer, amend the late fields, seal."""
    from grayctl.dataset.writer import DatasetWriter

    d = tmp_path / "run"
    w = DatasetWriter(d, {"run_id": "r1", "run_status": "running"})
    w.begin()
    assert w.amend(run_status="failed")["status"] == "incomplete"  # before the data: still incomplete
    assemble_run(d, **inputs, status="complete", report=False, writer=w)
    w.amend(teardown={"path": "reset"}, checks=[], run_status="complete")
    m = json.loads((d / "manifest.json").read_text())
    assert m["status"] == "complete" and m["teardown"] == {"path": "reset"} and m["run_status"] == "complete"
    assert verify_dataset(d) == []  # amending leaves the file table and every hash as finish() wrote them
    for bad in ({"files": {}}, {"format": "x"}, {"status": "complete"}):
        with pytest.raises(ValueError):
            w.amend(**bad)
    w.amend(status="incomplete")  # an interrupted run whose data is whole says so
    assert json.loads((d / "manifest.json").read_text())["status"] == "incomplete"
    w.seal()
    before = (d / "manifest.json").read_bytes()
    with pytest.raises(RuntimeError):
        w.amend(checks=["late"])
    with pytest.raises(RuntimeError):
        w.write_text("late.txt", "x")
    assert (d / "manifest.json").read_bytes() == before and not (d / "late.txt").exists()


def _lagging_summary(inputs: dict) -> dict:
    """A load generator summary (the shape grayctl.workload.loadgen.summarize_run writes) whose
    generator fell behind in the run's fifth second: lateness, and requests dropped."""
    start_ns = inputs["clock"]["start_ns"]
    n = -(-(inputs["clock"]["end_ns"] - start_ns) // NS) + 1
    per = {"first_s": start_ns // NS, "intended": [10] * n, "sent": [10] * n, "dropped": [0] * n, "late": [0] * n,
           "lateness_p50_ms": [0.1] * n, "lateness_p99_ms": [0.4] * n, "cpu": [0.05] * n}
    per["sent"][4], per["dropped"][4], per["late"][4], per["lateness_p99_ms"][4] = 6, 4, 6, 250.0
    return {"valid": False, "reason": "4 scheduled requests dropped: still unlaunched 2 s after the window",
            "target_rate": 10.0, "scheduled_rate": 10.0, "achieved_rate": 9.6, "rate_error_pct": -4.0,
            "schedule": {"scheduled": 10 * n}, "sent": 10 * n - 4, "dropped": 4, "late": 6,
            "send_error_ms": {"p50": 0.1, "p99_exact": 3.2}, "keep_up_bound": {"rate_pct": 1.0, "send_error_p99_ms": 1.0},
            "interrupted": None, "per_second": per}


def test_a_lagging_load_generator_marks_the_dataset_invalid_load(inputs: dict, tmp_path: Path) -> None:
    d = tmp_path / "run-lag"
    summary = _lagging_summary(inputs)
    m = assemble_run(d, **inputs, status="complete", load=summary, report=True)
    assert m["status"] == "invalid-load"
    load = m["load"]
    assert load["valid"] is False and "dropped" in load["reason"] and load["dropped"] == 4
    assert load["send_lateness_p99_ms"] == 3.2 and load["allowed_invalid"] is False
    labels = grayctl.dataset.load(d).labels
    bad = labels[labels["load_ok"] == False]  # noqa: E712 - nullable
    assert len(bad) == 1 and int(bad["load_dropped"].iloc[0]) == 4 and bad["load_lateness_p99_ms"].iloc[0] == 250.0
    assert int(bad["ts"].iloc[0].value) // NS == summary["per_second"]["first_s"] + 4
    assert m["labels"]["load_not_ok"] == 1
    problems = verify_dataset(d)
    assert any("invalid-load" in p and "fell behind" in p for p in problems), problems
    html = (d / "report.html").read_text()
    assert "INVALID LOAD" in html and "Load generator: send lateness p99" in html


def test_an_allowed_invalid_load_is_complete_and_still_says_so(inputs: dict, tmp_path: Path) -> None:
    d = tmp_path / "run-lag-ok"
    m = assemble_run(d, **inputs, status="complete", load=_lagging_summary(inputs), allow_invalid_load=True,
                     report=False)
    assert m["status"] == "complete" and m["load"]["valid"] is False and m["load"]["allowed_invalid"] is True
    assert verify_dataset(d) == []


def test_a_run_without_a_generator_summary_has_unknown_load(run: Path) -> None:
    m = json.loads((run / "manifest.json").read_text())
    assert m["load"]["valid"] is None and "no load generator summary" in m["load"]["reason"]
    labels = grayctl.dataset.load(run).labels
    assert labels["load_ok"].isna().all() and "load_lateness_p99_ms" in labels


def test_the_generators_own_lateness_never_counts_as_user_latency() -> None:
    from grayctl.dataset.labels import user_latency_ns, user_per_second

    t0 = 1_800_000_000 * NS
    # two seconds, 100 requests each: every reply 100 ms after the intended time; in the second one the
    # generator itself sent each request 90 ms late (its event loop was busy), so the service took 10 ms
    intended = np.concatenate([t0 + np.arange(100) * NS // 100, t0 + NS + np.arange(100) * NS // 100])
    send_error = np.concatenate([np.zeros(100), np.full(100, 90e6)]).astype(np.int64)
    req = pd.DataFrame({"intended_ns": pd.to_datetime(intended, utc=True), "latency_corrected_ns": np.full(200, 100e6).astype(np.int64),
                        "send_error_ns": send_error, "error_kind": pd.Series([None] * 200, dtype="string")})
    assert np.allclose(user_latency_ns(req), np.concatenate([np.full(100, 100e6), np.full(100, 10e6)]))
    per = user_per_second(req, pd.DatetimeIndex(pd.to_datetime([t0, t0 + NS], utc=True)))
    assert np.allclose(per["user_p99_seconds"].to_numpy(), [0.100, 0.010])


def test_forward_labels_count_down_to_the_next_breach_and_say_when_the_future_is_unknown() -> None:
    from grayctl.dataset.labels import BREACH_CAP_S, forward_labels

    v = np.zeros(200, bool)
    v[[20, 21, 60]] = True
    f = forward_labels(v)
    b = f["breach_in_s"]
    assert b[20] == 0 and b[21] == 0 and b[19] == 1 and b[15] == 5 and b[22] == 38 and b[0] == 20
    assert f["breach_lead_5s"][15] and not f["breach_lead_5s"][14] and not f["breach_lead_5s"][20]
    assert f["breach_lead_30s"][0] and f["breach_lead_10s"][50] and not f["breach_lead_10s"][49]
    # after the last breach: breach-free up to the cap where the run still goes on that long, else unknown
    assert b[61] == BREACH_CAP_S and b[79] == BREACH_CAP_S and b[80] is pd.NA and b[199] is pd.NA
    assert f["breach_lead_30s"][100] == False and f["breach_lead_30s"][180] is pd.NA  # noqa: E712
    long = forward_labels(np.r_[np.zeros(300, bool), True])
    assert long["breach_in_s"][0] == BREACH_CAP_S and long["breach_in_s"][299] == 1


def test_every_fault_window_has_an_impact_class_with_its_evidence(run: Path) -> None:
    # the real-inputs run: its fault phase switches the load to an endpoint 120 ms slower, the observer green
    m = json.loads((run / "manifest.json").read_text())
    inj = json.loads((run / "injection.json").read_text())
    assert m["impact"] == {"f1": inj[0]["impact"]["class"]} and m["faults"][0]["impact"] == m["impact"]["f1"]
    imp = inj[0]["impact"]
    assert imp["class"] in ("gray", "visible") and imp["slo_breach_seconds"] > 0
    lat = imp["slis"]["latency_p99"]
    # 3 s against 3 s: the effect size may lack seconds (then it says so); the medians always differ
    assert lat["window_median"] > lat["baseline_median"], lat
    assert (lat["delta"] is None and "too few seconds" in lat["why"]) or lat["delta"] > 0, lat
    labels = grayctl.dataset.load(run).labels
    win = labels["fault_ids"].str.contains("f1")
    assert imp["gray_seconds"] == int((labels["gray"] & win).sum())


def test_a_window_users_did_not_notice_is_none_and_holds_no_gray_second() -> None:
    from grayctl.dataset.impact import classify_impact

    rng = np.random.default_rng(3)
    n = 60
    phase = np.array(["warmup"] * 5 + ["baseline"] * 25 + ["fault"] * 20 + ["recovery"] * 10)
    p99 = rng.normal(0.02, 0.002, n)  # the same distribution throughout: the fault did nothing
    active = phase == "fault"
    labels = pd.DataFrame({"phase": phase, "fault_active": active, "fault_ids": np.where(active, "quiet", ""),
                           "user_requests": np.full(n, 50), "user_p99_seconds": p99, "user_error_rate": np.zeros(n),
                           "slo_violation": np.zeros(n, bool), "gray": np.zeros(n, bool),
                           "healthy_observed": pd.array([True] * n, dtype="boolean")})
    imp = classify_impact(labels, seed=1)["quiet"]
    assert imp["class"] == "none" and imp["gray_seconds"] == 0 and "no SLO breach" in imp["why"]
    # the same window with users 3x slower and the checks red in two seconds: visible; all green: gray
    labels.loc[active, "user_p99_seconds"] *= 3
    labels["healthy_observed"] = pd.array([not (a and i % 10 == 0) for i, a in enumerate(active)], dtype="boolean")
    assert classify_impact(labels, seed=1)["quiet"]["class"] == "visible"
    labels["healthy_observed"] = pd.array([True] * n, dtype="boolean")
    assert classify_impact(labels, seed=1)["quiet"]["class"] == "gray"
    labels["healthy_observed"] = pd.array([None] * n, dtype="boolean")
    assert classify_impact(labels, seed=1)["quiet"]["class"] == "unobserved"


def test_edges_are_the_callers_view_per_second_and_service_pair() -> None:
    from grayctl.dataset.tables import make_edges

    ts = pd.to_datetime([1_800_000_000, 1_800_000_001], unit="s", utc=True)
    rows = []
    for t in ts:
        for metric, v in (("calls_rate", 40.0), ("errors_rate", 2.0), ("timeouts_rate", 1.0), ("retries_rate", 3.0),
                          ("latency_p50_s", 0.004), ("latency_p99_s", 0.120)):
            rows.append({"ts": t, "layer": "edge", "entity": "frontend/read-path", "metric": metric, "value": v})
        rows.append({"ts": t, "layer": "edge", "entity": "read-path/user-graph", "metric": "calls_rate", "value": 9.0})
        rows.append({"ts": t, "layer": "app", "entity": "frontend", "metric": "request_rate", "value": 50.0})
    edges = make_edges(pd.DataFrame(rows))
    assert list(edges.columns) == ["ts", "caller", "callee", "calls", "errors", "timeouts", "retries",
                                   "latency_p50_s", "latency_p99_s"]
    fr = edges[(edges["caller"] == "frontend") & (edges["callee"] == "read-path")]
    assert len(fr) == 2 and fr["calls"].tolist() == [40.0, 40.0] and fr["latency_p99_s"].iloc[0] == 0.120
    ru = edges[edges["caller"] == "read-path"]
    assert ru["callee"].unique().tolist() == ["user-graph"] and ru["errors"].isna().all()
    assert make_edges(pd.DataFrame(rows).query("layer == 'app'")) is None  # a monolith: no service calls another


def test_every_dataset_has_an_edges_table(run: Path) -> None:
    edges = grayctl.dataset.load(run).edges
    assert list(edges.columns)[:3] == ["ts", "caller", "callee"]


def test_rcaevals_baselines_read_the_export_unchanged_and_rank_its_services(run: Path, tmp_path: Path) -> None:
    # RCAEval 1.8.1 from PyPI, as its own runner uses it: read data.csv and inject_time.txt, call the method
    from RCAEval.e2e import nsigma
    from RCAEval.e2e.baro import baro

    case = export_dataset(run, "rcaeval", tmp_path / "rca")
    data = pd.read_csv(case / "data.csv")
    inject_time = int((case / "inject_time.txt").read_text())
    services = {"front", "db", "n1", "n2"}  # the run's services and nodes: the entities of its series
    for method in (baro, nsigma):
        out = method(data, inject_time, dataset="dstest")
        ranks = out["ranks"]
        assert len(ranks) >= 4, (method.__name__, ranks)
        # every ranked series names an entity of this run before its first "_", as RCAEval splits it
        assert {r.split("_", 1)[0] for r in ranks} <= services, ranks
        assert {r.split("_", 1)[0] for r in ranks[:10]} & {"front", "db"}, ranks[:10]


def test_a_sweeps_cells_compare_side_by_side_with_confidence_intervals(run: Path, tmp_path: Path) -> None:
    from grayctl.comparison import compare_cells, render_comparison

    # two cells over the same complete run (twice: repetitions pool), a third whose run failed
    index = pd.DataFrame([
        {"cell": 0, "axis:topology": "a", "repetition": 1, "status": "complete", "dataset": str(run)},
        {"cell": 0, "axis:topology": "a", "repetition": 2, "status": "complete", "dataset": str(run)},
        {"cell": 1, "axis:topology": "b", "repetition": 1, "status": "complete", "dataset": str(run)},
        {"cell": 2, "axis:topology": "c", "repetition": 1, "status": "failed", "dataset": str(run)},
    ])
    t = compare_cells(index, seed=1).set_index("cell")
    a, b, c = t.loc[0], t.loc[1], t.loc[2]
    assert a["complete"] == 2 and a["fault_seconds"] == 2 * b["fault_seconds"] > 0
    # the run's fault slowed users: a positive latency effect whose interval excludes 0 with pooling
    assert a["latency_p99_delta"] > 0 and a["latency_p99_ci_lo"] <= a["latency_p99_delta"] <= a["latency_p99_ci_hi"]
    assert 0 <= a["gray_share_ci_lo"] <= a["gray_share"] <= a["gray_share_ci_hi"] <= 1
    assert c["complete"] == 0 and c["fault_seconds"] == 0 and pd.isna(c["gray_share"])  # never pooled in
    page = render_comparison(t.reset_index(), "demo")
    assert "95 % CI" in page and ">a<" in page and ">c<" in page
    # each cell's baseline repeatability beside it (the sweep index's CV per cell)
    from grayctl.sweep import cell_summary

    index["baseline_p50_ms"], index["baseline_p99_ms"] = [10.0, 12.0, 9.0, None], [40.0, 60.0, 30.0, None]
    for col in ("fault_p50_ms", "fault_p99_ms"):
        index[col] = 1.0
    page = render_comparison(t.reset_index(), "demo", cell_summary(index))
    assert "baseline CV p50 / p99" in page
    assert "<td>12.9 % / 28.3 %</td>" in page  # cell 0: sd/mean of (10, 12) and of (40, 60)
    assert page.count("n/a (fewer than 2 complete runs)") == 2  # cells 1 and 2
