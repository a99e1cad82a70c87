"""A pull from a store a real RocketMQ 4.9.8 broker wrote hands out its records byte for byte.

Decoding a 4.9.8 record and encoding it again changes it (4.9.8 ends its property string without
``\\x02``, spec 3.5): the pull body must be the stored bytes, as RocketMQ's broker sends them."""
import os

from real_store_data import PLAIN, extract, manifest
from mqbench.broker.formats.record import encode_message
from mqbench.broker.store.store import Store
from mqbench.client.messages import decode_pulled


def test_every_queue_of_the_real_store_pulls_its_stored_bytes(tmp_path):
    root = extract(PLAIN, str(tmp_path))
    segment = os.path.getsize(os.path.join(root, "commitlog", "0" * 20))
    store = Store.open(root, commitlog_segment_bytes=segment, cq_segment_bytes=6000, background_flush=False)
    try:
        pulled = changed = 0
        for (topic, queue_id), q in store.queues.all():
            stored = b"".join(store.log.read(p, s) for _, p, s, _ in q.read_units(q.min_offset, 1 << 20))
            offset, body = q.min_offset, b""
            while offset < q.max_offset:             # pulls of 32, as a consumer makes them
                got = store.read_queue_records(topic, queue_id, offset, 32)
                assert got.count and got.next_offset > offset
                body += got.body
                offset = got.next_offset
            assert body == stored, (topic, queue_id)
            msgs = decode_pulled(body, "real")
            assert [m.queue_offset for m in msgs] == list(range(q.min_offset, q.max_offset))
            reencoded = b"".join(encode_message(m) for m in store.read_queue(topic, queue_id, 0, 1 << 20,
                                                                            1 << 40).messages)
            changed += reencoded != stored
            pulled += len(msgs)
    finally:
        store.close()
    assert pulled == manifest()["stores"][PLAIN]["storedRecordsTotal"]
    assert changed                                  # what the old decode-and-encode pull did to them
