"""grayctl.checks: tolerance logic and phase means, and checks evaluated by a real Prometheus on 127.0.0.1
scraping a real HTTP metrics endpoint whose value the test moves through the phases."""

from __future__ import annotations

import dataclasses
import http.server
import math
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from grayctl.checks import ensure_checks_parse, evaluate_checks, failing, judge, phase_means
from grayctl.errors import InputError
from grayctl.experiment import Tolerance, load_experiment
from grayctl.workload.loadgen import LiveMetrics
from localnet import free_port, wait_http  # tests/unit is on sys.path (rootdir-less test dir)

ROOT = Path(__file__).resolve().parents[2]
PHASES = [("warmup", 0.0, 2.0), ("baseline", 2.0, 6.0), ("fault", 6.0, 10.0), ("recovery", 10.0, 13.0)]


# -- the tolerance logic ----------------------------------------------------------------------------

def test_max_and_min_bounds_compare_the_phase_mean():
    assert judge(Tolerance("max", 0.25), 0.2, None)[0] == "pass"
    assert judge(Tolerance("max", 0.25), 0.3, None)[:2] == ("fail", 0.3)
    assert judge(Tolerance("min", 1.0), 1.0, None)[0] == "pass"
    assert judge(Tolerance("min", 1.0), 0.99, None)[0] == "fail"


def test_relative_to_baseline_is_the_ratio_of_means_in_either_direction():
    assert judge(Tolerance("relative_to_baseline", 1.5, "<="), 3.0, 2.0)[:2] == ("pass", 1.5)
    assert judge(Tolerance("relative_to_baseline", 1.5, "<="), 3.1, 2.0)[0] == "fail"
    assert judge(Tolerance("relative_to_baseline", 1.5, ">="), 3.1, 2.0)[0] == "pass"
    assert judge(Tolerance("relative_to_baseline", 1.5, ">="), 2.9, 2.0)[0] == "fail"
    verdict, value, why = judge(Tolerance("relative_to_baseline", 1.5, "<="), 3.0, 0.0)
    assert (verdict, value) == ("not evaluated", None) and "baseline mean is 0" in why


def test_no_data_is_never_a_pass_whatever_the_tolerance():
    for tol in (Tolerance("max", math.inf), Tolerance("min", -math.inf),
                Tolerance("relative_to_baseline", 1e9, "<="), Tolerance("relative_to_baseline", 0.0, ">=")):
        assert judge(tol, None, 1.0)[0] == "no data", tol
    assert judge(Tolerance("relative_to_baseline", 1e9, "<="), 1.0, None)[0] == "no data"  # no baseline
    rows = [{"name": "a", "fail_run": True, "verdict": "no data"}, {"name": "b", "fail_run": True, "verdict": "pass"},
            {"name": "c", "fail_run": True, "verdict": "not evaluated"}, {"name": "d", "fail_run": False,
                                                                          "verdict": "fail"}]
    assert [c["name"] for c in failing(rows)] == ["a", "c"]


def test_phase_means_take_the_worst_series_each_step_and_split_by_phase():
    t0 = 1000.0
    x = {"metric": {"a": "x"}, "values": [[t0 + s, str(v)] for s, v in
                                            [(0, 1), (1, 1), (2, 10), (5, 10), (6, 30), (9, 30), (10, 5), (13, 5)]]}
    y = {"metric": {"a": "y"}, "values": [[t0 + 2, "50"], [t0 + 3, "NaN"], [t0 + 20, "99"]]}  # 20: after the run
    means, why = phase_means([x, y], t0, PHASES)
    assert means == {"warmup": 1.0, "baseline": (50 + 10) / 2, "fault": 30.0, "recovery": 5.0,
                     "all": (1 + 1 + 50 + 10 + 30 + 30 + 5 + 5) / 8}
    assert "max across 2 series" in why
    assert phase_means([], t0, PHASES)[0]["fault"] is None


