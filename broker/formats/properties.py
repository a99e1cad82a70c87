"""The names of message properties: one home for every property key RocketMQ or mqbench reads or writes.

A record's properties are ``name\\x01value\\x02`` pairs (spec 3.5; encoded and decoded by
``record.encode_properties`` / ``record.decode_properties``). RocketMQ names its own keys in
``MessageConst``; the constants below carry RocketMQ's meaning in their names (``PROPERTY_DELAY`` is
``PROPERTY_DELAY_TIME_LEVEL``, ``PROPERTY_UNIQ_KEY`` is ``PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX``)
and RocketMQ's spelling in their values, which are the bytes on disk and on the wire and must never
change. ``MQBENCH_*`` keys are mqbench's own, written by the reference broker and the DR replicator
into stored records, so ``inspect`` and ``migrate`` read them too.

Pure: names only, no I/O.
"""
from __future__ import annotations

# --- RocketMQ (MessageConst) -----------------------------------------------------------------
PROPERTY_KEYS = "KEYS"                      # space-separated message keys (index file)
PROPERTY_TAGS = "TAGS"                      # the tag; its hash is the consume queue's tags code
PROPERTY_WAIT = "WAIT"                      # PROPERTY_WAIT_STORE_MSG_OK: producer waits for store
PROPERTY_DELAY = "DELAY"                    # PROPERTY_DELAY_TIME_LEVEL: 1..18 delay level
PROPERTY_RETRY_TOPIC = "RETRY_TOPIC"
PROPERTY_REAL_TOPIC = "REAL_TOPIC"          # the topic a delayed/half message goes back to
PROPERTY_REAL_QID = "REAL_QID"              # PROPERTY_REAL_QUEUE_ID
PROPERTY_TRAN_MSG = "TRAN_MSG"              # PROPERTY_TRANSACTION_PREPARED
PROPERTY_TRAN_PREPARED_QUEUE_OFFSET = "TRAN_PREPARED_QUEUE_OFFSET"
PROPERTY_PGROUP = "PGROUP"                  # PROPERTY_PRODUCER_GROUP
PROPERTY_MIN_OFFSET = "MIN_OFFSET"
PROPERTY_MAX_OFFSET = "MAX_OFFSET"
PROPERTY_BUYER_ID = "BUYER_ID"
PROPERTY_ORIGIN_MESSAGE_ID = "ORIGIN_MESSAGE_ID"
PROPERTY_TRANSFER_FLAG = "TRANSFER_FLAG"
PROPERTY_CORRECTION_FLAG = "CORRECTION_FLAG"
PROPERTY_MQ2_FLAG = "MQ2_FLAG"
PROPERTY_RECONSUME_TIME = "RECONSUME_TIME"
PROPERTY_MSG_REGION = "MSG_REGION"
PROPERTY_TRACE_ON = "TRACE_ON"              # PROPERTY_TRACE_SWITCH
PROPERTY_UNIQ_KEY = "UNIQ_KEY"              # PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX: the client msgId
PROPERTY_MAX_RECONSUME_TIMES = "MAX_RECONSUME_TIMES"
PROPERTY_CONSUME_START_TIME = "CONSUME_START_TIME"
PROPERTY_INNER_NUM = "INNER_NUM"            # messages inside a batch record (v5 batch topics)
PROPERTY_INNER_BASE = "INNER_BASE"          # the batch record's first queue offset
PROPERTY_POP_CK = "POP_CK"
PROPERTY_POP_CK_OFFSET = "POP_CK_OFFSET"
PROPERTY_FIRST_POP_TIME = "1ST_POP_TIME"
PROPERTY_SHARDING_KEY = "__SHARDINGKEY"     # the 5.x FIFO message group
PROPERTY_START_DELIVER_TIME = "__STARTDELIVERTIME"
PROPERTY_CLUSTER = "CLUSTER"
PROPERTY_DUP_INFO = "DUP_INFO"
PROPERTY_CORRELATION_ID = "CORRELATION_ID"
PROPERTY_REPLY_TO_CLIENT = "REPLY_TO_CLIENT"
PROPERTY_TTL = "TTL"
PROPERTY_ARRIVE_TIME = "ARRIVE_TIME"
PROPERTY_PUSH_REPLY_TIME = "PUSH_REPLY_TIME"
PROPERTY_CRC32 = "__CRC32#"                 # 5.2+: CRC32 of the record, always the last property
# The 5.x timer (arbitrary delays).
PROPERTY_TIMER_DELIVER_MS = "TIMER_DELIVER_MS"
PROPERTY_TIMER_DELAY_MS = "TIMER_DELAY_MS"
PROPERTY_TIMER_DELAY_SEC = "TIMER_DELAY_SEC"
PROPERTY_TIMER_OUT_MS = "TIMER_OUT_MS"
PROPERTY_TIMER_ENQUEUE_MS = "TIMER_ENQUEUE_MS"
PROPERTY_TIMER_DEQUEUE_MS = "TIMER_DEQUEUE_MS"
PROPERTY_TIMER_ROLL_TIMES = "TIMER_ROLL_TIMES"
PROPERTY_TIMER_DEL_UNIQKEY = "TIMER_DEL_UNIQKEY"

# --- mqbench's own, stored in records ----------------------------------------------------------
PROPERTY_MQBENCH_DELAY_SOURCE = "MQBENCH_DELAY_SRC"    # where a delayed message was taken from
PROPERTY_MQBENCH_DLQ_REASON = "MQBENCH_DLQ_REASON"     # why a due message went to the dead letters
PROPERTY_MQBENCH_DLQ_DROPPED = "MQBENCH_DLQ_DROPPED"
PROPERTY_MQBENCH_ORIGIN_MSG_ID = "MQBENCH_ORIGIN_MSG_ID"  # DR: the message id in the source room
PROPERTY_MQBENCH_ORIGIN = "MQBENCH_ORIGIN"                # DR: the source cluster
