"""The result table shows the clock bound of e2e latencies that cross Ray nodes, and only then."""
from __future__ import annotations

from datetime import datetime, timezone

from mqbench.harness.report import LoadedResult, render, report_rows
from mqbench.harness.results import write_result

HEADER = "e2e clock ± ms"


def _doc(result_doc_factory, e2e_clock_uncertainty_us):
    doc = result_doc_factory(seed=7, rate=1500, cells={"codec=none": 120.0},
                             created=datetime(2026, 12, 6, tzinfo=timezone.utc))
    if e2e_clock_uncertainty_us is not None:
        doc["cells"][0]["ray"] = {"address": "ray://head:10001", "workers_per_node": 1, "nodes": [],
                                  "e2e_clock_uncertainty_us": e2e_clock_uncertainty_us}
    return doc


def test_e2e_across_nodes_shows_its_clock_bound_next_to_the_e2e_p99(tmp_path, result_doc_factory):
    doc = _doc(result_doc_factory, 850.0)
    loaded = [LoadedResult(write_result(doc, tmp_path), doc)]
    assert report_rows(loaded)[0]["e2e_clock_uncertainty_ms"] == 0.85
    text = render(loaded, "terminal")
    header = text.splitlines()[0]
    assert HEADER in header and header.index("e2e p99 ms") < header.index(HEADER)
    assert "0.850" in text.splitlines()[2] and f"  {HEADER}: " in text.split("Legend:")[1]


def test_no_bound_column_when_e2e_needs_no_cross_machine_clock(tmp_path, result_doc_factory):
    doc = _doc(result_doc_factory, None)
    loaded = [LoadedResult(write_result(doc, tmp_path), doc)]
    assert HEADER not in render(loaded, "terminal").splitlines()[0]          # a local run
    doc["cells"][0]["ray"] = {"e2e_clock_uncertainty_us": 0.0}              # topic placement: one clock
    assert HEADER not in render(loaded, "terminal").splitlines()[0]
    assert HEADER in render(loaded, "terminal", wide=True).splitlines()[0]
