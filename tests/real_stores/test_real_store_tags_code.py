"""The tags code a follower files in its consume queue for a record (``place_fields``, in C and in
Python) is what the real RocketMQ 4.9.8 broker wrote in its own consume queue for that record:
the TAGS hash of every message (all of them have tags), and on
``SCHEDULE_TOPIC_XXXX`` the due time of the DELAY level (store time + 10 s for level 3, + 2 h
for level 18, the default levels)."""
from __future__ import annotations

import importlib
import os
import struct

import pytest

from mqbench.broker.formats import record_check as rc
from mqbench.broker.formats.tags import _DEFAULT_LEVELS_MS
from mqbench.broker.formats.topics import SCHEDULE_TOPIC
from mqbench.migrate.source import walk_log

from real_store_data import PLAIN, extract

try:
    _native = importlib.import_module("mqbench.broker.formats._record_check")
    _native.set_fallback(rc.place_fields_py, _DEFAULT_LEVELS_MS)
except ImportError:          # not built: only the Python path exists
    _native = None


@pytest.fixture(scope="module")
def units_and_records(tmp_path_factory):
    """Every consume-queue unit of the real store as (topic, physical offset, size, tags code), and
    the store's records by physical offset."""
    root = extract(PLAIN, str(tmp_path_factory.mktemp("real")))
    records = {item.address: bytes(item.record) for item in walk_log(root) if item.record is not None}
    units = []
    cq_root = os.path.join(root, "consumequeue")
    for topic in os.listdir(cq_root):
        for qid in os.listdir(os.path.join(cq_root, topic)):
            folder = os.path.join(cq_root, topic, qid)
            for name in sorted(os.listdir(folder)):
                with open(os.path.join(folder, name), "rb") as f:
                    data = f.read()
                for at in range(0, len(data) - 19, 20):
                    offset, size, code = struct.unpack_from(">qiq", data, at)
                    if size == 0 and offset == 0:      # the unwritten rest of the file
                        break
                    units.append((topic, offset, size, code))
    return units, records


def test_every_real_unit_has_the_tags_code_place_fields_computes(units_and_records):
    units, records = units_and_records
    seen = {"schedule": 0, "tagged": 0, "untagged": 0}     # every message of this store has tags
    for topic, offset, size, code in units:
        record = records[offset]
        assert len(record) == size
        want = (topic, code, size)
        fields = rc.place_fields_py(record)
        assert (fields[0], fields[4], fields[6]) == want
        if _native is not None:
            assert _native.place_fields(record) == fields
        seen["schedule" if topic == SCHEDULE_TOPIC else "tagged" if code else "untagged"] += 1
    assert seen["schedule"] == 100 and seen["tagged"] >= 3000, seen
