"""Request codes, response codes, language codes and flag bits of the RocketMQ remoting protocol.

Values are RocketMQ's (``RequestCode.java``, ``ResponseCode.java``, ``RemotingSysResponseCode.java``,
``LanguageCode.java``, ``PermName.java``, ``PullSysFlag.java``). Only names are defined here; what
each request carries is in ``headers``.

What the broker must serve for the two official-ish clients mqbench tests with
(read from rocketmq-client-cpp ``src/MQClientAPIImpl.cpp`` and ali-ons 3.12 ``lib/mq_client_api.js``):

==============================  =======================  =====================================
request (code)                  C++ client (PyPI 0.4.4)  ali-ons 3.x
==============================  =======================  =====================================
GET_ROUTEINFO_BY_TOPIC (105)    name server              name server (JSON parsed leniently)
SEND_MESSAGE (10)               yes: long-name header    no
SEND_MESSAGE_V2 (310)           no                       yes: short names a..l (no m, n)
SEND_BATCH_MESSAGE (320)        only for batch sends     no
HEART_BEAT (34)                 every 30 s, all brokers  every 30 s
UNREGISTER_CLIENT (35)          on shutdown              on close
GET_CONSUMER_LIST_BY_GROUP (38) rebalance                rebalance
QUERY_CONSUMER_OFFSET (14)      yes (22 = not found)     yes (any non-zero code is an error)
UPDATE_CONSUMER_OFFSET (15)     one-way                  one-way
GET_MAX_OFFSET (30)             yes                      yes
GET_MIN_OFFSET (31)             yes                      no
SEARCH_OFFSET_BY_TIMESTAMP (29) CONSUME_FROM_TIMESTAMP   CONSUME_FROM_TIMESTAMP
PULL_MESSAGE (11)               long poll                long poll
CONSUMER_SEND_MSG_BACK (36)     failed consumption       failed consumption
END_TRANSACTION (37)            transactional producer   no
GET_EARLIEST_MSG_STORETIME (32) admin only               no
VIEW_MESSAGE_BY_ID (33)         admin only               no
UPDATE_AND_CREATE_TOPIC (17)    createTopic (admin)      createTopic (admin)
==============================  =======================  =====================================

Both clients send JSON headers (serialize type 0) and read only JSON responses, with every
``extFields`` value a string (the C++ client reads them as strings; ali-ons sends numbers and
booleans as JSON numbers/booleans, so a server must accept non-string values). Broker-to-client
requests the C++ client answers: NOTIFY_CONSUMER_IDS_CHANGED (40, one-way, triggers a rebalance),
CHECK_TRANSACTION_STATE (39), RESET_CONSUMER_CLIENT_OFFSET (220), GET_CONSUMER_STATUS_FROM_CLIENT
(221), GET_CONSUMER_RUNNING_INFO (307), CONSUME_MESSAGE_DIRECTLY (309); ali-ons answers none of them,
so NOTIFY_CONSUMER_IDS_CHANGED must stay one-way (never awaited).

Observed by running both clients against mqbench's name server and the scripted test broker
(``tests/client/test_real_client_wire.py``):

* Both look up the route of ``%RETRY%<consumer group>`` and log an error while it has none: the
  broker should create and register that retry topic when a consumer group first heartbeats.
* The C++ push consumer starts from CONSUME_FROM_LAST_OFFSET and cannot be told otherwise through
  the 0.4.4 Python binding. A real broker answers QUERY_CONSUMER_OFFSET for a group it has never
  seen with offset 0 (not QUERY_NOT_FOUND) while the queue's min offset is 0 and its first message
  is still in memory (``ConsumerManageProcessor``); that is what lets such a consumer see messages
  produced before it started. Our broker should do the same for queues whose min offset is 0.
* ali-ons treats QUERY_NOT_FOUND as an error in its log but then falls back to its
  consumeFromWhere (GET_MAX_OFFSET, or 0 for CONSUME_FROM_FIRST_OFFSET).
"""
from __future__ import annotations

