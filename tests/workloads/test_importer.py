"""Importing exports: formats, column mapping, time parsing, reordering, bad rows by line number."""
import base64
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mqbench.errors import UserError
from mqbench.workloads.importer import BadRow, ImportOptions, import_trace, parse_time_us
from mqbench.workloads.trace import iter_trace_rows, read_trace_info

T0_US = 1_764_000_000_000_000  # 2025-11-24T16:00:00Z


def write_jsonl(path, rows):
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return path


def rows_of(path):
    return list(iter_trace_rows(path))


@pytest.mark.parametrize("value,fmt,expected_us", [
    (1_764_000_000, "auto", T0_US),
    (1_764_000_000.25, "auto", T0_US + 250_000),
    (1_764_000_000_123, "auto", T0_US + 123_000),
    ("1764000000123", "auto", T0_US + 123_000),
    (1_764_000_000_123_456, "auto", T0_US + 123_456),
    (1_764_000_000_123_456_789, "auto", T0_US + 123_457),
    ("2025-11-24T16:00:00Z", "auto", T0_US),
    ("2025-11-24T16:00:00.5+00:00", "iso8601", T0_US + 500_000),
    ("2025-11-25T00:00:00+08:00", "auto", T0_US),
    ("2025-11-24 16:00:00", "auto", T0_US),  # no zone: UTC
    (5, "epoch-ms", 5000),
    (5, "epoch-us", 5),
    ("7", "epoch-s", 7_000_000),
])
def test_times(value, fmt, expected_us):
    assert parse_time_us(value, fmt) == expected_us


@pytest.mark.parametrize("value,fmt", [("yesterday", "auto"), (-1, "auto"), ("12", "iso8601"), (1e302, "epoch-s"),
                                       (10**30, "auto"), ("1" * 25, "epoch-us"),
                                       ("2025-11-24", "epoch-ms"), (True, "auto"), (None, "auto"),
                                       (float("nan"), "auto")])
def test_bad_times(value, fmt):
    with pytest.raises(BadRow):
        parse_time_us(value, fmt)


@given(st.one_of(st.text(max_size=30), st.integers(), st.floats(), st.none(), st.booleans()),
       st.sampled_from(["auto", "epoch-s", "epoch-ms", "epoch-us", "iso8601"]))
def test_any_time_value_parses_or_is_a_bad_row(value, fmt):
    try:
        assert isinstance(parse_time_us(value, fmt), int)
    except BadRow:
        pass


def test_jsonl_with_reordering_system_properties_and_object_bodies(tmp_path):
    src = write_jsonl(tmp_path / "export.jsonl", [
        {"timestamp": "2025-11-24T16:00:00.500Z", "topic": "orders", "body": {"orderId": 1},
         "properties": {"KEYS": "k1", "TAGS": "PAID", "UNIQ_KEY": "AC11", "region": "hz", "DELAY": "3"}},
        {"timestamp": "2025-11-24T16:00:00.100Z", "topic": "orders", "body": "hello", "tags": "A", "key": "k0"},
        "",
        {"timestamp": 1_764_000_001_000, "topic": "orders", "body": "late", "delay_ms": 90_000},
    ])
    result = import_trace(src, tmp_path / "t.parquet")
    assert (result.messages, result.skipped_count, result.duration_us) == (3, 0, 900_000)
    first, second, third = rows_of(tmp_path / "t.parquet")
    assert (first.send_offset_us, first.body, first.key, first.tags) == (0, b"hello", "k0", "A")
    assert second.send_offset_us == 400_000 and second.body == b'{"orderId":1}'
    assert (second.key, second.tags, second.properties) == ("k1", "PAID", {"region": "hz"})
    assert (second.delay_ms, second.delay_level) == (10_000, 3)
    assert (third.delay_ms, third.delay_level) == (90_000, 0)
    info = read_trace_info(tmp_path / "t.parquet")
    assert info.source == "imported" and "export.jsonl" in info.source_detail


