"""Stamps, /proc parsing, disk bytes, the tracker's backlogs and checks, payload compression ratios."""
from __future__ import annotations

import os
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mqbench.codecs.registry import parse_codec
from mqbench.harness.histograms import encode_histogram, new_histogram
from mqbench.run.consumer_driver import Deliveries
from mqbench.run.payload import measure_payload
from mqbench.run.probes import CLOCK_TICKS_PER_S, allocated_bytes, cpu_seconds, parse_proc_stat
from mqbench.run.stamps import PROPERTY_DELIVER_NS, PROPERTY_INTENDED_NS, PROPERTY_RUN, read_stamp, stamp
from mqbench.run.tracker import Tracker
from mqbench.workloads.source import open_workload

# --- stamps -----------------------------------------------------------------------------------


def test_stamps_round_trip_and_keep_the_users_properties():
    props = stamp({"bizLine": "mall"}, "run1", 123456789, None)
    assert props == {"bizLine": "mall", PROPERTY_RUN: "run1", PROPERTY_INTENDED_NS: "123456789"}
    assert read_stamp(props, "run1") == (123456789, None)
    delayed = stamp({}, "run1", 5, 1_000_000_005)
    assert read_stamp(delayed, "run1") == (5, 1_000_000_005)


def test_other_runs_and_broken_stamps_are_not_ours():
    assert read_stamp(stamp({}, "run1", 1, None), "run2") is None
    assert read_stamp({}, "run1") is None
    assert read_stamp({PROPERTY_RUN: "run1"}, "run1") is None
    assert read_stamp({PROPERTY_RUN: "run1", PROPERTY_INTENDED_NS: "12x"}, "run1") is None
    assert read_stamp({PROPERTY_RUN: "run1", PROPERTY_INTENDED_NS: "1", PROPERTY_DELIVER_NS: ""}, "run1") is None


@given(st.dictionaries(st.sampled_from([PROPERTY_RUN, PROPERTY_INTENDED_NS, PROPERTY_DELIVER_NS, "x"]),
                       st.text(max_size=12)))
def test_read_stamp_never_raises(props):
    result = read_stamp(props, "r")
    assert result is None or isinstance(result[0], int)


# --- /proc/<pid>/stat ---------------------------------------------------------------------------

# A real stat line layout (proc(5)): pid (comm) state ppid pgrp session tty_nr tpgid flags minflt
# cminflt majflt cmajflt utime stime cutime ...: utime is field 14 (here 250), stime 15 (here 50).
STAT_LINE = "4242 (python3) S 1 4242 4242 0 -1 4194304 1000 0 2 0 250 50 7 3 20 0 3 0 100 1000000 500\n"


def test_parse_proc_stat_reads_utime_and_stime():
    assert parse_proc_stat(STAT_LINE) == pytest.approx(300 / CLOCK_TICKS_PER_S)


def test_a_command_name_with_spaces_and_parentheses_does_not_shift_the_fields():
    tricky = STAT_LINE.replace("(python3)", "(my (odd) name)")
    assert parse_proc_stat(tricky) == pytest.approx(300 / CLOCK_TICKS_PER_S)


@pytest.mark.parametrize("text", ["", "4242 python3 S 1", "4242 (x) S 1 2 3", "4242 (x) S " + "a " * 20])
def test_a_malformed_stat_line_is_a_value_error(text):
    with pytest.raises(ValueError):
        parse_proc_stat(text)


def test_cpu_seconds_of_this_process_grow_with_work_and_gone_pids_count_zero():
    before = cpu_seconds([os.getpid()])
    deadline = time.process_time() + 0.05
    while time.process_time() < deadline:
        pass
    assert cpu_seconds([os.getpid()]) > before
    assert cpu_seconds([2**22 + 12345]) == 0.0


def test_allocated_bytes_counts_blocks_not_apparent_size(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "data").write_bytes(os.urandom(64 * 1024))
    with open(tmp_path / "sparse", "wb") as handle:
        handle.truncate(1 << 30)  # a preallocated-looking 1 GiB segment that holds nothing
    used = allocated_bytes([tmp_path])
    assert 64 * 1024 <= used < 1 << 20
    assert allocated_bytes([tmp_path / "missing"]) == 0


