/* mqbench.broker.formats._record_check: broker/formats/record_check.py's place_fields in C.
 *
 * A follower checks and indexes every record entry the leader sends it with place_fields (sizes,
 * magic, BODYCRC, UTF-8 topic and properties, the TAGS hash) before it writes it. The Python
 * function is the reference and its docstring the contract: this returns the same tuple, or None,
 * for every input (the bytes are a peer's: every read is bounds-checked). The rare cases the
 * Python code hands to decode_properties (the schedule topic, a property string holding TAGS more
 * than once, non-ASCII tags) are passed to the Python function itself (set_fallback), so they stay
 * one implementation. tests/formats compare the two. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "mq_bytes.h"
#include <stdint.h>
#include <string.h>

#include "mq_crc32.h"

#define MAGIC_V1 ((int32_t)0xDAA320A7)
#define MAGIC_V2 ((int32_t)0xDAA320AB)
#define BORNHOST_V6 0x10
#define STOREHOST_V6 0x20
#define V4_FIXED 88 /* the fixed fields of a record with IPv4 hosts; the body follows */

static PyObject *fallback; /* record_check.place_fields (Python) */
static const char SCHEDULE_TOPIC[] = "SCHEDULE_TOPIC_XXXX";
static PyObject *last_topic; /* the str of the last topic seen (records of one topic repeat) */

static const unsigned char *find(const unsigned char *hay, Py_ssize_t n, const char *needle, Py_ssize_t m) {
    if (m > n)
        return NULL;
    for (Py_ssize_t i = 0; i + m <= n; i++) {
        const unsigned char *hit = memchr(hay + i, needle[0], (size_t)(n - m - i + 1));
        if (hit == NULL)
            return NULL;
        if (memcmp(hit, needle, (size_t)m) == 0)
            return hit;
        i = hit - hay;
    }
    return NULL;
}

static int is_ascii(const unsigned char *p, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++)
        if (p[i] & 0x80)
            return 0;
    return 1;
}

static PyObject *call_fallback(PyObject *buf) {
    if (fallback == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_record_check.set_fallback was not called");
        return NULL;
    }
    return PyObject_CallOneArg(fallback, buf);
}

static PyObject *place_fields(PyObject *self, PyObject *buf) {
    (void)self;
    if (!PyBytes_Check(buf)) {
        if (PyObject_Size(buf) < 0) /* len(buf) raises first in Python */
            return NULL;
        Py_RETURN_NONE;
    }
    const unsigned char *b = (const unsigned char *)PyBytes_AS_STRING(buf);
    Py_ssize_t size = PyBytes_GET_SIZE(buf);
    if (size < V4_FIXED)
        Py_RETURN_NONE;
    int32_t sysflag = mq_i32(b + 36);
    Py_ssize_t born = (sysflag & BORNHOST_V6) ? 20 : 8, store = (sysflag & STOREHOST_V6) ? 20 : 8;
    Py_ssize_t store_ts_at = 48 + born, body_len_at = store_ts_at + 8 + store + 12, body_at = body_len_at + 4;
    if (size < body_at)
        Py_RETURN_NONE;
    int32_t total = mq_i32(b), magic = mq_i32(b + 4), crc = mq_i32(b + 8), queue_id = mq_i32(b + 12);
    int64_t queue_offset = mq_i64(b + 20), store_ts = mq_i64(b + store_ts_at);
    int32_t body_len = mq_i32(b + body_len_at);
    if (total != size || body_len < 0)
        Py_RETURN_NONE;
    Py_ssize_t body_end = body_at + body_len, topic_at, topic_len;
    if (magic == MAGIC_V1) {
        if (body_end + 1 > size)
            Py_RETURN_NONE;
        topic_len = b[body_end];
        if (topic_len > 127)
            Py_RETURN_NONE;
        topic_at = body_end + 1;
    } else if (magic == MAGIC_V2) {
        if (body_end + 2 > size)
            Py_RETURN_NONE;
        topic_len = mq_i16(b + body_end);
        topic_at = body_end + 2;
    } else {
        Py_RETURN_NONE;
    }
    Py_ssize_t props_at = topic_at + topic_len + 2;
    if (topic_len <= 0 || props_at > size || props_at + mq_i16(b + props_at - 2) != size)
        Py_RETURN_NONE;
    if ((int64_t)mq_body_crc(b + body_at, (size_t)body_len) != (int64_t)crc)
        Py_RETURN_NONE;
    const unsigned char *props = b + props_at;
    Py_ssize_t props_len = size - props_at;
    PyObject *topic;
    if (last_topic != NULL && PyUnicode_IS_ASCII(last_topic) && PyUnicode_GET_LENGTH(last_topic) == topic_len &&
        memcmp(PyUnicode_DATA(last_topic), b + topic_at, (size_t)topic_len) == 0) {
        topic = last_topic;
        Py_INCREF(topic);
    } else {
        topic = PyUnicode_DecodeUTF8((const char *)b + topic_at, topic_len, "strict");
        if (topic == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError))
                return NULL;
            PyErr_Clear();
            Py_RETURN_NONE;
        }
        Py_XSETREF(last_topic, topic);
        Py_INCREF(topic);
    }
    if (!is_ascii(props, props_len)) {
        PyObject *text = PyUnicode_DecodeUTF8((const char *)props, props_len, "strict");
        if (text == NULL) {
            Py_DECREF(topic);
            if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError))
                return NULL;
            PyErr_Clear();
            Py_RETURN_NONE;
        }
        Py_DECREF(text);
    }
    if (topic_len == (Py_ssize_t)sizeof(SCHEDULE_TOPIC) - 1 &&
        memcmp(b + topic_at, SCHEDULE_TOPIC, sizeof(SCHEDULE_TOPIC) - 1) == 0) {
        Py_DECREF(topic);
        return call_fallback(buf); /* the delay level's due time is the tags code there */
    }
    int32_t code = 0;
    const unsigned char *at = find(props, props_len, "TAGS\x01", 5);
    if (at != NULL) {
        Py_ssize_t from = at - props;
        if (find(at + 1, props_len - from - 1, "TAGS\x01", 5) != NULL) {
            Py_DECREF(topic);
            return call_fallback(buf); /* TAGS more than once: decode_properties decides */
        }
        if (from == 0 || props[from - 1] == 2) {
            const unsigned char *value = at + 5;
            const unsigned char *stop = memchr(value, 2, (size_t)(props + props_len - value));
            Py_ssize_t n = (stop != NULL ? stop : props + props_len) - value;
            if (n > 0) {
                if (!is_ascii(value, n)) {
                    Py_DECREF(topic);
                    return call_fallback(buf); /* a hash over UTF-16 units */
                }
                uint32_t h = 0;
                for (Py_ssize_t i = 0; i < n; i++)
                    h = 31u * h + value[i];
                code = (int32_t)h;
            }
        }
    }
    return Py_BuildValue("(NiLiiLn)", topic, queue_id, (long long)queue_offset, sysflag, code, (long long)store_ts,
                         size);
}

static PyObject *set_fallback(PyObject *self, PyObject *fn) {
    (void)self;
    Py_INCREF(fn);
    Py_XSETREF(fallback, fn);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"place_fields", place_fields, METH_O, "place_fields(buf): record_check.place_fields in C (same contract)."},
    {"set_fallback", set_fallback, METH_O, "set_fallback(fn): the Python place_fields, for the rare cases."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_record_check", NULL, -1, methods};

PyMODINIT_FUNC PyInit__record_check(void) {
    mq_crc32_init();
    return PyModule_Create(&module);
}
