"""One short, bounded drill per DR scheme with real broker processes (SIGKILL, real sockets, delay
proxies between rooms): RPO 0 where the scheme promises it, a measured loss window where it does
not (scheme C), and an RTO split that adds up."""
import asyncio
import os
import subprocess
import sys

import pytest

from mqbench.dr.drill import DrillSettings, run_drill

pytestmark = pytest.mark.realproc

SHORT = dict(warmup_ms=500, baseline_ms=700, before_ms=700, outage_ms=2500, after_ms=700, rate_per_s=80, burst=20)


def port_offset(slot: int) -> int:
    return 2000 + (os.getpid() % 200) * 100 + slot * 20  # apart from other runs of this suite


def drill(tmp_path, slot, **kwargs):
    settings = DrillSettings(directory=tmp_path, port_offset=port_offset(slot), seed=slot, **{**SHORT, **kwargs})
    return asyncio.run(asyncio.wait_for(run_drill(settings), 150)).row()


def assert_split_adds_up(row):
    phases = [row[k] for k in ("detection_ms", "election_ms", "leader_readiness_ms", "client_recovery_ms")]
    assert row["rto_ms"] is not None
    assert sum(p for p in phases if p is not None) == row["rto_ms"]


def test_scheme_a_loses_no_acknowledged_message_when_the_leaders_room_dies(tmp_path):
    row = drill(tmp_path, 0, scheme="A", fault="room")
    assert row["rpo_promised_zero"] and row["target"] in ("room1", "room2", "room3")
    assert row["acked_msgs"] > 100
    assert row["rpo_lost_msgs"] == 0, row
    assert row["detection_ms"] is not None and row["election_ms"] is not None  # the leader was in that room
    assert_split_adds_up(row)
    assert row["cross_room_bytes_per_msg"] > 0 and row["instances"] == 3


def test_scheme_b_survives_its_minority_room_without_loss(tmp_path):
    row = drill(tmp_path, 1, scheme="B", fault="room", target="room2")
    assert row["rpo_promised_zero"]
    assert row["rpo_lost_msgs"] == 0, row
    assert row["rto_ms"] is not None and row["rto_ms"] < 2500  # writes go on: room1 holds the majority


@pytest.mark.slow  # long for CI's 10-minute budget; run with -m slow
def test_scheme_b_majority_room_loss_with_memory_durability_replays_nothing(tmp_path):
    """Issue 18, finding 5: the leader's room holds the majority; both its replicas are SIGKILLed
    (memory durability) and restarted. The replica that won the election right after the restart
    answered pulls before applying its log and sent the consumer back to offset 0 (hundreds to
    thousands of duplicates on some seeds, not on this short drill's every run: the deterministic
    reproduction is ``tests/broker_server/test_replicated_reads_ready.py``). The consumer runs
    through the outage, so nothing it was handed may come again."""
    row = drill(tmp_path, 3, scheme="B", fault="room", target="room1", durability="memory")
    assert row["target"] == "room1" and not row["rpo_promised_zero"]
    assert row["acked_msgs"] > 100
    assert row["duplicates_msgs"] == 0, row


@pytest.mark.slow  # six instances, ~15 s: CI runs the scheme A and B drills; run with -m slow
def test_scheme_c_room_loss_has_a_measured_non_zero_loss_window(tmp_path):
    row = drill(tmp_path, 2, scheme="C", fault="room")
    assert not row["rpo_promised_zero"]
    assert 0 < row["rpo_lost_msgs"] <= row["acked_msgs"]
    assert row["lost_seqs_first"]  # the messages acknowledged in room1 just before it vanished
    assert row["instances"] == 6
    assert_split_adds_up(row)


def test_cli_rejects_bad_flags_in_one_line():
    result = subprocess.run([sys.executable, "-m", "mqbench", "dr", "--scheme", "A", "--outage", "soon"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "soon" in result.stderr and "Traceback" not in result.stderr
    result = subprocess.run([sys.executable, "-m", "mqbench", "dr", "--target", "room1"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--scheme" in result.stderr and "Traceback" not in result.stderr
