"""load_sample keeps its contract and also takes profile files and traces."""
import pytest

from mqbench.errors import UserError
from mqbench.workloads.bodies import generate_bodies
from mqbench.workloads.generator import generate_messages
from mqbench.workloads.profile import BUILTIN_DIR, load_profile
from mqbench.workloads.sample import load_sample
from mqbench.workloads.trace import TraceWriter


def test_model_names_are_unchanged():
    import random

    bodies, source = load_sample("orders", 50, 3)
    assert bodies == generate_bodies("orders", 50, random.Random(3)) and source == "model:orders:seed=3"
    assert len(load_sample("order_timeout", 20, 1)[0]) == 20


def test_profile_file_gives_its_generated_bodies():
    bodies, source = load_sample(str(BUILTIN_DIR / "orders.toml"), 100, 2)
    expected = [m.body for m in generate_messages(load_profile("orders"), 2, count=100)]
    assert bodies == expected and source == "profile:orders.toml:seed=2"


def test_trace_bodies(tmp_path):
    path = tmp_path / "t.parquet"
    messages = list(generate_messages(load_profile("iot"), 1, count=60))
    with TraceWriter(path, source="generated") as writer:
        for message in messages:
            writer.write(message)
    bodies, source = load_sample(str(path), 40)
    assert bodies == [m.body for m in messages[:40]] and source == "file:t.parquet"


def test_missing_source():
    with pytest.raises(UserError, match="neither a built-in profile"):
        load_sample("nothing-here", 10)
    with pytest.raises(UserError, match="does not exist"):
        load_sample("nothing-here.toml", 10)