# --- deliveries and the tracker ----------------------------------------------------------------


def test_deliveries_count_the_groups_whose_subscription_matches():
    deliveries = Deliveries([("fulfil", "orders", "PAID || CANCELLED"), ("analytics", "orders", "*"),
                             ("closer", "timeouts", "*")])
    assert deliveries.count("orders", "PAID") == 2
    assert deliveries.count("orders", "CREATED") == 1
    assert deliveries.count("timeouts", "") == 1
    assert deliveries.count("other", "PAID") == 0


def producer_progress(t_ns, **totals):
    base = dict.fromkeys(("intended", "sent", "acked", "errors", "acked_bytes", "expected_deliveries",
                          "delayed_acked", "in_flight", "publish_backlog"), 0)
    base.update(totals)
    return {"type": "progress", "role": "producer", "t_ns": t_ns, "totals": base}


def consumer_progress(t_ns, consumed):
    return {"type": "progress", "role": "consumer", "t_ns": t_ns,
            "totals": {"consumed": consumed, "consumed_undelayed": consumed, "consumed_delayed": 0,
                       "consumed_bytes": 0, "foreign": 0}}


def test_the_tracker_sums_workers_and_samples_backlogs_per_window():
    tracker = Tracker()
    s = 1_000_000_000
    tracker.observe("p0", producer_progress(1 * s, acked=100, expected_deliveries=200, publish_backlog=3))
    tracker.observe("p1", producer_progress(1 * s, acked=50, expected_deliveries=100))
    tracker.observe("c0", consumer_progress(int(1.5 * s), 250))
    tracker.observe("p0", producer_progress(15 * s, acked=900, expected_deliveries=1800, publish_backlog=40))
    totals = tracker.totals()
    assert totals["acked"] == 950 and totals["consume_backlog"] == 1900 - 250
    backlogs = tracker.window_backlogs(0, 10_000, 3)
    assert backlogs[0] == {"publish_backlog_msgs": 3, "consume_backlog_msgs": 50}
    assert backlogs[1] == {"publish_backlog_msgs": 40, "consume_backlog_msgs": 1650}
    assert tracker.window_backlogs(5 * s, 1_000, 1)[0] == {"publish_backlog_msgs": 3, "consume_backlog_msgs": 50}
    assert Tracker().window_backlogs(0, 1000, 1)[0]["publish_backlog_msgs"] is None
    assert not tracker.drained()


def test_a_check_observes_the_interval_only():
    tracker = Tracker()
    tracker.observe("p0", producer_progress(1, acked=100, errors=1))
    tracker.start_check()
    histogram = new_histogram()
    for value_us in range(1000, 101_000, 1000):  # 1..100 ms
        histogram.record_value(value_us)
    message = producer_progress(2, acked=400, errors=3, publish_backlog=7)
    message["latency_histogram"] = encode_histogram(histogram)
    tracker.observe("p0", message)
    observation = tracker.take_check(2000, 150.0)
    assert (observation.published, observation.publish_errors, observation.intended) == (300, 2, 300)
    assert observation.publish_backlog_msgs == 7
    assert observation.publish_latency_ms_p99 == pytest.approx(99, rel=0.01)
    assert tracker.take_check(1000, 0.0).publish_latency_ms_p99 is None


