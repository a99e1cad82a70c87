/* _sendpath's answer to stored single sends (send_success_frame, put_results; the module's
 * contract: _sendpath.c): the success answer frame, and one PutResult per stored record.
 *
 * put_results reads records the broker stored; it checks each one's length before reading it. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "mq_bytes.h"
#include <stdint.h>
#include <string.h>

#include "_sendpath.h"

/* --- the send answer ------------------------------------------------------------------------ */

/* 1: an ASCII str made of [A-Za-z0-9] only (written bare), 2: ASCII with nothing JSON escapes
 * (written between quotes as it is), 0: anything else. */
static int plain_kind(PyObject *s) {
    if (!PyUnicode_CheckExact(s) || !PyUnicode_IS_ASCII(s))
        return 0;
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    const unsigned char *p = PyUnicode_1BYTE_DATA(s);
    int alnum = n > 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char ch = p[i];
        if (ch < 0x20 || ch == '"' || ch == '\\')
            return 0;
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')))
            alnum = 0;
    }
    return alnum ? 1 : 2;
}

PyObject *send_success_frame(PyObject *self, PyObject *args) {
    PyObject *o_opaque, *o_version, *msg_id, *o_queue_id, *o_queue_offset, *tid;
    if (!PyArg_ParseTuple(args, "OOOOOO", &o_opaque, &o_version, &msg_id, &o_queue_id, &o_queue_offset, &tid))
        return NULL;
    long long opaque, version, queue_id, queue_offset;
    if (!as_ll(o_opaque, &opaque) || !as_ll(o_version, &version) || !as_ll(o_queue_id, &queue_id) ||
        !as_ll(o_queue_offset, &queue_offset))
        Py_RETURN_NONE;
    if (plain_kind(msg_id) != 1)
        Py_RETURN_NONE; /* quoted by the JSON encoder: the Python function */
    if (tid != Py_None && plain_kind(tid) == 0)
        Py_RETURN_NONE;
    Py_ssize_t id_len = PyUnicode_GET_LENGTH(msg_id);
    Py_ssize_t tid_len = tid == Py_None ? 0 : PyUnicode_GET_LENGTH(tid);
    Py_ssize_t cap = 400 + id_len + tid_len; /* the fixed text is under 260 bytes, sprintf's NUL included */
    PyObject *frame = PyBytes_FromStringAndSize(NULL, cap);
    if (frame == NULL)
        return NULL;
    char *buf = PyBytes_AS_STRING(frame);
    char *w = buf + 8;
    w += sprintf(w, "{\"code\":0,\"language\":\"JAVA\",\"version\":%lld,\"opaque\":%lld,\"flag\":1,"
                    "\"extFields\":{\"msgId\":\"", version, opaque);
    memcpy(w, PyUnicode_1BYTE_DATA(msg_id), id_len);
    w += id_len;
    w += sprintf(w, "\",\"queueId\":\"%lld\",\"queueOffset\":\"%lld\"", queue_id, queue_offset);
    if (tid != Py_None) {
        memcpy(w, ",\"transactionId\":\"", 18);
        w += 18;
        memcpy(w, PyUnicode_1BYTE_DATA(tid), tid_len);
        w += tid_len;
        *w++ = '"';
    }
    static const char tail[] = "},\"serializeTypeCurrentRPC\":\"JSON\"}";
    memcpy(w, tail, sizeof(tail) - 1);
    w += sizeof(tail) - 1;
    Py_ssize_t header_len = w - buf - 8;
    mq_put32((unsigned char *)buf, (uint32_t)(4 + header_len));
    mq_put32((unsigned char *)buf + 4, (uint32_t)header_len);
    if (_PyBytes_Resize(&frame, w - buf) < 0)
        return NULL;
    return frame;
}

/* --- the results of a proposal of single sends ---------------------------------------------- */
/* proposals.Proposals._results' loop: one PutResult (``cls``) per stored record of ``bodies``
 * (Raft indexes from ``first``): QUEUEID, QUEUEOFFSET and PHYSICALOFFSET read from the record,
 * msgId = ``prefix`` + PHYSICALOFFSET in 16 upper-case hex digits. None (the Python loop decides)
 * for a record shorter than its fixed head (48 bytes, as peek_fields reads), a negative offset, or a prefix that is not ASCII. */
PyObject *put_results(PyObject *self, PyObject *args) {
    PyObject *bodies, *prefix, *cls;
    Py_ssize_t first;
    if (!PyArg_ParseTuple(args, "O!nUO!", &PyList_Type, &bodies, &first, &prefix, &PyType_Type, &cls))
        return NULL;
    if (!PyUnicode_IS_ASCII(prefix) || PyUnicode_GET_LENGTH(prefix) > 64)
        Py_RETURN_NONE;
    Py_ssize_t n = PyList_GET_SIZE(bodies), prefix_len = PyUnicode_GET_LENGTH(prefix);
    /* every record checked first: a None answer must not follow a half-built list */
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *body = PyList_GET_ITEM(bodies, i);
        if (!PyBytes_CheckExact(body) || PyBytes_GET_SIZE(body) < 48 ||
            (((const unsigned char *)PyBytes_AS_STRING(body))[28] & 0x80))
            Py_RETURN_NONE;
    }
    PyObject *results = PyList_New(n);
    if (results == NULL)
        return NULL;
    char text[64 + 17];
    memcpy(text, PyUnicode_1BYTE_DATA(prefix), prefix_len);
    for (Py_ssize_t i = 0; i < n; i++) {
        const unsigned char *b = (const unsigned char *)PyBytes_AS_STRING(PyList_GET_ITEM(bodies, i));
        int32_t queue_id = mq_i32(b + 12);
        int64_t queue_offset = mq_i64(b + 20);
        uint64_t physical = mq_u64(b + 28);
        snprintf(text + prefix_len, 17, "%016llX", (unsigned long long)physical);
        PyObject *msg_id = PyUnicode_FromStringAndSize(text, prefix_len + 16);
        PyObject *ids = msg_id != NULL ? PyList_New(1) : NULL;
        PyObject *values[4] = {PyLong_FromLong(queue_id), PyLong_FromLongLong(queue_offset),
                               PyLong_FromUnsignedLongLong(physical), PyLong_FromSsize_t(first + i)};
        PyObject *result = NULL;
        if (ids != NULL && values[0] != NULL && values[1] != NULL && values[2] != NULL && values[3] != NULL) {
            PyList_SET_ITEM(ids, 0, Py_NewRef(msg_id));
            result = PyBaseObject_Type.tp_new((PyTypeObject *)cls, EMPTY_TUPLE, NULL);
            if (result != NULL &&
                (PyObject_SetAttr(result, S_MSG_ID, msg_id) < 0 || PyObject_SetAttr(result, S_QUEUE_ID, values[0]) < 0 ||
                 PyObject_SetAttr(result, S_QUEUE_OFFSET, values[1]) < 0 ||
                 PyObject_SetAttr(result, S_PHYSICAL_OFFSET, values[2]) < 0 ||
                 PyObject_SetAttr(result, S_COUNT, ONE) < 0 || PyObject_SetAttr(result, S_MSG_IDS, ids) < 0 ||
                 PyObject_SetAttr(result, S_INDEX, values[3]) < 0))
                Py_CLEAR(result);
        }
        Py_XDECREF(msg_id);
        Py_XDECREF(ids);
        for (int k = 0; k < 4; k++)
            Py_XDECREF(values[k]);
        if (result == NULL) {
            Py_DECREF(results);
            return NULL;
        }
        PyList_SET_ITEM(results, i, result);
    }
    return results;
}
