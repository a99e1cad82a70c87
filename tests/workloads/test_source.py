"""open_workload: one call for profiles, profile files and traces, cut by count and duration."""
import pytest

from mqbench.errors import UserError
from mqbench.workloads.generator import GENERATOR_VERSION, generate_messages
from mqbench.workloads.profile import BUILTIN_DIR, load_profile
from mqbench.workloads.source import open_workload
from mqbench.workloads.trace import TraceWriter


def test_profiles_by_name_and_path_generate_lazily():
    by_name = open_workload("iot", 3, count=50)
    by_path = open_workload(str(BUILTIN_DIR / "iot.toml"), 3, count=50)
    assert by_name.profile.name == "iot" and by_name.trace is None
    assert list(by_name.messages) == list(by_path.messages)
    assert by_name.payload_source == "profile:iot"


def test_shape_start_moves_along_the_rate_shape():
    night = list(open_workload("orders", 1, duration_ms=300, shape_start_ms=14_400_000).messages)
    evening = list(open_workload("orders", 1, duration_ms=300, shape_start_ms=73_800_000).messages)
    assert len(evening) > 6 * len(night)
    assert evening[0].send_offset_us < 2000


def test_traces_carry_their_profile_and_are_cut(tmp_path):
    profile = load_profile("notifications")
    path = tmp_path / "n.parquet"
    with TraceWriter(path, source="generated", profile=profile.name, profile_document=profile.document, seed=2,
                     generator_version=GENERATOR_VERSION) as writer:
        for message in generate_messages(profile, 2, count=400):
            writer.write(message)
    workload = open_workload(path, seed=99)
    assert workload.profile.topics == profile.topics and workload.trace.seed == 2
    assert len(list(workload.messages)) == 400
    assert len(list(open_workload(path, 0, count=7).messages)) == 7
    cut = list(open_workload(path, 0, duration_ms=10).messages)
    assert cut and all(m.send_offset_us < 10_000 for m in cut)
    assert workload.payload_source == "trace:n.parquet:generated"


def test_unknown_source():
    with pytest.raises(UserError, match="no profile"):
        open_workload("mystery", 1)