def test_bad_rows_stop_with_their_line_number_or_are_skipped(tmp_path):
    src = write_jsonl(tmp_path / "e.jsonl", [
        {"timestamp": 1, "topic": "a", "body": "x"},
        "{not json",
        {"timestamp": 2, "topic": "../x", "body": "x"},
        {"timestamp": 3, "topic": "a"},
        {"timestamp": "soon", "topic": "a", "body": "x"},
        {"timestamp": 4, "topic": "a", "body": "x", "delay_ms": 10**12},
        {"timestamp": 5, "topic": "a", "body": "x", "properties": {"p": "a\x01b"}},
        [1, 2],
        {"timestamp": 6, "topic": "a", "body": "ok"},
    ])
    with pytest.raises(UserError, match=r"e.jsonl line 2: not JSON .*pass --skip-bad"):
        import_trace(src, tmp_path / "t.parquet")
    assert not (tmp_path / "t.parquet").exists() and not list(tmp_path.glob("*.partial"))
    result = import_trace(src, tmp_path / "t.parquet", ImportOptions(skip_bad=True))
    assert result.messages == 2 and result.skipped_count == 7
    reasons = dict(result.skipped)
    assert "not a RocketMQ topic name" in reasons["line 3"]
    assert "no 'body' value" in reasons["line 4"]
    assert "neither an epoch number nor ISO-8601" in reasons["line 5"]
    assert "3 days" in reasons["line 6"]
    assert "separator" in reasons["line 7"]
    assert "not a JSON object" in reasons["line 8"]


def test_text_that_is_not_utf8(tmp_path):
    jsonl = tmp_path / "s.jsonl"
    jsonl.write_text('{"timestamp": 1, "topic": "a", "body": "x", "key": "\\ud800"}\n'
                     '{"timestamp": 1, "topic": "a", "body": "\\udfff"}\n'
                     '{"timestamp": 1, "topic": "a", "body": "x", "properties": {"p": "\\ud800"}}\n'
                     '{"timestamp": 2, "topic": "a", "body": "ok"}\n')
    result = import_trace(jsonl, tmp_path / "t.parquet", ImportOptions(skip_bad=True))
    assert [where for where, _ in result.skipped] == ["line 1", "line 2", "line 3"]
    assert "not valid UTF-8" in result.skipped[0][1] and "surrogate" in result.skipped[1][1]
    csv_path = tmp_path / "s.csv"
    csv_path.write_bytes(b"timestamp,topic,body,tags\n1,a,\xff\xfe body,\n2,a,x,\xff\n")
    result = import_trace(csv_path, tmp_path / "c.parquet", ImportOptions(skip_bad=True))
    assert result.messages == 1 and result.skipped == [("line 3", "tags is not valid UTF-8 text")]
    assert rows_of(tmp_path / "c.parquet")[0].body == b"\xff\xfe body"  # bodies keep their bytes


def test_rows_out_of_order_beyond_the_window(tmp_path):
    src = write_jsonl(tmp_path / "o.jsonl", [{"timestamp": t, "topic": "a", "body": "x"}
                                             for t in (10_000, 25_000, 9_000, 26_000)])
    with pytest.raises(UserError, match=r"line 3: time is .* before a row already written"):
        import_trace(src, tmp_path / "t.parquet", ImportOptions(time_format="epoch-ms", reorder_window_ms=5000))
    import_trace(src, tmp_path / "t.parquet", ImportOptions(time_format="epoch-ms", reorder_window_ms=20_000))
    assert [m.send_offset_us for m in rows_of(tmp_path / "t.parquet")] == [0, 1_000_000, 16_000_000, 17_000_000]


def test_csv_with_renamed_columns_base64_bodies_and_a_default_topic(tmp_path):
    src = tmp_path / "export.csv"
    body = base64.b64encode(b"\x00\xffbinary").decode()
    src.write_text("sent_at,payload,biz_key,props\n"
                   f"2025-11-24T16:00:01Z,{body},k1,\"{{\"\"a\"\": \"\"1\"\"}}\"\n"
                   f"2025-11-24T16:00:00Z,{body},k2,\n"
                   "2025-11-24T16:00:02Z,not base64!,k3,\n"
                   "2025-11-24T16:00:03Z,only,two\n")
    options = ImportOptions(time_column="sent_at", body_column="payload", key_column="biz_key",
                            properties_column="props", topic="clicks", body_encoding="base64", skip_bad=True)
    result = import_trace(src, tmp_path / "t.parquet", options)
    assert dict(result.skipped) == {"line 4": "body is not valid base64", "line 5": "3 fields, the header has 4"}
    rows = rows_of(tmp_path / "t.parquet")
    assert [(m.key, m.topic, m.body, m.properties) for m in rows] == [
        ("k2", "clicks", b"\x00\xffbinary", {}), ("k1", "clicks", b"\x00\xffbinary", {"a": "1"})]