def test_a_check_counts_offered_and_acknowledged_over_the_same_report_span():
    # A producer reporting every 500 ms at exactly 300 msgs/s (every message acked). The check runs
    # 3.6 s by the parent's clock; its first edge saw a report 450 ms old and its last one a report
    # 50 ms old: before, 4 s of acks (1,200) were held against 3.6 s of offered load (1,080, +11 %).
    tracker = Tracker()
    ms = 1_000_000
    def report(t_ms, in_flight=0):
        count = 300 * t_ms // 1000
        message = producer_progress(t_ms * ms, acked=count, intended=count)
        message["totals"]["in_flight"] = in_flight
        tracker.observe("p0", message)
    report(1000)
    tracker.start_check()      # at 1,450 ms: the latest report is the one of 1,000 ms
    for t_ms in range(1500, 5500, 500):
        report(t_ms, in_flight=12)
    observation = tracker.take_check(3600, 300.0)   # at 5,050 ms
    assert observation.interval_ms == 4000
    assert observation.intended == observation.published == 1200
    assert observation.publish_in_flight == 12
    # Until every producer has reported since the check began, the old count is all there is.
    tracker.start_check()
    tracker.observe("p1", producer_progress(5_100 * ms, acked=10))
    fallback = tracker.take_check(1000, 300.0)
    assert fallback.intended == 300 and fallback.interval_ms == 1000


# --- payload ------------------------------------------------------------------------------------


def test_payload_ratios_are_measured_on_the_runs_own_bodies():
    bodies = [m.body for m in __import__("itertools").islice(open_workload("orders", 4).messages, 200)]
    codec = parse_codec("zstd:3")
    measured = measure_payload("orders", 4, parse_codec("zstd:3"), 4096, batch_msgs=16, sample_msgs=200)
    raw = sum(map(len, bodies))
    assert measured["compression_ratio_per_msg"] == pytest.approx(raw / sum(len(codec.compress(b)) for b in bodies))
    assert measured["compression_ratio_as_sent"] == 1.0  # orders bodies are all under 4 KiB
    assert measured["compressed_share"] == 0.0
    assert measured["compression_ratio_batch"] > measured["compression_ratio_per_msg"]
    everything = measure_payload("orders", 4, parse_codec("zstd:3"), 0, sample_msgs=200)
    assert everything["compression_ratio_as_sent"] == pytest.approx(everything["compression_ratio_per_msg"])
    assert measure_payload("orders", 4, parse_codec("none"), 4096, sample_msgs=10)["compression_ratio_per_msg"] == 1.0


def test_a_check_that_did_not_absorb_the_offered_load_is_unhealthy():
    from mqbench.harness.maxrate import Observation, Thresholds, verdict_of

    obs = Observation(interval_ms=1000, intended=250, published=200, publish_errors=0, publish_backlog_msgs=30,
                      consume_backlog_msgs=0, publish_latency_ms_p99=20.0)
    assert verdict_of(obs, Thresholds(published_share_min=0))[0]  # the count thresholds alone miss a 25 % overload
    healthy, reasons = verdict_of(obs, Thresholds(published_share_min=0.9))
    assert not healthy and reasons == ["acknowledged 200 < 0.9 x 250 offered"]
    assert verdict_of(Observation(1000, 250, 240, 0, 0, 0, 20.0), Thresholds(published_share_min=0.9))[0]


# --- progress line, ports, truncation ------------------------------------------------------------


def test_progress_text_and_terminal_only_display():
    import io

    from mqbench.run.progress import ProgressLine, describe

    totals = {"acked": 12345, "consumed": 12000, "publish_backlog": 3, "consume_backlog": 345, "errors": 0}
    text = describe("cell 1/2 codec=none", "measuring", 12.34, 35, totals, 1000.0, 998.6)
    assert text == ("cell 1/2 codec=none measuring  12.3/35 s | offered 1,000/s | acked 12,345 (999/s) | "
                    "consumed 12,000 | backlog pub 3 cons 345 | errors 0")
    piped = io.StringIO()
    quiet = ProgressLine(piped)  # a StringIO is not a terminal
    quiet.show(text)
    quiet.note("x")
    quiet.close()
    assert piped.getvalue() == ""
    shown = io.StringIO()
    line = ProgressLine(shown, enabled=True)
    line.show("one")
    line.show("two")
    line.close()
    assert shown.getvalue() == "\r\x1b[2Kone\r\x1b[2Ktwo\r\x1b[2K"


def test_the_port_offset_avoids_ports_in_use():
    import socket

    from mqbench.broker.layout import load_layout
    from mqbench.run.environment import free_port_offset

    layout = load_layout("single")
    offset = free_port_offset(layout, first=23_000, spread=1)  # deterministic: the first free from 23000
    moved = layout.with_port_offset(offset)
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind((moved.instances[0].address, moved.instances[0].port))
        busy.listen()
        other = free_port_offset(layout, first=23_000, spread=1)
    assert other > offset


