"""``mqbench run`` comparing pull and POP consumption, with a rolling restart of the consumers and with
one slow consumer (real embedded ``single`` cluster, real worker processes)."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from mqbench.cli import cli
from mqbench.harness.results import load_result


def _run(tmp_path, *extra):
    result = CliRunner().invoke(cli, [
        "run", "orders", "--layout", "single", "--matrix", "consume=pull,pop", "--delay", "off", "--duration", "6s",
        "--warmup", "2s", "--window", "2s", "--rate", "150", "--drain", "8s", "--limits", "none", "--quiet",
        "--out", str(tmp_path), *extra])
    assert result.exit_code in (0, 3), result.output     # a stall of this shared machine may saturate
    return result, load_result(next(p for p in tmp_path.iterdir() if not p.name.startswith(".")))[1]


@pytest.mark.realproc
@pytest.mark.slow  # long for CI's 10-minute budget; run with -m slow
def test_pull_and_pop_under_consumer_churn(tmp_path):
    result, doc = _run(tmp_path, "--consumer-churn", "on", "--churn-interval", "2s")
    pull, pop = doc["cells"]
    assert pull["settings"]["consume"] == "pull" and pop["name"].endswith(",consume=pop")
    for cell in (pull, pop):
        agg = cell["aggregates"]
        assert cell["settings"]["consumer_scenario"]["members"] == 3
        assert agg["e2e_latency_count"] > 0 and agg["consume_backlog_msgs_after_drain"] == 0
        assert agg["consume_gap_ms_max"] is not None and agg["consume_gap_ms_max"] > 0
        for window in cell["windows"]:
            assert {"redeliveries", "duplicates", "consume_gap_ms_max", "e2e_latency_ms_p999"} <= set(window)
    # a POP duplicate is always a redelivery (a message acked too late by a closing member); the
    # messages a closing member had not handed out come back at once as redeliveries, never lost
    assert pop["aggregates"]["duplicates"] <= pop["aggregates"]["redeliveries"]
    header = result.stdout.splitlines()[0]
    assert "longest queue gap ms" in header and "duplicates" in header and "redeliveries" in header


@pytest.mark.realproc
@pytest.mark.slow  # long for CI's 10-minute budget; run with -m slow
def test_one_slow_consumer_scenario_runs_both_ways_and_loses_nothing(tmp_path):
    """The comparison itself is a measurement (quoted with its command in the README), not a timed
    assertion: this shared machine's load decides the figures."""
    result, doc = _run(tmp_path, "--slow-consumer", "on", "--processing", "3000")
    for cell in doc["cells"]:
        scenario = cell["settings"]["consumer_scenario"]
        assert scenario["slow"] is True and scenario["members"] == 3 and scenario["processing_us"] == 3000
        agg = cell["aggregates"]
        assert agg["e2e_latency_count"] > 0 and agg["consume_backlog_msgs_after_drain"] == 0
    assert "1 member 10x slower" in result.stdout