# --- request codes -----------------------------------------------------------------------------
SEND_MESSAGE = 10
PULL_MESSAGE = 11
QUERY_MESSAGE = 12
QUERY_BROKER_OFFSET = 13
QUERY_CONSUMER_OFFSET = 14
UPDATE_CONSUMER_OFFSET = 15
UPDATE_AND_CREATE_TOPIC = 17
GET_ALL_TOPIC_CONFIG = 21
GET_TOPIC_CONFIG_LIST = 22
GET_TOPIC_NAME_LIST = 23
UPDATE_BROKER_CONFIG = 25
GET_BROKER_CONFIG = 26
GET_BROKER_RUNTIME_INFO = 28
SEARCH_OFFSET_BY_TIMESTAMP = 29
GET_MAX_OFFSET = 30
GET_MIN_OFFSET = 31
GET_EARLIEST_MSG_STORETIME = 32
VIEW_MESSAGE_BY_ID = 33
HEART_BEAT = 34
UNREGISTER_CLIENT = 35
CONSUMER_SEND_MSG_BACK = 36
END_TRANSACTION = 37
GET_CONSUMER_LIST_BY_GROUP = 38
CHECK_TRANSACTION_STATE = 39
NOTIFY_CONSUMER_IDS_CHANGED = 40
LOCK_BATCH_MQ = 41
UNLOCK_BATCH_MQ = 42
GET_ALL_CONSUMER_OFFSET = 43
GET_ALL_DELAY_OFFSET = 45
PUT_KV_CONFIG = 100
GET_KV_CONFIG = 101
DELETE_KV_CONFIG = 102
REGISTER_BROKER = 103
UNREGISTER_BROKER = 104
GET_ROUTEINFO_BY_TOPIC = 105
GET_BROKER_CLUSTER_INFO = 106
UPDATE_AND_CREATE_SUBSCRIPTIONGROUP = 200
GET_ALL_SUBSCRIPTIONGROUP_CONFIG = 201
GET_TOPIC_STATS_INFO = 202
GET_CONSUMER_CONNECTION_LIST = 203
GET_PRODUCER_CONNECTION_LIST = 204
GET_ALL_TOPIC_LIST_FROM_NAMESERVER = 206
GET_CONSUME_STATS = 208
GET_KV_CONFIG_BY_VALUE = 217  # what ali-ons calls it; RocketMQ 5 reuses 217 as REGISTER_TOPIC_IN_NAMESRV
GET_KVLIST_BY_NAMESPACE = 219
RESET_CONSUMER_CLIENT_OFFSET = 220
GET_CONSUMER_STATUS_FROM_CLIENT = 221
GET_TOPICS_BY_CLUSTER = 224
QUERY_TOPIC_CONSUME_BY_WHO = 300
GET_CONSUMER_RUNNING_INFO = 307
CONSUME_MESSAGE_DIRECTLY = 309
SEND_MESSAGE_V2 = 310
VIEW_BROKER_STATS_DATA = 315
GET_BROKER_CONSUME_STATS = 317
SEND_BATCH_MESSAGE = 320
QUERY_DATA_VERSION = 322
SEND_REPLY_MESSAGE = 324
SEND_REPLY_MESSAGE_V2 = 325
PUSH_REPLY_MESSAGE_TO_CLIENT = 326
GET_TOPIC_CONFIG = 351
LITE_PULL_MESSAGE = 361
QUERY_ASSIGNMENT = 400
SET_MESSAGE_REQUEST_MODE = 401
# POP (RocketMQ 5): above 65535, so JSON headers only (a ROCKETMQ binary header's int16 code would
# carry them as 3442-3447 truncated: not requests of their own)
POP_MESSAGE = 200050
ACK_MESSAGE = 200051
PEEK_MESSAGE = 200052
CHANGE_MESSAGE_INVISIBLETIME = 200053
NOTIFICATION = 200054
BATCH_ACK_MESSAGE = 200151

REQUEST_NAMES: dict[int, str] = {
    value: name for name, value in list(globals().items())
    if name.isupper() and isinstance(value, int) and not name.startswith("_")
}

