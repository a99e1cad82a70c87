"""mqbench.gc_pauses: the collector settings of mqbench's own processes (run in a child
interpreter: freezing the test runner's objects would outlive the test)."""
import json
import os
import subprocess
import sys

PROBE = """
import gc, json
from mqbench.gc_pauses import settle_after_startup
before = gc.get_threshold()
applied = settle_after_startup()
print(json.dumps({"applied": applied, "before": before, "after": gc.get_threshold(),
                  "frozen": gc.get_freeze_count()}))
"""


def _probe(env_value):
    env = dict(os.environ)
    env.pop("MQBENCH_GC", None)
    if env_value is not None:
        env["MQBENCH_GC"] = env_value
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout)


def test_settle_freezes_start_up_objects_and_raises_the_young_threshold():
    from mqbench.gc_pauses import GEN0_THRESHOLD

    result = _probe(None)
    assert result["applied"] is True
    assert result["after"][0] == GEN0_THRESHOLD > result["before"][0]
    assert result["frozen"] > 1000     # the interpreter's and mqbench's start-up objects


def test_default_keeps_cpython_settings():
    result = _probe("default")
    assert result["applied"] is False
    assert result["after"] == result["before"]
    assert result["frozen"] == 0


def test_the_producer_driver_settles_once_its_workload_is_built():
    """The worker's hook runs once, in prepare() (before the run's clock starts: ``ready``), after
    the first message was drawn (a catalogue is start-up); the schedule still starts at that
    message, and begin() alone prepares too."""
    from mqbench.run.producer_driver import ProducerDriver

    spec = {"subscriptions": [], "batch_msgs": {}, "duration_ms": 1_000, "warmup_ms": 0, "window_ms": 1_000,
            "source": "orders", "seed": 3, "rate": 1000.0, "worker_index": 0, "workers": 1, "delay": True,
            "topics": ["order_events", "order_payment_timeout"]}
    calls = []
    driver = ProducerDriver(spec, lambda m: None)
    driver.settle = lambda: calls.append(driver.schedule)
    driver.prepare()
    assert calls == [None]          # before begin: no schedule, no clock yet
    driver.begin(0)
    assert len(calls) == 1
    reference = ProducerDriver(spec, lambda m: None)
    reference.begin(0)
    assert [driver.schedule.take() for _ in range(20)] == [reference.schedule.take() for _ in range(20)]
