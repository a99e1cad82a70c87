/* mqbench.broker.formats._sendpath: the per-message steps of the broker's send path in C.
 *
 * Each function is the fast half of a Python function that stays the reference (and the
 * fallback, MQBENCH_NATIVE=0):
 *
 *   decode_frames(buffer, pos, frame_bytes_max, out, cmd_type) -> new pos
 *       frame.FrameDecoder.feed's loop: appends to ``out`` the RemotingCommand of every whole
 *       frame from ``pos`` on whose header is JSON in the usual shape (command._decode_json_header's
 *       fast path: 32-bit integers, a language name, no remark, string ext fields), and stops at
 *       the first frame it does not take: a partial one, a malformed one, a binary header, a JSON
 *       header of any other shape. The Python loop decodes (or refuses) that frame, so every
 *       error and every unusual header keeps the Python code's answer. Never raises for input.
 *   decode_frames(buffer, pos, frame_bytes_max, out, cmd_type, pending, taken) -> new pos
 *       the same, and frame.take_answer's rule for each of those frames that is a response:
 *       its receiver in ``pending`` (opaque -> receiver) goes to ``taken`` instead of its command
 *       to ``out`` when its type's QUICK_CODES hold the code (a read's quick answers, handed over
 *       together without a command built; the header is checked all the same).
 *   send_header_v2(ext, cls, default_topic[, names]) -> SendMessageHeader or None
 *       headers.send_header_v2 (or SendMessageHeader.from_ext with ``names``, the 14 long wire
 *       names in field order) for ext fields of plain strings whose numbers are plain decimals;
 *       None: the Python function decides (errors included).
 *   send_success_frame(opaque, version, msg_id, queue_id, queue_offset, transaction_id) -> bytes or None
 *       command.send_success_frame when the ids need no JSON escaping; None otherwise.
 *   encode_fields(topic, queue_id, flag, sysflag, born_ts, born_host, store_ts, store_host,
 *                 reconsume_times, body, properties, version, hosts) -> bytes or None
 *       record.encode_fields when both hosts are in ``hosts`` (record._HOSTS: host -> (packed, v6))
 *       and every field is in range; None: the Python function decides (errors included).
 *   put_results(bodies, first, prefix, cls) -> [PutResult] or None
 *       server.proposals.Proposals._results' loop over stored single-send records.
 *   decode_properties(text) -> dict or None
 *       record.decode_properties of a str (its rules, every string); None for bytes.
 *   decode_fields_run(buf, pos, end, check_crc, hosts, cls) -> (fields, pos)
 *       record_fields.decode_fields_run: the RecordFields (``cls``) of the records from ``pos`` on that
 *       decode_fields' fast path takes (two IPv4 hosts already in ``hosts``, record_fields._IPV4_HOSTS;
 *       layout, CRC and UTF-8 checked), and the position after them; stops at the first record it
 *       does not take, which decode_fields decodes (or refuses). Never raises for input.
 *   send_frame(head, wire, values, opaque, born_ms, body) -> bytes or None
 *       client.pipeline.SendFrameTemplate.frame_filled: a load generator's send request frame with
 *       its property template filled, in one step (_sendpath_send.c has the contract).
 *
 * One extension built from several sources, one job each (mqbench/native.py's MODULES lists them,
 * so the stale-build check covers every one and the headers beside them):
 *
 *   _sendpath.c         this file: the interned names and constants, the method table, PyInit;
 *   _sendpath.h         what the sources share (those names, as_ll, the entry points);
 *   _sendpath_frames.c  decode_frames and the JSON subset reader of the usual header;
 *   _sendpath_header.c  send_header_v2;
 *   _sendpath_answer.c  send_success_frame and put_results (what a stored send answers);
 *   _sendpath_record.c  encode_fields (with the body CRC), decode_properties and decode_fields_run;
 *   _sendpath_send.c    send_frame (the client's side: a send request's frame).
 *
 * Input is untrusted (a peer's frame): every read is bounds-checked against the buffer. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "mq_bytes.h"
#include <stdint.h>
#include <string.h>

#include "_sendpath.h"

PyObject *EMPTY_TUPLE;
PyObject *S_CODE, *S_OPAQUE, *S_FLAG, *S_LANGUAGE, *S_VERSION, *S_REMARK, *S_EXT_FIELDS, *S_BODY, *S_SERIALIZE_TYPE;
PyObject *S_PRODUCER_GROUP, *S_TOPIC, *S_DEFAULT_TOPIC, *S_DEFAULT_TOPIC_QUEUE_NUMS, *S_QUEUE_ID, *S_SYS_FLAG,
    *S_BORN_TIMESTAMP_MS, *S_PROPERTIES, *S_RECONSUME_TIMES, *S_UNIT_MODE, *S_MAX_RECONSUME_TIMES, *S_BATCH,
    *S_BROKER_NAME;
PyObject *S_MSG_ID, *S_PHYSICAL_OFFSET, *S_QUEUE_OFFSET, *S_COUNT, *S_MSG_IDS, *S_INDEX;
PyObject *S_QUICK_CODES;
PyObject *K_V2[14]; /* "a".."n" */
PyObject *ZERO, *ONE, *FOUR, *LANG_OTHER;