def test_missing_columns_are_named_with_the_columns_there(tmp_path):
    src = tmp_path / "e.csv"
    src.write_text("ts,body\n1,x\n")
    with pytest.raises(UserError, match=r"no column 'timestamp', 'topic' \(or give --topic for every row\); "
                                        r"columns: ts, body"):
        import_trace(src, tmp_path / "t.parquet")
    with pytest.raises(UserError, match="no column 'kk'"):
        import_trace(src, tmp_path / "t.parquet", ImportOptions(time_column="ts", topic="a", key_column="kk"))
    jsonl = write_jsonl(tmp_path / "e.jsonl", [{"time": 1, "body": "x", "topic": "a"}])
    with pytest.raises(UserError, match="no column 'timestamp'"):
        import_trace(jsonl, tmp_path / "t.parquet", ImportOptions(skip_bad=True))


def test_parquet_exports_with_timestamps_and_binary_bodies(tmp_path):
    src = tmp_path / "export.parquet"
    table = pa.table({
        "timestamp": pa.array([T0_US + 2000, T0_US], type=pa.timestamp("us", tz="UTC")),
        "topic": ["iot", "iot"],
        "body": pa.array([b"\x01\x02", b"\x03"], type=pa.binary()),
        "properties": pa.array([[("site", "s1")], []], type=pa.map_(pa.string(), pa.string())),
    })
    pq.write_table(table, src)
    import_trace(src, tmp_path / "t.parquet")
    rows = rows_of(tmp_path / "t.parquet")
    assert [(m.send_offset_us, m.body, m.properties) for m in rows] == [(0, b"\x03", {}),
                                                                        (2000, b"\x01\x02", {"site": "s1"})]


def test_unusable_sources(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        import_trace(tmp_path / "nope.jsonl", tmp_path / "t.parquet")
    odd = tmp_path / "export.xml"
    odd.write_text("<a/>")
    with pytest.raises(UserError, match="cannot tell the format"):
        import_trace(odd, tmp_path / "t.parquet")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(UserError, match="empty CSV"):
        import_trace(empty, tmp_path / "t.parquet")
    fake = tmp_path / "fake.parquet"
    fake.write_bytes(b"PAR1 not really")
    with pytest.raises(UserError, match="not a readable Parquet file"):
        import_trace(fake, tmp_path / "t.parquet")
    blank = tmp_path / "blank.jsonl"
    blank.write_text("\n\n")
    with pytest.raises(UserError, match="no rows imported"):
        import_trace(blank, tmp_path / "t.parquet")


@given(st.lists(st.one_of(st.text(max_size=40),
                          st.fixed_dictionaries({"timestamp": st.one_of(st.integers(-5, 10**15), st.text(max_size=8)),
                                                 "topic": st.text(max_size=6), "body": st.text(max_size=6)},
                                                optional={"properties": st.dictionaries(st.text(max_size=4),
                                                                                        st.text(max_size=4)),
                                                          "delay_ms": st.integers(-5, 10**10),
                                                          "tags": st.text(max_size=4)})),
                max_size=8))
def test_any_jsonl_imports_or_is_a_user_error(tmp_path_factory, rows):
    tmp_path = tmp_path_factory.mktemp("imp")
    src = write_jsonl(tmp_path / "f.jsonl", [r.replace("\n", " ") if isinstance(r, str) else r for r in rows])
    try:
        import_trace(src, tmp_path / "t.parquet", ImportOptions(skip_bad=True))
    except UserError:
        return
    assert all(m.send_offset_us >= 0 for m in rows_of(tmp_path / "t.parquet"))


@given(st.text(alphabet=st.sampled_from('ab,"\n\r1:-T\\{}'), max_size=80))
def test_any_csv_imports_or_is_a_user_error(tmp_path_factory, text):
    tmp_path = tmp_path_factory.mktemp("csv")
    src = tmp_path / "f.csv"
    src.write_text("timestamp,topic,body,properties\n" + text)
    try:
        import_trace(src, tmp_path / "t.parquet", ImportOptions(skip_bad=True))
    except UserError:
        return
    assert all(m.topic for m in rows_of(tmp_path / "t.parquet"))
