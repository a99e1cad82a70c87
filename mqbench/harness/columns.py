"""The report's columns: header, row field, number format and the one-line legend of each.

When the rows compare layouts, the default table also shows ``PER_HOST`` and ``PER_INSTANCE`` after
the achieved rate, so the cost of several instances per host shows against one per machine; when
they compare consumption (``--consume``/``consume=`` axis, ``--consumer-churn``, ``--slow-consumer``)
it shows ``CONSUMPTION`` after the e2e p99; when an e2e latency crossed Ray nodes, ``E2E_CLOCK``
(its clock bound) follows the e2e p99.

A column's header says what the figure is, with its unit (``send lateness p99 ms``, not ``delay
p99``). ``DEFAULT`` is the table a capacity review reads (``mqbench run`` and ``mqbench report``
print it); ``WIDE`` (``--wide``) adds every other figure a row carries. CSV and ``--json`` carry
every row field whatever the columns. Every rendered table is followed by the legend of exactly
the columns it shows (``legend``).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    header: str
    field: str
    fmt: str | None
    legend: str


def _c(header: str, field: str, fmt: str | None, legend: str) -> Column:
    return Column(header, field, fmt, legend)


RUN = _c("run", "run", None, "which run of the list under the table the row comes from")
PROFILE = _c("profile", "profile", None, "workload profile or trace file replayed")
LAYOUT = _c("layout", "layout", None, "broker layout measured (embedded layout name, or the --target cluster)")
CELL = _c("cell", "cell", None, "the matrix cell: codec, batch size asked, delay, whole-batch compression")
OFFERED = _c("offered msgs/s", "offered_msgs_per_s", ",.0f",
             "load offered in the measured phase (--rate max: the capacity, the rate that held every check of its hold "
             "and soak)")
ACHIEVED = _c("achieved msgs/s", "achieved_msgs_per_s", ",.0f",
              "messages intended in the measured phase and acknowledged within 1 s after it, per second of the phase: "
              "the messages the verdict counts, so never above offered (--rate max: absorbed during the hold and soak)")
VERDICT = _c("verdict", "verdict_text", None,
             "held: achieved >= 99% of offered with send lateness and backlogs bounded; saturated: the load was "
             "not carried (the signal is named), a valid overload measurement but never a capacity; failed: no "
             "measurement (cell error, nothing acknowledged, unfinished max search)")
PUB_P50 = _c("pub p50 ms", "publish_latency_ms_p50", ",.2f",
             "publish latency (send to broker ack), median (--rate max: during the hold and soak at the capacity)")
PUB_P99 = _c("pub p99 ms", "publish_latency_ms_p99", ",.2f",
             "publish latency (send to broker ack), 99th percentile (--rate max: during the hold and soak at the "
             "capacity)")
E2E_P99 = _c("e2e p99 ms", "e2e_latency_ms_p99", ",.2f",
             "intended send time to consumer receipt (end to end, open loop), undelayed messages, 99th percentile")
E2E_CLOCK = _c("e2e clock ± ms", "e2e_clock_uncertainty_ms", ",.3f",
               "runs on Ray whose producers and consumers are on different nodes: every e2e latency is exact to "
               "within this bound (the two nodes' clock offset uncertainties, half their least round trip to the "
               "driver); shown only when it is not 0")
BATCH = _c("achieved batch", "batch_text", None,
           "messages per stored record (mean, from the broker's store) of the batch size asked; '< half' marks a "
           "cell that reached under half of it")
BROKER_CPU = _c("broker CPU µs/msg", "broker_cpu_us_per_msg", ",.0f",
                "CPU time of the broker processes per acknowledged message (the load generator excluded)")
USER_DISK = _c("user disk B/msg", "disk_user_bytes_per_msg", ",.0f",
               "bytes on disk of user records per message, all replicas (broker metadata excluded), the whole "
               "cell: delayed messages included, which RocketMQ never batches")
#: shown after ``USER_DISK`` when a row batches (``--batch``/``batch=`` > 1)
BATCHED_DISK = _c("batched topics disk B/msg", "disk_batched_bytes_per_msg", ",.0f",
                  "the same on the topics the cell batches only, per message stored there: what batching and "
                  "whole-batch compression achieve (delayed messages go alone, parked on the delay topics)")

#: shown after ``E2E_P99`` when the rows compare consumption (pull vs pop, churn, a slow consumer)
CONSUMPTION = [
    _c("consumers", "consumer_scenario_text", None,
       "consumer scenario: members per group, rolling restart interval (--consumer-churn), one member 10x "
       "slower (--slow-consumer), simulated processing per message"),
    _c("e2e p99.9 ms", "e2e_latency_ms_p999", ",.2f", "end to end, undelayed messages, 99.9th percentile"),
    _c("worst window e2e p99 ms", "e2e_latency_ms_p99_worst_window", ",.2f",
       "the highest per-window e2e p99 (the jitter a rebalance or a stalled consumer causes shows here)"),
    _c("longest queue gap ms", "consume_gap_ms_max", ",.0f",
       "longest time between two consecutive deliveries from one queue, over all queues (a rebalance pause, "
       "a queue held by a slow consumer)"),
    _c("redeliveries", "redeliveries", ",d",
       "deliveries marked as retries (reconsumeTimes > 0: a POP message not acked within its invisible time)"),
    _c("duplicates", "duplicates", ",d",
       "deliveries of a message the group had already received (pull: a rebalance restarting from the committed "
       "offset; pop: a redelivery)"),
]

DEFAULT = [PROFILE, LAYOUT, CELL, OFFERED, ACHIEVED, VERDICT, PUB_P50, PUB_P99, E2E_P99, BATCH, BROKER_CPU, USER_DISK]

CAPACITY = _c("capacity msgs/s", "capacity_msgs_per_s", ",.0f",
              "--rate max only: the offered rate that held every check of its hold and soak (fixed-rate cells report "
              "no capacity)")
FIRST_UNHELD = _c("first unheld msgs/s", "first_unheld_rate_msgs_per_s", ",.0f",
                  "--rate max only: the lowest rate above the capacity that failed twice")

EXTRA = [
    _c("result", "result", None, "result folder"),
    _c("commit", "commit", None, "git commit of mqbench that measured it (+dirty: uncommitted changes)"),
    _c("seed", "seed", None, "--seed of the run"),
    _c("MB/s", "throughput_mb_per_s", ",.2f", "acknowledged body bytes per second"),
    _c("pub p99.9 ms", "publish_latency_ms_p999", ",.2f", "publish latency, 99.9th percentile"),
    _c("pub max ms", "publish_latency_ms_max", ",.2f", "publish latency, maximum"),
    _c("send lateness p99 ms", "publish_delay_ms_p99", ",.2f",
       "actual send time minus intended send time (open loop: a sender falling behind shows here), p99"),
    _c("delayed msg error p50 ms", "delay_error_ms_p50", ",.1f",
       "delayed messages: receipt minus requested delivery time (negative = early), median"),
    _c("delayed msg error p99 ms", "delay_error_ms_p99", ",.1f", "the same, 99th percentile"),
    _c("early deliveries", "early_deliveries", ",d", "delayed messages delivered before their time"),
    _c("publish errors", "publish_errors", ",d", "sends that failed in the measured phase"),
    _c("consumed msgs/s (all groups)", "consume_msgs_per_s", ",.0f",
       "deliveries per second summed over every consumer group (exceeds achieved msgs/s with several groups)"),
    _c("send backlog end", "publish_backlog_msgs_end", ",d", "messages due but unsent at the end of the measured phase"),
    _c("consume backlog end", "consume_backlog_msgs_end", ",d",
       "deliveries of undelayed messages owed at the end of the measured phase"),
    _c("delayed msgs pending", "delayed_pending_msgs_end", ",d",
       "deliveries of delayed messages not yet received when the cell ended (not due yet: not a backlog)"),
    _c("batch p50/p99", "batch_percentiles_text", None, "messages per stored record, median / 99th percentile"),
    _c("client CPU µs/msg", "client_cpu_us_per_msg", ",.0f", "CPU time of the load generator per message"),
    _c("producer CPU µs/msg", "producer_cpu_us_per_msg", ",.1f",
       "CPU time of the producer worker processes per acknowledged message"),
    _c("consumer CPU µs/msg", "consumer_cpu_us_per_msg", ",.1f",
       "CPU time of the consumer worker processes per acknowledged message (every group's deliveries)"),
    _c("consumer CPU µs/delivery", "consumer_cpu_us_per_delivery", ",.1f",
       "the same per message consumed (one delivery per group)"),
    _c("broker CPU share", "broker_cpu_machine_share", ".1%", "share of the machine's CPU the brokers used"),
    _c("client CPU share", "client_cpu_machine_share", ".1%", "share of the machine's CPU the load generator used"),
    _c("disk B/msg (all)", "disk_bytes_per_msg", ",.0f",
       "every byte the brokers' stores grew per message, metadata included, all replicas"),
    _c("metadata disk MB", "disk_meta_mb_total", ",.2f", "bytes on disk of broker metadata (offsets, config), MB"),
    _c("batched B/msg per copy", "disk_batched_bytes_per_msg_per_copy", ",.0f",
       "batched topics disk B/msg over the replicas per group: one copy, as `mqbench codecs bench` predicts it"),
    _c("predicted user disk B/msg", "disk_user_predicted_bytes_per_msg", ",.0f",
       "what `mqbench codecs bench --workload P --batch N` predicts for the messages this cell stored, by class "
       "(as sent, delayed parked, delayed delivered), all replicas, per acknowledged message"),
    _c("user disk vs predicted", "disk_user_vs_predicted", "+.1%", "user disk B/msg against that prediction"),
    _c("steady-state predicted B/msg", "disk_steady_predicted_bytes_per_msg", ",.0f",
       "the prediction once every delayed message is delivered (stored twice), all replicas: what a fleet stores"),
    _c("unbatched share", "unbatched_msgs_share", ".1%",
       "share of a batching cell's messages that went alone (delayed: RocketMQ never batches them)"),
    _c("hosts", "hosts", ",d", "hosts of the layout (embedded: loopback addresses on this one machine)"),
    _c("instances", "instances", ",d", "broker instances of the layout, replicas included"),
    PER_HOST := _c("achieved/host msgs/s", "achieved_per_host_msgs_per_s", ",.0f",
                   "achieved msgs/s divided by the layout's hosts (what one machine carries)"),
    PER_INSTANCE := _c("achieved/instance msgs/s", "achieved_per_instance_msgs_per_s", ",.0f",
                       "achieved msgs/s divided by the layout's instances, replicas included"),
    _c("disk/limit", "disk_share_of_limit", ".1%",
       "disk MB/s the achieved rate writes, over this machine's write+fdatasync MB/s"),
    _c("msgs/loopback frames", "loopback_share_of_limit", ".1%",
       "achieved msgs/s over this machine's loopback small frames/s"),
]
WIDE = [RUN] + DEFAULT[:6] + [CAPACITY, FIRST_UNHELD] + DEFAULT[6:] + CONSUMPTION + [E2E_CLOCK] + EXTRA

SIZING = [
    _c("sized from msgs/s", "sizing_basis_msgs_per_s", ",.0f",
       "the held rate sizing divides by: a --rate max capacity (absorbed) or a held fixed rate; '-' when not held"),
    _c("inst/host", "instances_per_host", ",.1f", "broker instances per host in the layout"),
    _c("per host msgs/s", "per_host_msgs_per_s", ",.0f", "sized-from rate per instance x instances per host"),
    _c("hosts needed", "hosts_needed", ",d", "hosts to carry the peak at the headroom (see the sizing note)"),
]

DELTAS = [
    _c("vs base achieved", "throughput_delta_share", "+.1%", "achieved msgs/s against the baseline row"),
    _c("vs base capacity", "capacity_delta_share", "+.1%", "--rate max capacity against the baseline row"),
    _c("vs base pub p99", "publish_latency_p99_delta_share", "+.1%", "publish latency p99 against the baseline row"),
    _c("vs base e2e p99", "e2e_latency_p99_delta_share", "+.1%", "end-to-end latency p99 against the baseline row"),
    _c("vs base user disk B/msg", "disk_user_bytes_per_msg_delta_share", "+.1%",
       "user disk bytes per message against the baseline row"),
    _c("vs base broker CPU/msg", "broker_cpu_per_msg_delta_share", "+.1%",
       "broker CPU µs per message against the baseline row"),
]


def legend(columns: list[Column]) -> list[str]:
    """One line per column shown: ``header: definition``."""
    return [f"{c.header}: {c.legend}" for c in columns]