static PyMethodDef METHODS[] = {
    {"decode_frames", decode_frames, METH_VARARGS, "FrameDecoder.feed's loop over whole usual frames"},
    {"send_header_v2", send_header_v2, METH_VARARGS, "headers.send_header_v2, or None"},
    {"send_success_frame", send_success_frame, METH_VARARGS, "command.send_success_frame, or None"},
    {"encode_fields", encode_fields, METH_VARARGS, "record.encode_fields, or None"},
    {"decode_properties", decode_properties, METH_O, "record.decode_properties of a str, or None"},
    {"put_results", put_results, METH_VARARGS, "Proposals._results' loop, or None"},
    {"decode_fields_run", decode_fields_run, METH_VARARGS, "record_fields.decode_fields_run's loop"},
    {"send_frame", (PyCFunction)(void (*)(void))send_frame, METH_FASTCALL, "SendFrameTemplate.frame_filled, or None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef MODULE = {PyModuleDef_HEAD_INIT, "_sendpath", NULL, -1, METHODS};

#define INTERN(var, text)                                                                                      \
    if ((var = PyUnicode_InternFromString(text)) == NULL)                                                      \
        return NULL;

PyMODINIT_FUNC PyInit__sendpath(void) {
    sendpath_record_init();
    if ((EMPTY_TUPLE = PyTuple_New(0)) == NULL)
        return NULL;
    INTERN(S_CODE, "code");
    INTERN(S_OPAQUE, "opaque");
    INTERN(S_FLAG, "flag");
    INTERN(S_LANGUAGE, "language");
    INTERN(S_VERSION, "version");
    INTERN(S_REMARK, "remark");
    INTERN(S_EXT_FIELDS, "ext_fields");
    INTERN(S_BODY, "body");
    INTERN(S_SERIALIZE_TYPE, "serialize_type");
    INTERN(S_PRODUCER_GROUP, "producer_group");
    INTERN(S_TOPIC, "topic");
    INTERN(S_DEFAULT_TOPIC, "default_topic");
    INTERN(S_DEFAULT_TOPIC_QUEUE_NUMS, "default_topic_queue_nums");
    INTERN(S_QUEUE_ID, "queue_id");
    INTERN(S_SYS_FLAG, "sys_flag");
    INTERN(S_BORN_TIMESTAMP_MS, "born_timestamp_ms");
    INTERN(S_PROPERTIES, "properties");
    INTERN(S_RECONSUME_TIMES, "reconsume_times");
    INTERN(S_UNIT_MODE, "unit_mode");
    INTERN(S_MAX_RECONSUME_TIMES, "max_reconsume_times");
    INTERN(S_BATCH, "batch");
    INTERN(S_BROKER_NAME, "broker_name");
    INTERN(LANG_OTHER, "OTHER");
    INTERN(S_MSG_ID, "msg_id");
    INTERN(S_PHYSICAL_OFFSET, "physical_offset");
    INTERN(S_QUEUE_OFFSET, "queue_offset");
    INTERN(S_COUNT, "count");
    INTERN(S_MSG_IDS, "msg_ids");
    INTERN(S_INDEX, "index");
    INTERN(S_QUICK_CODES, "QUICK_CODES");
    for (int i = 0; i < 14; i++) {
        char name[2] = {(char)('a' + i), 0};
        INTERN(K_V2[i], name);
    }
    if ((ZERO = PyLong_FromLong(0)) == NULL || (FOUR = PyLong_FromLong(4)) == NULL || (ONE = PyLong_FromLong(1)) == NULL)
        return NULL;
    return PyModule_Create(&MODULE);
}