def test_a_sample_on_a_phase_edge_belongs_to_the_phase_it_starts_even_off_the_millisecond():
    t0 = 1000.12345  # the load generator's t0; the query's grid starts at 1000.123
    s = {"metric": {}, "values": [[round(1000.123 + k, 3), str(k)] for k in range(14)]}
    means, _ = phase_means([s], t0, PHASES)
    assert means == {"warmup": 0.5, "baseline": 3.5, "fault": 7.5, "recovery": 11.5, "all": 6.5}


# -- a real Prometheus ------------------------------------------------------------------------------



class _Endpoint(http.server.ThreadingHTTPServer):
    value = 1.0
    # the load generator's own renderer: requests finish, none fails (so its error counter has no series)
    workload = LiveMetrics(("read-home-timeline",), 10.0)


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        v = self.server.value  # type: ignore[attr-defined]
        w = self.server.workload  # type: ignore[attr-defined]
        w.responses[(0, 200)] = w.responses.get((0, 200), 0) + 10
        for i in range(10):  # 10 requests a scrape, 20-29 ms each
            w.duration[0].observe(0.020 + i / 1000)
        body = (f"# TYPE lab_gauge gauge\nlab_gauge{{side=\"a\"}} {v}\nlab_gauge{{side=\"b\"}} {v / 2}\n"
                + w.render()).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory):
    """A real Prometheus scraping a real endpoint every second; yields (url, endpoint). Both stopped after,
    and the test checks they are gone."""
    if shutil.which("prometheus") is None:
        pytest.skip("needs prometheus (apt-get install prometheus)")
    d = tmp_path_factory.mktemp("prom")
    ep = _Endpoint(("127.0.0.1", 0), _Handler)
    threading.Thread(target=ep.serve_forever, daemon=True).start()
    port = free_port()
    cfg = d / "prometheus.yml"
    cfg.write_text(f"global: {{scrape_interval: 1s, scrape_timeout: 800ms}}\nscrape_configs:\n"
                   f"  - job_name: lab\n    static_configs: [{{targets: ['127.0.0.1:{ep.server_address[1]}']}}]\n")
    prom = subprocess.Popen(["prometheus", f"--config.file={cfg}", f"--storage.tsdb.path={d / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{port}", "--log.level=error"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/-/ready")
        deadline = time.time() + 30
        while time.time() < deadline:  # targets are applied ~5 s after start
            with urllib.request.urlopen(url + "/api/v1/query?query=lab_gauge", timeout=2) as r:
                if b'"side":"a"' in r.read():
                    break
            time.sleep(0.5)
        yield url, ep
    finally:
        prom.terminate()
        try:
            prom.wait(timeout=15)
        except subprocess.TimeoutExpired:
            prom.kill()
            prom.wait()
        ep.shutdown()
        ep.server_close()
        assert prom.poll() is not None
        with socket.socket() as s:  # nothing listens on its port any more
            assert s.connect_ex(("127.0.0.1", port)) != 0
        shutil.rmtree(d)


EXPERIMENT = """\
topology: three-tier
checks:
  - name: gauge-bounded-in-baseline
    query: lab_gauge
    phase: baseline
    tolerance: {max: 20}
  - name: gauge-steady-under-fault
    query: max(lab_gauge)
    phase: fault
    tolerance: {relative_to_baseline: <=1.5x}
    fail_run: true
  - name: gauge-rises-under-fault
    query: 'lab_gauge{side="b"}'
    phase: fault
    tolerance: {relative_to_baseline: '>=2x'}
  - name: a-metric-nobody-exports
    query: sum(grayctl_no_such_metric_total)
    phase: all
    tolerance: {max: 1000000000}
    fail_run: true
"""


def test_checks_are_evaluated_per_phase_by_the_real_prometheus(prometheus, tmp_path):
    url, ep = prometheus
    f = tmp_path / "exp.yaml"
    f.write_text(EXPERIMENT)
    exp = load_experiment(f)
    ensure_checks_parse(url, exp)  # every query parses: no error
    # The endpoint's value moves with the phases: 10 in warmup and baseline, 40 under the fault.
    ep.value = 10.0
    time.sleep(1.2)  # the last sample before t0 is 10 already
    t0 = time.time()
    for _phase, a, b in PHASES:
        ep.value = 40.0 if _phase == "fault" else 10.0
        time.sleep(max(0.0, t0 + b - time.time()))
    time.sleep(1.5)  # the last scrape is in
    rows = {r["name"]: r for r in evaluate_checks(url, exp.checks, t0=t0, end=t0 + PHASES[-1][2], phases=PHASES)}

    base = rows["gauge-bounded-in-baseline"]
    assert base["verdict"] == "pass" and base["value"] == pytest.approx(10.0), base
    assert base["series"] == 2 and "max across 2 series" in base["why"]

    steady = rows["gauge-steady-under-fault"]
    # one step of the fault phase may still see the scrape before the change (<= 1 s of lag)
    assert steady["verdict"] == "fail" and 2.5 <= steady["value"] <= 4.0, steady
    assert steady["baseline"] == pytest.approx(10.0)
    assert rows["gauge-rises-under-fault"]["verdict"] == "pass"

    none = rows["a-metric-nobody-exports"]
    assert none["verdict"] == "no data" and none["value"] is None and "no series" in none["why"], none
    assert [c["name"] for c in failing(rows.values())] == ["gauge-steady-under-fault", "a-metric-nobody-exports"]


def test_a_query_prometheus_refuses_stops_the_run_naming_file_line_and_field(prometheus, tmp_path):
    url, _ = prometheus
    f = tmp_path / "exp.yaml"
    f.write_text(EXPERIMENT)
    exp = load_experiment(f)
    # as on a controller without promtool, where validation could not refuse them
    bad = list(exp.checks)
    bad[1] = dataclasses.replace(bad[1], query="sum(lab_gauge")
    bad[3] = dataclasses.replace(bad[3], query="lab_gauge[5s]")
    with pytest.raises(InputError) as e:
        ensure_checks_parse(url, dataclasses.replace(exp, checks=tuple(bad)))
    text = e.value.render()
    assert f"{f}:8:12: checks[1].query: Prometheus refused the query: " in text and "unclosed left parenthesis" in text
    assert f"{f}:17:12: checks[3].query: the query gives a matrix" in text, text
    assert "checks[0]" not in text and "checks[2]" not in text


def test_the_shipped_error_ratio_check_passes_a_run_without_errors_instead_of_no_data(prometheus):
    """experiments/three-tier-loss.yaml's check against the load generator's real exposition: a run with
    no error is a pass (0), where the plain ratio has no series at all (no data)."""
    url, _ = prometheus
    exp = load_experiment(ROOT / "experiments" / "three-tier-loss.yaml")
    (check,) = exp.checks
    assert "or vector(0)" in check.query
    time.sleep(3)  # a few scrapes of a rising request counter
    now = time.time()
    phases = [("fault", 0.0, 10.0)]
    (row,) = evaluate_checks(url, [check], t0=now - 10, end=now, phases=phases)
    assert row["verdict"] == "pass" and row["value"] == 0.0, row
    plain = dataclasses.replace(check, query="sum(rate(grayctl_workload_errors_total[10s])) / "
                                             "sum(rate(grayctl_workload_requests_total[10s]))")  # as it was shipped
    (row,) = evaluate_checks(url, [plain], t0=now - 10, end=now, phases=phases)
    assert row["verdict"] == "no data", (plain.query, row)


def test_every_shipped_check_on_the_load_generator_has_data_from_its_real_exposition(prometheus):
    """The shipped checks that read the load generator, against its own renderer in a real Prometheus:
    each gets a value in every phase (a label or name that matches nothing would be "no data")."""
    from test_shipped_checks import shipped_checks

    from grayctl.experiment import Check
    from grayctl.promql import metric_names

    url, _ = prometheus
    time.sleep(4)  # a few scrapes of rising counters
    now = time.time()
    phases = [("warmup", 0.0, 2.0), ("baseline", 2.0, 5.0), ("fault", 5.0, 8.0), ("recovery", 8.0, 10.0)]
    workload = [(f, n, q) for f, n, q in shipped_checks()
                if all(m.startswith("grayctl_workload_") for m in metric_names(q))]
    assert len(workload) >= 3, workload
    checks = [Check(n, q, "fault", Tolerance("relative_to_baseline", 1.5, "<="), False) for _, n, q in workload]
    for (f, n, q), row in zip(workload, evaluate_checks(url, checks, t0=now - 10, end=now, phases=phases)):
        assert row["verdict"] in ("pass", "fail") or "baseline mean is 0" in row["why"], (f, n, row)
        assert all(v is not None for v in row["phases"].values()), (f, n, row["phases"])


def test_a_refused_range_query_is_not_evaluated_with_prometheus_words(prometheus, tmp_path):
    url, _ = prometheus
    f = tmp_path / "exp.yaml"
    f.write_text(EXPERIMENT)
    check = dataclasses.replace(load_experiment(f).checks[0], query="lab_gauge[5s]")
    now = time.time()
    (row,) = evaluate_checks(url, [check], t0=now - 13, end=now, phases=PHASES)
    assert row["verdict"] == "not evaluated" and "bad_data" in row["why"], row


def test_an_unreachable_prometheus_is_not_evaluated_never_a_pass(tmp_path):
    f = tmp_path / "exp.yaml"
    f.write_text(EXPERIMENT)
    exp = load_experiment(f)
    rows = evaluate_checks(f"http://127.0.0.1:{free_port()}", exp.checks, t0=time.time() - 13, end=time.time(),
                           phases=PHASES, timeout=2)
    assert {r["verdict"] for r in rows} == {"not evaluated"}
    assert all("cannot query Prometheus" in r["why"] for r in rows)
    ensure_checks_parse(f"http://127.0.0.1:{free_port()}", exp, timeout=2)  # left to the metrics step


# -- the report shows the stored verdicts -----------------------------------------------------------

def test_the_report_shows_the_runs_verdicts_and_no_data_loudly(tmp_path):
    from dataset_inputs import real_inputs  # tests/unit: a dataset of real records (runtime + load generator)

    import grayctl.dataset
    from grayctl.dataset.assemble import assemble_run
    from grayctl.report import render_report

    inputs = real_inputs(tmp_path / "real")
    names = [c["name"] for c in inputs["experiment"].to_dict()["checks"]]
    rows = [{"name": names[0], "query": "q0", "phase": "fault", "tolerance": {"max": 1}, "fail_run": True,
             "value": 2.5, "verdict": "fail", "why": "mean 2.5 vs max 1"},
            {"name": names[1], "query": "q1", "phase": "all", "tolerance": {"max": 5}, "fail_run": True,
             "value": None, "verdict": "no data", "why": "no sample in the phase; the query returned no series"}]
    with_verdicts = tmp_path / "run-v"
    assemble_run(with_verdicts, **inputs, status="complete", checks=rows)
    html = (with_verdicts / "report.html").read_text()
    assert "NO DATA" in html and "(fails the run)" in html and "the query returned no series" in html
    assert grayctl.dataset.load(with_verdicts).manifest["checks"] == rows
    assert "NO DATA" in render_report(grayctl.dataset.load(with_verdicts))  # again from the files

    without = tmp_path / "run-n"
    assemble_run(without, **inputs, status="complete")
    html = (without / "report.html").read_text()
    table = html.split("<h2>Hypothesis checks</h2>", 1)[1].split("</table>", 1)[0]
    assert "this dataset holds no verdicts" in table and 'class="pass"' not in table