def test_truncating_metrics_keeps_the_windows_that_ran():
    from mqbench.harness.metrics import RunMetrics
    from mqbench.run.orchestrator import _truncate

    metrics = RunMetrics(0, duration_ms=60_000, warmup_ms=0, window_ms=10_000)
    for second in range(25):
        metrics.record_ack(second * 1_000_000_000, second * 1_000_000_000 + 1_000_000, 100)
    short = _truncate(metrics, 25_000)
    assert short.window_count == 3 and short.aggregates()["published"] == 25
    assert short.aggregates()["throughput_msgs_per_s"] == pytest.approx(1.0)
    assert _truncate(metrics, 90_000) is metrics


def test_pending_delayed_messages_are_their_own_figure_not_a_backlog():
    # Finding 6: "backlog end 0" while thousands of delayed messages were still to be delivered.
    tracker = Tracker()
    tracker.observe("p0", {"type": "progress", "role": "producer", "t_ns": 1,
                           "totals": {"acked": 100, "expected_deliveries": 80, "delayed_acked": 20,
                                      "delayed_deliveries_owed": 40}})
    tracker.observe("c0", {"type": "progress", "role": "consumer", "t_ns": 2,
                           "totals": {"consumed_undelayed": 80, "consumed_delayed": 15}})
    totals = tracker.totals()
    assert totals["consume_backlog"] == 0 and totals["delayed_pending"] == 25


def test_a_window_line_reads_like_producer_sh():
    from mqbench.run.progress import window_line

    before = {"intended": 1000, "acked": 990, "errors": 1}
    now = {"intended": 6000, "acked": 5980, "errors": 3, "publish_backlog": 7, "consume_backlog": 12}
    line = window_line("10:02:13Z", "cell 1/1 codec=none", "measuring", 20.0, 10.0, now, before, 2.14, 15.3)
    assert line == ("10:02:13Z cell 1/1 codec=none measuring 20.0 s | offered 500/s | achieved 499/s | pub p50 2.1 ms "
                    "p99 15.3 ms | errors 2 | backlog send 7 consume 12")


def test_a_batching_cell_may_be_late_by_its_linger_without_being_saturated():
    from mqbench.run.matrix import CellSettings
    from mqbench.run.orchestrator import RunSettings, _bounds
    from mqbench.run.plan import plan_workload

    settings = RunSettings(source="orders", cells=[CellSettings()], linger_ms=1000)
    plan = plan_workload("orders", 1)
    assert _bounds(settings, plan, CellSettings(batch="64")).publish_delay_ms_p99_max == 2000.0
    assert _bounds(settings, plan, CellSettings(batch="1")).publish_delay_ms_p99_max == 1000.0


def test_cpu_figures_split_broker_and_load_generator_per_message_and_machine_share():
    # Finding 4 of issue 16: the brokers' CPU and the load generator's are separate figures.
    from mqbench.run.probes import CpuSample, cpu_figures, sample_cpu

    first = CpuSample(0, broker_s=10.0, client_s=4.0)
    last = CpuSample(2_000_000_000, broker_s=11.0, client_s=4.5)
    figures = cpu_figures(first, last, msgs=1000, cpus=2)
    assert figures == {"broker_cpu_us_per_msg": 1000.0, "broker_cpu_machine_share": 0.25,
                       "client_cpu_us_per_msg": 500.0, "client_cpu_machine_share": 0.125,
                       "producer_cpu_us_per_msg": None, "consumer_cpu_us_per_msg": None,
                       "consumer_cpu_us_per_delivery": None}
    target = cpu_figures(CpuSample(0, None, 1.0), CpuSample(10**9, None, 1.5), msgs=0, cpus=1)
    assert target == {"broker_cpu_us_per_msg": None, "broker_cpu_machine_share": None,
                      "client_cpu_us_per_msg": None, "client_cpu_machine_share": 0.5,
                      "producer_cpu_us_per_msg": None, "consumer_cpu_us_per_msg": None,
                      "consumer_cpu_us_per_delivery": None}
    sample = sample_cpu(None, [os.getpid()], 5)
    assert sample.broker_s is None and sample.client_s > 0 and sample.t_ns == 5
    # brokers on other machines (Ray nodes, 3 x 4 CPUs): their share divides by those CPUs, not this machine's
    placed = cpu_figures(first, last, msgs=1000, cpus=2, broker_cpus=12)
    assert placed["broker_cpu_machine_share"] == 1.0 / (2 * 12) and placed["client_cpu_machine_share"] == 0.125
    # workers on Ray nodes (their CPU in the client figure, reported by themselves): this machine's
    # 2 CPUs plus the worker nodes' 6
    spread = cpu_figures(first, last, msgs=1000, cpus=2, client_cpus=8)
    assert spread["client_cpu_machine_share"] == 0.5 / (2 * 8) and spread["client_cpu_us_per_msg"] == 500.0


