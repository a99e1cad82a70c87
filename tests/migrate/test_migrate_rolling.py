"""The rolling upgrade of a running 3-replica group (real broker processes) with producers and
consumers running throughout: every replica upgraded one at a time, nothing acknowledged lost,
consumer offsets kept, the write unavailability per replica measured."""
from __future__ import annotations

import asyncio
import json

import pytest
from click.testing import CliRunner

from mqbench.broker.store import versions
from mqbench.cli import cli
from mqbench.cluster import launcher
from mqbench.bench.traffic import gap_ms, replica_windows, traffic_during
from mqbench.migrate.rolling import rolling_upgrade

PORT_OFFSET = 4760
GROUP = "broker-a"


@pytest.mark.realproc
def test_rolling_upgrade_with_traffic_loses_nothing(tmp_path):
    state = launcher.up("raft3", tmp_path / "cluster", port_offset=PORT_OFFSET, wait_s=60)
    try:
        events: list[str] = []

        async def scenario():
            async def upgrade():
                return await rolling_upgrade(state, "v4-dledger", wait_s=60, on_event=events.append)
            return await traffic_during(state, GROUP, upgrade)

        result = asyncio.run(scenario())
        steps = result["steps"]
        assert [s.skipped for s in steps] == [False, False, False], events
        assert [s.was_leader for s in steps] == [False, False, True]
        for record in state.processes.values():
            if record.kind == "broker":
                store = record.argv[record.argv.index("--store") + 1]
                assert versions.detect_version(store) == "v4-dledger"
                assert record.argv[record.argv.index("--store-version") + 1] == "v4-dledger"
        lost = set(result["acked"]) - result["consumed"]
        assert not lost, f"{len(lost)} acknowledged messages never consumed: {sorted(lost)[:20]}"
        assert len(result["acked"]) > 100
        assert sum(o for o in result["offsets"].values() if o > 0) >= len(result["acked"])
        gaps = [gap_ms(result["acked"], a, b) for a, b in replica_windows(steps, result["t0"])]
        print("rolling upgrade: write unavailability per replica (ms):",
              {s.instance: round(g) for s, g in zip(steps, gaps)}, "down (s):",
              {s.instance: round(s.down_s, 1) for s in steps}, "failed sends:", result["failures"])
        # a follower's restart must not stop writes for long; the leader's costs one election
        assert max(gaps[:2]) < 5000 and gaps[2] < 20000
        # the command, run again, finds every replica done
        res = CliRunner().invoke(cli, ["migrate", "--rolling", "--cluster", str(state.directory), "--to", "v4-dledger",
                                       "--json"])
        assert res.exit_code == 0, res.output
        doc = json.loads(res.output)
        assert doc["mode"] == "rolling" and [r["skipped"] for r in doc["replicas"]] == [True, True, True]
    finally:
        launcher.down(state, timeout_s=5)
