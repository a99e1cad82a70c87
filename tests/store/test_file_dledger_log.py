"""DLedgerLog (the Raft log's backing store) and the consume-queue files, on their own."""
import pytest

from mqbench.broker.formats import dledger as fmt
from mqbench.broker.store.consume_queue import BatchConsumeQueue, ConsumeQueue
from mqbench.broker.store.dledger_log import DLedgerLog
from mqbench.broker.formats.queues import BcqUnit
from mqbench.broker.store.segments import segment_name
from mqbench.errors import CorruptDataError, InvariantViolation, UserError


def new_log(path, **kw):
    return DLedgerLog(path, data_segment_bytes=kw.pop("data", 512), index_segment_bytes=kw.pop("index", 320), **kw)


def test_append_read_terms_and_file_end_blank(tmp_path):
    log = new_log(tmp_path / "d")
    assert (log.last_index, log.end_pos, log.committed_index) == (-1, 0, -1)
    placed = [log.append(1 + i // 4, bytes([i]) * 100) for i in range(10)]
    # 148-byte entries: three fit in a 512-byte file (444 + 8 spare), the fourth goes to the next
    assert [p for p in placed[:4]] == [(0, 0), (1, 148), (2, 296), (3, 512)]
    data = (tmp_path / "d" / "data" / segment_name(0)).read_bytes()
    assert data[444:452] == fmt.encode_entry_blank(512 - 444)
    for i in range(10):
        header, body = log.entry(i)
        assert (header.index, header.term, body) == (i, 1 + i // 4, bytes([i]) * 100)
        assert log.term_at(i) == 1 + i // 4
    assert log.term_at(-1) == -1 and log.last_term == 3
    with pytest.raises(UserError, match="outside the log"):
        log.entry(10)
    with pytest.raises(InvariantViolation):
        log.append(2, b"older term")
    with pytest.raises(UserError, match="does not fit"):
        log.append(3, b"x" * 500)
    log.close()


def test_commit_point_truncation_and_reopen(tmp_path):
    log = new_log(tmp_path / "d")
    for i in range(8):
        log.append(1, b"e%d" % i)
    log.set_committed(3)
    log.set_committed(2)                  # never backwards
    assert log.committed_index == 3
    log.set_committed(100)                # capped at the last index
    assert log.committed_index == 7
    log.committed_index = 3               # what a Raft follower would have
    with pytest.raises(InvariantViolation, match="committed"):
        log.truncate_after(2)
    log.truncate_after(5)
    assert (log.last_index, log.last_term) == (5, 1)
    assert log.append(2, b"new") == (6, log.entry_span(6)[0])
    log.close()
    log = new_log(tmp_path / "d")
    assert (log.last_index, log.last_term, log.committed_index) == (6, 2, 3)
    assert log.entry(6)[1] == b"new" and log.entry(5)[1] == b"e5"
    log.truncate_after(3)
    log.committed_index = -1
    log.truncate_after(-1)
    assert (log.last_index, log.end_pos) == (-1, 0)
    assert log.append(3, b"again") == (0, 0)
    log.close()


def test_reopen_recovers_a_torn_tail_and_rewrites_the_index(tmp_path):
    log = new_log(tmp_path / "d")
    spans = [log.append(1, b"body-%d" % i) for i in range(6)]
    log.close()
    last_pos = spans[-1][1]
    data_file = tmp_path / "d" / "data" / segment_name(last_pos - last_pos % 512)
    raw = bytearray(data_file.read_bytes())
    raw[last_pos % 512 + 50] ^= 0xFF          # a torn body: bodyCrc no longer matches
    data_file.write_bytes(bytes(raw))
    index_file = tmp_path / "d" / "index" / segment_name(0)
    idx = bytearray(index_file.read_bytes())
    idx[2 * 32:3 * 32] = bytes(32)            # a lost index unit is rebuilt from the data
    index_file.write_bytes(bytes(idx))
    log = new_log(tmp_path / "d")
    assert log.last_index == 4
    assert [log.entry(i)[1] for i in range(5)] == [b"body-%d" % i for i in range(5)]
    assert log.append(1, b"next")[0] == 5
    log.close()


def test_recover_from_a_durable_position(tmp_path):
    log = new_log(tmp_path / "d")
    spans = [log.append(1, b"x" * 60) for _ in range(12)]
    log.close()
    durable = spans[8][1]                     # entry 8 starts where entry 7 ends
    log = new_log(tmp_path / "d", recover_from=durable)
    assert log.last_index == 11
    log.close()
    log = new_log(tmp_path / "d", recover_from=durable + 5)   # not an entry boundary: full scan
    assert log.last_index == 11
    log.close()


def test_index_segment_size_must_be_units(tmp_path):
    with pytest.raises(UserError, match="multiple of 32"):
        new_log(tmp_path / "d", index=100)


def test_consume_queue_fillers_range_reads_and_truncation(tmp_path):
    cq = ConsumeQueue(tmp_path / "cq", 200)              # 10 units per file
    with pytest.raises(UserError, match="multiple of 20"):
        ConsumeQueue(tmp_path / "bad", 210)
    cq.put(13, 1000, 90, 5)                              # first unit at offset 13: fillers 10..12
    cq.put(14, 1090, 91, 6)
    assert (cq.min_offset, cq.max_offset) == (13, 15)
    assert cq.get(12) is None and cq.get(13) == (1000, 90, 5)
    with pytest.raises(InvariantViolation, match="gap"):
        cq.put(16, 1, 1, 1)
    cq.close()
    cq = ConsumeQueue(tmp_path / "cq", 200)
    assert (cq.min_offset, cq.max_offset) == (13, 15)
    assert [u[0] for u in cq.read_units(0, 10)] == [13, 14]
    assert cq.truncate_physical(1090) == 1090            # unit 14 ends past 1090: dropped
    assert cq.max_offset == 14 and cq.truncate_physical(5000) is None
    raw = bytearray((tmp_path / "cq" / segment_name(200)).read_bytes())
    assert raw[0:20] == bytes.fromhex("0000000000000000" "7fffffff" "0000000000000000")
    raw[60:80] = bytes(20)                               # a unit inside the queue lost
    (tmp_path / "cq" / segment_name(200)).write_bytes(bytes(raw))
    with pytest.raises(CorruptDataError, match="not valid inside the queue"):
        cq.read_units(13, 5)


def test_batch_consume_queue_lookup_by_base_offset(tmp_path):
    bcq = BatchConsumeQueue(tmp_path / "bcq", 46 * 4)
    with pytest.raises(UserError, match="multiple of 46"):
        BatchConsumeQueue(tmp_path / "bad", 100)
    for base, n, phys in [(0, 3, 0), (3, 1, 100), (4, 5, 200), (9, 2, 300), (11, 1, 400)]:
        bcq.put(BcqUnit(phys, 90, 0, 7, base, n))
    bcq.put(BcqUnit(200, 90, 0, 7, 4, 5))                # re-dispatch of a covered base: skipped
    assert (bcq.min_offset, bcq.max_offset, bcq.count) == (0, 12, 5)
    assert [bcq.find(q) for q in (0, 2, 3, 4, 8, 9, 11, 12)] == [0, 0, 1, 2, 2, 3, 4, None]
    assert [u.base_offset for u in bcq.read_units(6, 2)] == [4, 9]
    with pytest.raises(InvariantViolation, match="gap"):
        bcq.put(BcqUnit(500, 90, 0, 7, 20, 1))
    bcq.close()
    bcq = BatchConsumeQueue(tmp_path / "bcq", 46 * 4)   # units span two files
    assert (bcq.count, bcq.max_offset) == (5, 12)
    assert bcq.truncate_physical(390) == 390             # the unit at 400 is past the end
    bcq.truncate(4)
    assert (bcq.count, bcq.max_offset) == (2, 4)


def test_a_record_appended_as_a_plain_body_gets_its_own_physical_offset(tmp_path):
    from mqbench.broker.formats.record import Message, encode_message
    record = encode_message(Message(topic="T", body=b"hello", physical_offset=999_999))  # a leader's value
    log = new_log(tmp_path / "d")
    log.append(1, b"not a record")
    index, pos = log.append(1, record)
    body = log.entry(index)[1]
    assert int.from_bytes(body[28:36], "big") == pos + 48
    log.close()
    log = new_log(tmp_path / "d")            # and recovery accepts it
    assert log.last_index == 1
    log.close()


def test_entry_end_from_memory_matches_the_index_file_without_reading_it(tmp_path, monkeypatch):
    """``entry_end`` (the commit's dispatch limit, once per Raft round on every replica) answers
    from the latest appended runs without a read of the index file, and agrees with it: across a
    segment's end blank, after a truncation, for runs older than the memo, and after a reopen."""
    from mqbench.broker.formats.record import Message, encode_message

    log = new_log(tmp_path / "d")
    records = [encode_message(Message(topic="T", body=b"r%d" % i, queue_id=0)) for i in range(6)]
    log.append(1, b"a" * 100)
    log.append_records(1, records[:3], [0, 1, 2])
    log.append_records(1, records[3:], [3, 4, 5])
    log.append(1, b"b" * 200)      # past the first data segment's end: a blank before it

    def from_index(i):
        pos, size = log.entry_span(i)
        return pos + size

    expected = [from_index(i) for i in range(log.last_index + 1)]
    reads = []
    real_unit = log._unit
    monkeypatch.setattr(log, "_unit", lambda i: reads.append(i) or real_unit(i))
    assert [log.entry_end(i) for i in range(log.last_index + 1)] == expected
    assert reads == []
    log.truncate_after(4)          # the memo is dropped with the entries it described
    assert log.entry_end(4) == expected[4] and reads == [4, 4]
    log.append(2, b"c")
    assert log.entry_end(5) == log.end_pos == from_index(5)
    reads.clear()
    for n in range(dledger_log_runs() + 2):
        log.append(2, b"d%d" % n)
    assert log.entry_end(6) == from_index(6) and reads == [6, 6]   # older than the memo: read
    assert log.entry_end(log.last_index) == log.end_pos
    log.close()
    log = new_log(tmp_path / "d")
    assert log.entry_end(log.last_index) == log.end_pos
    log.close()


def dledger_log_runs():
    from mqbench.broker.store.dledger_log import RECENT_RUNS
    return RECENT_RUNS
