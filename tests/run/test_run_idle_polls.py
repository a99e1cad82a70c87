"""The run's pull consumers long-poll idle queues as RocketMQ's do (15 s suspend), and still end at
once: the driver's old ``suspend_timeout_ms`` of 2 s re-polled every idle queue every 2 s. Against
the scripted broker: every queue gets one pull that stays suspended, and ``stop`` returns while
they are."""
from __future__ import annotations

import asyncio
import time

from run_scripted_cluster import scripted

SPEC = {"run_id": "t1", "duration_ms": 1000, "warmup_ms": 0, "window_ms": 500, "progress_ms": 100,
        "subscriptions": [("g-all", "order_events", "*")], "consume_from": "first"}


def test_idle_queues_are_pulled_once_per_suspend_and_stop_does_not_wait_for_it():
    from mqbench.run.consumer_driver import ConsumerDriver

    async def main():
        async with scripted.Cluster() as cluster:
            broker = await cluster.add_broker("broker-a", topics=("order_events",), queue_nums=4)
            reports: list[dict] = []
            driver = ConsumerDriver({**SPEC, "namesrv": cluster.namesrv_addr}, reports.append)
            task = asyncio.create_task(driver.run())
            while not any(r["type"] == "ready" for r in reports):
                await asyncio.sleep(0.01)
            driver.control({"op": "start", "start_ns": time.monotonic_ns()})
            pulls = [r for r in broker.requests if r.code == scripted.codes.PULL_MESSAGE]
            deadline = time.monotonic() + 5
            while len(pulls) < 4 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
                pulls = [r for r in broker.requests if r.code == scripted.codes.PULL_MESSAGE]
            suspends = {scripted.headers.PullMessageHeader.from_ext(r.ext_fields).suspend_timeout_ms for r in pulls}
            assert len(pulls) == 4 and suspends == {15_000}, (len(pulls), suspends)  # was 2,000: a re-poll every 2 s
            started = time.monotonic()
            driver.control({"op": "stop"})
            done = await task
            assert time.monotonic() - started < 2.0     # the suspended pulls do not hold the end of the run
            assert done["type"] == "done" and done["close_error"] is None
            assert len([r for r in broker.requests if r.code == scripted.codes.PULL_MESSAGE]) == 4

    asyncio.run(asyncio.wait_for(main(), 20))
