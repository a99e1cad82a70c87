"""The trace format: round trip, streaming row groups, identical bytes from a seed, damage reported."""
import hashlib

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mqbench.errors import CorruptDataError, UserError
from mqbench.workloads.generator import GENERATOR_VERSION, generate_messages
from mqbench.workloads.message import TraceMessage
from mqbench.workloads.profile import load_profile
from mqbench.workloads.trace import (TRACE_SCHEMA, TraceWriter, arrow_schema, is_trace, iter_trace_rows,
                                     read_trace_info)


def write_trace(path, messages, **kwargs):
    kwargs.setdefault("source", "generated")
    with TraceWriter(path, **kwargs) as writer:
        for message in messages:
            writer.write(message)
    return writer


def test_round_trip_in_many_row_groups(tmp_path):
    profile = load_profile("iot")
    messages = list(generate_messages(profile, 4, count=2500))
    path = tmp_path / "t.parquet"
    writer = write_trace(path, messages, profile="iot", profile_document=profile.document, seed=4,
                         generator_version=GENERATOR_VERSION, row_group_rows=300)
    assert writer.messages == 2500
    info = read_trace_info(path)
    assert (info.messages, info.row_groups, info.profile, info.seed, info.source) == (2500, 9, "iot", 4, "generated")
    assert info.generator_version == GENERATOR_VERSION and info.profile_document["name"] == "iot"
    assert list(iter_trace_rows(path, batch_rows=128)) == messages
    assert pq.ParquetFile(path).schema_arrow.metadata[b"mqbench.schema"] == TRACE_SCHEMA.encode()
    assert is_trace(path)


def test_row_groups_are_also_cut_by_body_bytes(tmp_path):
    messages = [TraceMessage(send_offset_us=i, topic="t", body=b"x" * 1000) for i in range(100)]
    write_trace(tmp_path / "b.parquet", messages, row_group_body_bytes=10_000)
    assert read_trace_info(tmp_path / "b.parquet").row_groups == 10


def test_same_seed_gives_identical_files(tmp_path):
    profile = load_profile("orders")
    digests = []
    for index, seed in enumerate((9, 9, 10)):
        path = tmp_path / f"{index}.parquet"
        write_trace(path, generate_messages(profile, seed, count=1500), profile="orders", seed=seed,
                    generator_version=GENERATOR_VERSION, row_group_rows=500)
        digests.append(hashlib.sha256(path.read_bytes()).hexdigest())
    assert digests[0] == digests[1] != digests[2]


def test_an_exception_leaves_no_file(tmp_path):
    path = tmp_path / "gone.parquet"
    with pytest.raises(RuntimeError):
        with TraceWriter(path, source="generated") as writer:
            writer.write(TraceMessage(send_offset_us=1, topic="t", body=b"a"))
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def _table(rows, metadata=None, schema=None):
    schema = schema or arrow_schema({b"mqbench.schema": TRACE_SCHEMA.encode(), **(metadata or {})})
    columns = {name: [row[name] for row in rows] for name in schema.names}
    return pa.Table.from_pydict(columns, schema=schema)


def _row(offset, **overrides):
    row = {"send_offset_us": offset, "topic": "t", "key": "", "tags": "", "properties": [], "delay_ms": 0,
           "delay_level": 0, "body": b"b"}
    row.update(overrides)
    return row


@pytest.mark.parametrize("rows,message", [
    ([_row(5), _row(3)], "row 1: send_offset_us 3 goes back from 5"),
    ([_row(0), _row(1, delay_level=19)], "row 1: bad delay"),
    ([_row(0, delay_ms=-1)], "row 0: bad delay"),
])
def test_bad_rows_are_reported_with_their_row(tmp_path, rows, message):
    path = tmp_path / "bad.parquet"
    pq.write_table(_table(rows), path)
    with pytest.raises(CorruptDataError, match=message):
        list(iter_trace_rows(path))


def test_files_that_are_not_traces(tmp_path):
    plain = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"body": [b"x"]}), plain)
    with pytest.raises(CorruptDataError, match="not an mqbench trace"):
        read_trace_info(plain)
    assert not is_trace(plain)
    future = tmp_path / "future.parquet"
    pq.write_table(_table([_row(0)], {b"mqbench.schema": b"mqbench.trace/9"}), future)
    with pytest.raises(CorruptDataError, match="trace schema 'mqbench.trace/9'; this mqbench reads mqbench.trace/1"):
        list(iter_trace_rows(future))
    wrong_type = tmp_path / "wrong.parquet"
    schema = arrow_schema({b"mqbench.schema": TRACE_SCHEMA.encode()}).set(0, pa.field("send_offset_us", pa.string()))
    pq.write_table(_table([_row("0")], schema=schema), wrong_type)
    with pytest.raises(CorruptDataError, match="column 'send_offset_us' is string, expected int64"):
        read_trace_info(wrong_type)
    bad_info = tmp_path / "badinfo.parquet"
    pq.write_table(_table([_row(0)], {b"mqbench.trace": b"{nope"}), bad_info)
    with pytest.raises(CorruptDataError, match="metadata is not JSON"):
        read_trace_info(bad_info)
    with pytest.raises(UserError, match="does not exist"):
        read_trace_info(tmp_path / "absent.parquet")
    with pytest.raises(UserError, match="is a directory"):
        list(iter_trace_rows(tmp_path))


_GOOD: list[bytes] = []


def _good_trace_bytes(tmp_path):
    if not _GOOD:
        path = tmp_path / "good.parquet"
        write_trace(path, generate_messages(load_profile("notifications"), 1, count=50))
        _GOOD.append(path.read_bytes())
    return _GOOD[0]


def test_truncated_or_trailing_bytes_are_corrupt(tmp_path):
    data = _good_trace_bytes(tmp_path)
    for name, damaged in (("truncated", data[:-7]), ("trailing", data + b"\x00junk"), ("half", data[: len(data) // 2])):
        path = tmp_path / f"{name}.parquet"
        path.write_bytes(damaged)
        with pytest.raises(CorruptDataError, match=f"{name}.parquet"):
            list(iter_trace_rows(path))


@given(st.binary(max_size=400), st.integers(0, 10_000), st.integers(0, 255))
def test_fuzzed_files_are_user_errors(tmp_path_factory, junk, position, byte):
    tmp_path = tmp_path_factory.mktemp("fuzz")
    data = bytearray(_good_trace_bytes(tmp_path))
    data[position % len(data)] = byte
    for content in (bytes(data), junk, b"PAR1" + junk + b"PAR1"):
        path = tmp_path / "f.parquet"
        path.write_bytes(content)
        try:
            for message in iter_trace_rows(path):
                assert isinstance(message.body, bytes)
        except UserError:
            pass
