"""``mqbench run`` on the real embedded cluster (``single`` layout for speed): the CI end-to-end run.

Two cells (codec none and zstd:3 on every body, batches of 8), each on a fresh broker process with
its Raft store, real driver processes. Proves the whole path: cluster up, topics created, open-loop
sends acknowledged, consumed and decompressed, machine figures read from the broker processes and
their stores, a valid result folder, and the printed table equal to ``mqbench report``'s; with an
ACL, so every request of the run's workers and probes is signed.
"""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from mqbench.cli import cli
from mqbench.harness.results import load_result


ACL_YML = ("globalWhiteRemoteAddresses: []\naccounts:\n  - accessKey: someone\n    secretKey: s3cret-key\n"
           "    defaultTopicPerm: DENY\n    defaultGroupPerm: DENY\n")


@pytest.mark.realproc
def test_a_short_matrix_on_the_embedded_single_layout_with_an_acl(tmp_path):
    """Also ``--acl`` (one run instead of two, as each cell starts its own broker): the embedded
    broker checks RocketMQ's ACL (here one account, no white address, every topic denied by
    default), so only requests signed with the cluster's own account get through: the run's
    producers, consumers, topic creation and probes all carry it."""
    acl = tmp_path / "plain_acl.yml"
    acl.write_text(ACL_YML)
    out = tmp_path / "out"
    runner = CliRunner()
    result = runner.invoke(cli, [
        "run", "orders", "--layout", "single", "--matrix", "codec=none,zstd:3", "--batch", "8",
        "--compress-over", "0", "--duration", "2s", "--warmup", "1s", "--window", "1s", "--rate", "300",
        "--drain", "5s", "--limits", "none", "--quiet", "--acl", str(acl), "--out", str(out)])
    assert result.exit_code == 0, result.output
    folder, doc = load_result(next(p for p in out.iterdir() if not p.name.startswith(".")))
    assert not (out / ".work").exists()  # the stores of the per-cell clusters are removed
    assert doc["layout"]["name"] == "single" and doc["target"] is None
    for cell in doc["cells"]:
        agg = cell["aggregates"]
        assert agg["published"] > 300 and agg["publish_errors"] == 0
        assert agg["consume_backlog_msgs_after_drain"] == 0
        assert agg["e2e_latency_count"] > 0
        assert cell["cpu_s_per_million_msgs"] > 0
        assert cell["disk_bytes_per_msg"] > 300  # body (~550 B raw, less compressed) + headers + queue unit
        assert cell["replication_bytes"] is not None      # the probes are signed too
    zstd = doc["cells"][1]["settings"]["payload"]
    assert zstd["compression_ratio_as_sent"] == pytest.approx(zstd["compression_ratio_per_msg"])
    assert zstd["compression_ratio_per_msg"] > 1.2
    report = runner.invoke(cli, ["report", str(folder)])
    assert report.exit_code == 0 and report.stdout == result.stdout


@pytest.mark.realproc
@pytest.mark.slow  # long for CI's 10-minute budget; run with -m slow
def test_layout_as_a_matrix_axis_gives_each_cell_its_own_cluster_and_per_host_figures(tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli, [
        "run", "orders", "--matrix", "layout=single,raft3", "--delay", "off", "--duration", "2s", "--warmup", "1s",
        "--window", "1s", "--rate", "100", "--drain", "5s", "--limits", "none", "--quiet", "--out", str(tmp_path)])
    assert result.exit_code in (0, 3), result.output  # written; a stall of this shared machine may saturate
    folder, doc = load_result(next(p for p in tmp_path.iterdir() if not p.name.startswith(".")))
    single, raft3 = doc["cells"]
    assert single["name"].startswith("layout=single,") and raft3["name"].startswith("layout=raft3,")
    assert (single["layout"]["name"], single["layout"]["hosts"]) == ("single", 1)
    assert (raft3["layout"]["name"], raft3["layout"]["hosts"], raft3["layout"]["replicas_per_group"]) == ("raft3", 3, 3)
    header = result.stdout.splitlines()[0]
    assert "achieved/host msgs/s" in header and "achieved/instance msgs/s" in header
    rows = [line.split() for line in result.stdout.splitlines()[2:4]]
    assert rows[0][1] == "single" and rows[1][1] == "raft3"


@pytest.mark.realproc
def test_batch_cells_batch_and_figures_are_the_users_own(tmp_path):
    # Issue 16 findings 2-4: at 500 msgs/s over 16 queues a batch=64 cell stored 1.02 messages per
    # record, offset records came close to the users' messages, broker and client CPU were one figure.
    runner = CliRunner()
    result = runner.invoke(cli, [
        "run", "orders", "--layout", "single", "--matrix", "batch=1,64", "--duration", "4s", "--warmup", "1s",
        "--window", "2s", "--rate", "500", "--drain", "5s", "--limits", "none", "--out", str(tmp_path), "--json"])
    assert result.exit_code in (0, 3), result.output  # written; a stall of this shared machine may saturate
    _folder, doc = load_result(next(p for p in tmp_path.iterdir() if not p.name.startswith(".")))
    single, batched = doc["cells"]
    assert single["batch_achieved"]["msgs_per_record_mean"] == 1.0
    achieved = batched["batch_achieved"]
    assert achieved["asked_msgs"] == 64 and achieved["msgs_per_record_mean"] >= 32, achieved
    assert achieved["msgs_per_record_p50"] == 64 and not achieved["under_half_asked"]
    assert achieved["msgs_total"] >= 0.7 * batched["aggregates"]["acked_msgs_total"]   # undelayed share: 78 %
    for cell in doc["cells"]:
        acked = cell["aggregates"]["acked_msgs_total"]
        # offsets are snapshots: the broker's metadata is a small fraction of what users stored
        assert cell["disk_meta_bytes_total"] < 0.05 * cell["disk_user_bytes_per_msg"] * acked, cell["name"]
        assert cell["disk_user_bytes_per_msg"] > 500      # ~650 B orders bodies plus headers
        assert cell["broker_cpu_us_per_msg"] == pytest.approx(cell["cpu_s_per_million_msgs"])
        assert cell["client_cpu_us_per_msg"] > 0
        # the client figure split by role (#15): each worker role's own CPU, per message and per delivery
        assert cell["producer_cpu_us_per_msg"] > 0 and cell["consumer_cpu_us_per_msg"] > 0
        counts = cell["aggregates"]
        assert cell["consumer_cpu_us_per_delivery"] * counts["consumed"] == \
            pytest.approx(cell["consumer_cpu_us_per_msg"] * counts["published"])
        assert 0 < cell["broker_cpu_machine_share"] <= 1 and 0 < cell["client_cpu_machine_share"] <= 1
        assert any(w["broker_cpu_s"] for w in cell["windows"]) and any(w["client_cpu_s"] for w in cell["windows"])
    assert batched["disk_user_bytes_per_msg"] < single["disk_user_bytes_per_msg"]    # one header per 64