def test_cpu_figures_split_the_load_generator_into_producers_and_consumers():
    # #15/#16: the producers' and the consumers' CPU each per acknowledged message, the consumers'
    # also per delivery (three groups: three deliveries per message)
    from mqbench.run.probes import CpuSample, cpu_figures

    first = CpuSample(0, broker_s=10.0, client_s=4.0, producer_s=1.0, consumer_s=2.0)
    last = CpuSample(2_000_000_000, broker_s=11.0, client_s=4.5, producer_s=1.1, consumer_s=2.3)
    figures = cpu_figures(first, last, msgs=1000, cpus=2, consumed=3000)
    assert figures["producer_cpu_us_per_msg"] == pytest.approx(100.0)
    assert figures["consumer_cpu_us_per_msg"] == pytest.approx(300.0)
    assert figures["consumer_cpu_us_per_delivery"] == pytest.approx(100.0)
    assert cpu_figures(first, last, msgs=1000, cpus=2)["consumer_cpu_us_per_delivery"] is None


def test_the_workers_cpu_at_an_instant_is_interpolated_from_their_own_reports():
    # #20: the producer / consumer split from the workers' reports (probes.WorkerCpu), on Ray and
    # locally alike: linear between the two readings around the instant, the last after the last
    from mqbench.run.probes import CpuSample, WorkerCpu, cpu_at

    assert cpu_at([], 5) is None and cpu_at([(10, 1.0)], 5) is None
    readings = [(10, 1.0), (20, 2.0), (30, 2.5)]
    assert [cpu_at(readings, t) for t in (10, 15, 20, 29, 30, 99)] == [1.0, 1.5, 2.0, 2.45, 2.5, 2.5]
    split = WorkerCpu()
    for name in ("producer-0", "producer-1", "consumer-0"):
        split.add_worker(name, name.split("-")[0])
    for name, t_ns, cpu_s in (("producer-0", 0, 1.0), ("producer-0", 100, 2.0), ("producer-1", 0, 0.5),
                              ("producer-1", 200, 1.5), ("consumer-0", 0, 3.0), ("consumer-0", 50, 3.1)):
        split.observe(name, name.split("-")[0], {"type": "progress", "cpu_s": cpu_s, "cpu_t_ns": t_ns})
    split.observe("consumer-0", "consumer", {"type": "progress", "cpu_s": 9.0, "cpu_t_ns": 10})  # out of order: dropped
    split.observe("consumer-0", "consumer", {"type": "progress", "totals": {}})                 # no reading: ignored
    sample = split.split(CpuSample(50, broker_s=None, client_s=0.25))
    assert sample.producer_s == pytest.approx(1.5 + 0.75) and sample.consumer_s == pytest.approx(3.1)
    assert sample.client_s == pytest.approx(0.25 + 2.25 + 3.1)
    late = WorkerCpu()
    late.add_worker("consumer-0", "consumer")   # has not reported yet: its role's CPU is unknown
    assert late.role_s("consumer", 50) is None and late.role_s("producer", 50) == 0.0
