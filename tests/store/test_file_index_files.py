"""IndexFiles written and read (``index_files``): the spec's worked example 8, the chain and file
roll rules, and lookups."""
from __future__ import annotations

import os

from mqbench.broker.formats import index_file as fmt
from mqbench.broker.store.index_files import IndexWriter, geometry, index_files, lookup, record_keys
from mqbench.broker.formats.record_layout import SYSFLAG_TX_ROLLBACK


def test_spec_example_8(tmp_path):
    w = IndexWriter(tmp_path / "index")
    w.put_record("TopicTest", {"KEYS": "key1"}, 0, 97, 1_700_000_000_001)
    w.close()
    (path,) = index_files(tmp_path / "index")
    assert os.path.getsize(path) == 420_000_040
    with open(path, "rb") as f:
        data = f.read()
    assert data[3_937_880:3_937_884] == (1).to_bytes(4, "big")
    assert data[20_000_060:20_000_080].hex() == "62b4514c" "0000000000000061" "00000000" "00000000"
    header = fmt.decode_index_header(data)
    assert (header.begin_phy_offset, header.end_phy_offset, header.hash_slot_count, header.index_count) == (97, 97, 1, 2)
    assert header.begin_timestamp_ms == header.end_timestamp_ms == 1_700_000_000_001
    assert lookup(tmp_path / "index", "TopicTest", "key1") == [97]


def test_chains_files_and_keys(tmp_path):
    w = IndexWriter(tmp_path / "index", hash_slot_num=10, index_num=40)
    for i in range(100):
        w.put_record("T", {"UNIQ_KEY": f"U{i}", "KEYS": f"k{i % 7} all"}, 0, 1000 + i, 1_700_000_000_000 + i * 1000)
    w.put_record("T", {"KEYS": "gone"}, SYSFLAG_TX_ROLLBACK, 5000, 1_700_000_200_000)
    w.close()
    files = index_files(tmp_path / "index")
    assert len(files) == 8 and all(geometry(os.path.getsize(p)) == (10, 40) for p in files)   # 39 items a file
    assert sorted(lookup(tmp_path / "index", "T", "k3", max_hits=1000)) == [1000 + i for i in range(100) if i % 7 == 3]
    assert len(lookup(tmp_path / "index", "T", "all", max_hits=1000)) == 100
    assert lookup(tmp_path / "index", "T", "U42") == [1042]
    assert lookup(tmp_path / "index", "T", "gone") == [] and lookup(tmp_path / "index", "Other", "k3") == []
    assert record_keys("T", {"UNIQ_KEY": "u", "KEYS": "a  b"}, 0) == ["T#u", "T#a", "T#b"]
