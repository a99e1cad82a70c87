"""`mqbench run` measures limits by default and keeps them per machine for a day (finding 5)."""
from __future__ import annotations

import json
import os

import pytest

from mqbench.limits import LIMITS_SCHEMA, cache_file, cached_limits, limits_for_run, machine_info


def _write(path, machine, device, measured_s, limits=None):
    path.write_text(json.dumps({"schema": LIMITS_SCHEMA, "machine": machine, "disk_device": device,
                                "measured_unix_s": measured_s, "limits": limits or {"disk_fdatasync_per_s": 1.0}}))


def test_the_cache_is_used_only_for_the_same_machine_and_disk_within_a_day(tmp_path):
    machine = machine_info()
    path = tmp_path / "limits.json"
    device = os.stat(tmp_path).st_dev
    _write(path, machine, device, 1_000_000.0)
    assert cached_limits(path, machine, device, 1_000_000.0 + 3600) == {"disk_fdatasync_per_s": 1.0}
    assert cached_limits(path, machine, device, 1_000_000.0 + 86_401) is None  # over a day old
    assert cached_limits(path, machine, device + 1, 1_000_000.0 + 10) is None  # another disk
    assert cached_limits(path, {**machine, "cpu_cores": 64}, device, 1_000_000.0 + 10) is None  # another machine
    path.write_text("{not json")
    assert cached_limits(path, machine, device, 1_000_000.0) is None


def test_the_cache_file_is_per_machine_in_the_documented_place(tmp_path, monkeypatch):
    monkeypatch.setenv("MQBENCH_CACHE_DIR", str(tmp_path / "c"))
    assert cache_file({"hostname": "box/1"}) == tmp_path / "c" / "limits-box_1.json"
    monkeypatch.delenv("MQBENCH_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert cache_file({"hostname": "h"}) == tmp_path / "x" / "mqbench" / "limits-h.json"


@pytest.mark.slow  # long for CI's 10-minute budget; run with -m slow
def test_auto_measures_once_then_reads_the_cache_and_measure_refreshes_it(tmp_path):
    cache = tmp_path / "cache" / "limits.json"
    notes = []
    first = limits_for_run("auto", tmp_path, budget_ms=4000, cache=cache, note=notes.append)
    assert first["disk_write_fdatasync_mb_per_s"] > 0 and first["loopback_small_frames_per_s"] > 0
    assert first["cache_file"] == str(cache) and first["measured_utc"].endswith("Z")
    assert len(notes) == 1 and str(cache) in notes[0]
    again = limits_for_run("auto", tmp_path, budget_ms=4000, cache=cache, note=notes.append)
    assert again == first and len(notes) == 1  # from the cache: nothing measured
    refreshed = limits_for_run("measure", tmp_path, budget_ms=4000, cache=cache, note=notes.append,
                               clock_s=lambda: 4_000_000_000.0)
    assert len(notes) == 2 and refreshed["measured_utc"] != first["measured_utc"]
    assert limits_for_run("none", tmp_path) is None
