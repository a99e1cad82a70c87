"""What a run needs to know about its workload before it starts: topics, queues, consumer groups.

``plan_workload(source, seed)`` opens the workload once (a profile by name or file, or a trace):

* topics: from the profile (queues, ``batch_msgs``); for a trace without a recorded profile, the
  topics of its first ``TRACE_SCAN_MSGS`` messages with 4 queues each (RocketMQ's default);
* subscriptions ``[(group, topic, tag expression)]``: the profile's consumer groups; for a trace
  without a profile, one group ``mqbench-<topic>`` per topic subscribing ``*``.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

from mqbench.run.environment import TopicPlan
from mqbench.run.matrix import CellSettings
from mqbench.workloads.source import Workload, open_workload

TRACE_SCAN_MSGS = 10_000
DEFAULT_QUEUES = 4


@dataclass
class WorkloadPlan:
    workload: Workload
    topics: list[tuple[str, int, int]]  # (name, queues, profile batch_msgs)
    subscriptions: list[tuple[str, str, str]]

    @property
    def topic_names(self) -> list[str]:
        return [name for name, _, _ in self.topics]

    def topic_plans(self, cell: CellSettings) -> list[TopicPlan]:
        """Topics to create for a cell: a topic batched in this cell gets a batch consume queue."""
        return [TopicPlan(name, queues, cell.batch_msgs_for(batch_msgs) > 1) for name, queues, batch_msgs in self.topics]

    def batch_msgs(self, cell: CellSettings) -> dict[str, int]:
        return {name: cell.batch_msgs_for(batch_msgs) for name, _, batch_msgs in self.topics}


def plan_workload(source: str, seed: int) -> WorkloadPlan:
    workload = open_workload(source, seed)
    profile = workload.profile
    if profile is not None:
        topics = [(t.name, t.queues, t.batch_msgs if t.batch else 1) for t in profile.topics]
        subscriptions = [(c.group, topic, c.subscription) for c in profile.consumers for topic in c.topics]
    else:
        seen: dict[str, None] = {}
        for message in itertools.islice(open_workload(source, seed).messages, TRACE_SCAN_MSGS):
            seen.setdefault(message.topic)
        topics = [(name, DEFAULT_QUEUES, 1) for name in seen]
        subscriptions = [(f"mqbench-{name}"[:255], name, "*") for name in seen]
    return WorkloadPlan(workload, topics, subscriptions)
