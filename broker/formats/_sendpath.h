/* What the sources of mqbench.broker.formats._sendpath share (include after <Python.h>): the
 * interned attribute names and constants that _sendpath.c's PyInit makes once, as_ll, and the entry
 * points each source defines for _sendpath.c's method table. Hidden: none of these names leaves
 * the extension. */
#ifndef MQ_SENDPATH_H
#define MQ_SENDPATH_H

#if defined(__GNUC__)
#define SP_HIDDEN __attribute__((visibility("hidden")))
#else
#define SP_HIDDEN
#endif

SP_HIDDEN extern PyObject *EMPTY_TUPLE;
SP_HIDDEN extern PyObject *S_CODE, *S_OPAQUE, *S_FLAG, *S_LANGUAGE, *S_VERSION, *S_REMARK, *S_EXT_FIELDS, *S_BODY,
    *S_SERIALIZE_TYPE;
SP_HIDDEN extern PyObject *S_PRODUCER_GROUP, *S_TOPIC, *S_DEFAULT_TOPIC, *S_DEFAULT_TOPIC_QUEUE_NUMS, *S_QUEUE_ID,
    *S_SYS_FLAG, *S_BORN_TIMESTAMP_MS, *S_PROPERTIES, *S_RECONSUME_TIMES, *S_UNIT_MODE, *S_MAX_RECONSUME_TIMES,
    *S_BATCH, *S_BROKER_NAME;
SP_HIDDEN extern PyObject *S_MSG_ID, *S_PHYSICAL_OFFSET, *S_QUEUE_OFFSET, *S_COUNT, *S_MSG_IDS, *S_INDEX;
SP_HIDDEN extern PyObject *S_QUICK_CODES;
SP_HIDDEN extern PyObject *K_V2[14]; /* "a".."n" */
SP_HIDDEN extern PyObject *ZERO, *ONE, *FOUR, *LANG_OTHER;

/* An exact int that fits a long long: 1 with *out, 0 not taken (any error cleared). */
static inline int as_ll(PyObject *o, long long *out) {
    if (!PyLong_CheckExact(o))
        return 0;
    int overflow;
    *out = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (overflow || (*out == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        return 0;
    }
    return 1;
}

/* The entry points (their contracts: _sendpath.c's comment). */
SP_HIDDEN PyObject *decode_frames(PyObject *self, PyObject *args);       /* _sendpath_frames.c */
SP_HIDDEN PyObject *send_header_v2(PyObject *self, PyObject *args);      /* _sendpath_header.c */
SP_HIDDEN PyObject *send_success_frame(PyObject *self, PyObject *args);  /* _sendpath_answer.c */
SP_HIDDEN PyObject *put_results(PyObject *self, PyObject *args);         /* _sendpath_answer.c */
SP_HIDDEN PyObject *encode_fields(PyObject *self, PyObject *args);       /* _sendpath_record.c */
SP_HIDDEN PyObject *decode_properties(PyObject *self, PyObject *text);   /* _sendpath_record.c */
SP_HIDDEN PyObject *decode_fields_run(PyObject *self, PyObject *args);   /* _sendpath_record.c */
SP_HIDDEN PyObject *send_frame(PyObject *self, PyObject *const *args, Py_ssize_t nargs); /* _sendpath_send.c */

/* _sendpath_record.c's set-up, called once by PyInit: the CRC table it reads (mq_crc32.h's table is
 * static, one per source file, so the file that calls mq_crc32 is the one that fills it). */
SP_HIDDEN void sendpath_record_init(void);

#endif