# --- response codes ----------------------------------------------------------------------------
SUCCESS = 0
SYSTEM_ERROR = 1
SYSTEM_BUSY = 2
REQUEST_CODE_NOT_SUPPORTED = 3
TRANSACTION_FAILED = 4
FLUSH_DISK_TIMEOUT = 10
SLAVE_NOT_AVAILABLE = 11
FLUSH_SLAVE_TIMEOUT = 12
MESSAGE_ILLEGAL = 13
SERVICE_NOT_AVAILABLE = 14
VERSION_NOT_SUPPORTED = 15
NO_PERMISSION = 16
TOPIC_NOT_EXIST = 17
TOPIC_EXIST_ALREADY = 18
PULL_NOT_FOUND = 19
PULL_RETRY_IMMEDIATELY = 20
PULL_OFFSET_MOVED = 21
QUERY_NOT_FOUND = 22
SUBSCRIPTION_PARSE_FAILED = 23
SUBSCRIPTION_NOT_EXIST = 24
SUBSCRIPTION_NOT_LATEST = 25
SUBSCRIPTION_GROUP_NOT_EXIST = 26
FILTER_DATA_NOT_EXIST = 27
FILTER_DATA_NOT_LATEST = 28
INVALID_PARAMETER = 29  # RocketMQ 5
CONSUMER_NOT_ONLINE = 206
CONSUME_MSG_TIMEOUT = 207
NO_MESSAGE = 208
POLLING_FULL = 209
POLLING_TIMEOUT = 210

RESPONSE_NAMES: dict[int, str] = {
    0: "SUCCESS", 1: "SYSTEM_ERROR", 2: "SYSTEM_BUSY", 3: "REQUEST_CODE_NOT_SUPPORTED", 4: "TRANSACTION_FAILED",
    10: "FLUSH_DISK_TIMEOUT", 11: "SLAVE_NOT_AVAILABLE", 12: "FLUSH_SLAVE_TIMEOUT", 13: "MESSAGE_ILLEGAL",
    14: "SERVICE_NOT_AVAILABLE", 15: "VERSION_NOT_SUPPORTED", 16: "NO_PERMISSION", 17: "TOPIC_NOT_EXIST",
    18: "TOPIC_EXIST_ALREADY", 19: "PULL_NOT_FOUND", 20: "PULL_RETRY_IMMEDIATELY", 21: "PULL_OFFSET_MOVED",
    22: "QUERY_NOT_FOUND", 23: "SUBSCRIPTION_PARSE_FAILED", 24: "SUBSCRIPTION_NOT_EXIST",
    25: "SUBSCRIPTION_NOT_LATEST", 26: "SUBSCRIPTION_GROUP_NOT_EXIST", 27: "FILTER_DATA_NOT_EXIST",
    28: "FILTER_DATA_NOT_LATEST", 29: "INVALID_PARAMETER", 206: "CONSUMER_NOT_ONLINE",
    207: "CONSUME_MSG_TIMEOUT", 208: "NO_MESSAGE", 209: "POLLING_FULL", 210: "POLLING_TIMEOUT",
}


def request_name(code: int) -> str:
    """``"SEND_MESSAGE_V2(310)"``: for log lines and error remarks."""
    return f"{REQUEST_NAMES.get(code, 'UNKNOWN')}({code})"


def response_name(code: int) -> str:
    return f"{RESPONSE_NAMES.get(code, 'UNKNOWN')}({code})"


# --- language codes (LanguageCode.java): the JSON header carries the name, the binary one the code --
LANGUAGE_CODES: dict[str, int] = {
    "JAVA": 0, "CPP": 1, "DOTNET": 2, "PYTHON": 3, "DELPHI": 4, "ERLANG": 5, "RUBY": 6, "OTHER": 7,
    "HTTP": 8, "GO": 9, "PHP": 10, "OMS": 11, "RUST": 12, "NODE_JS": 13,
}
LANGUAGE_NAMES: dict[int, str] = {code: name for name, code in LANGUAGE_CODES.items()}

# --- command flag bits (RemotingCommand.RPC_TYPE / RPC_ONEWAY) -----------------------------------
FLAG_RESPONSE = 0x1
FLAG_ONEWAY = 0x2

# --- header serialization types (SerializeType.java): top byte of the header-length word ----------
SERIALIZE_JSON = 0
SERIALIZE_ROCKETMQ = 1

# --- topic permission bits (PermName.java) --------------------------------------------------------
PERM_PRIORITY = 0x8
PERM_READ = 0x4
PERM_WRITE = 0x2
PERM_INHERIT = 0x1

# --- PULL_MESSAGE sysFlag bits (PullSysFlag.java) --------------------------------------------------
PULL_FLAG_COMMIT_OFFSET = 0x1
PULL_FLAG_SUSPEND = 0x2
PULL_FLAG_SUBSCRIPTION = 0x4
PULL_FLAG_CLASS_FILTER = 0x8

#: The topic a producer names as ``defaultTopic`` so a broker with autoCreateTopicEnable makes new topics.
DEFAULT_TOPIC = "TBW102"
