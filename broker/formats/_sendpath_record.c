/* _sendpath's record of a single send (encode_fields, with the body CRC) and its property string
 * (decode_properties); the module's contract: _sendpath.c. None leaves anything outside the usual
 * shape to record.py, which names the problem. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "mq_bytes.h"
#include <stdint.h>
#include <string.h>

#include "mq_crc32.h"
#include "_sendpath.h"

/* --- the record of a single send ------------------------------------------------------------ */

void sendpath_record_init(void) { mq_crc32_init(); }

#define MAGIC_V1 0xDAA320A7u
#define MAGIC_V2 0xDAA320ABu
#define SYSFLAG_BORNHOST_V6 0x10
#define SYSFLAG_STOREHOST_V6 0x20

/* record._HOSTS's (packed address bytes + port, v6) for ``host``, borrowed: 1 found, 0 not, -1 error. */
static int known_host(PyObject *hosts, PyObject *host, const char **bytes, Py_ssize_t *len, int *v6) {
    if (!PyTuple_CheckExact(host))
        return 0;
    PyObject *known = PyDict_GetItemWithError(hosts, host);
    if (known == NULL)
        return PyErr_Occurred() ? -1 : 0;
    if (!PyTuple_CheckExact(known) || PyTuple_GET_SIZE(known) != 2 || !PyBytes_CheckExact(PyTuple_GET_ITEM(known, 0)))
        return 0;
    PyObject *packed = PyTuple_GET_ITEM(known, 0);
    *bytes = PyBytes_AS_STRING(packed);
    *len = PyBytes_GET_SIZE(packed);
    *v6 = PyTuple_GET_ITEM(known, 1) == Py_True;
    return (*len == (*v6 ? 20 : 8)) ? 1 : 0;
}

static int in_range(long long v, long long lo, long long hi) { return v >= lo && v <= hi; }

PyObject *encode_fields(PyObject *self, PyObject *args) {
    PyObject *topic, *o_queue_id, *o_flag, *o_sysflag, *o_born_ts, *born_host, *o_store_ts, *store_host,
        *o_reconsume, *o_version, *hosts;
    Py_buffer body, props;
    if (!PyArg_ParseTuple(args, "OOOOOOOOOy*y*OO!", &topic, &o_queue_id, &o_flag, &o_sysflag, &o_born_ts, &born_host,
                          &o_store_ts, &store_host, &o_reconsume, &body, &props, &o_version, &PyDict_Type, &hosts))
        return NULL;
    PyObject *result = NULL;
    long long queue_id, flag, sysflag, born_ts, store_ts, reconsume, version;
    const char *born, *store;
    Py_ssize_t born_len, store_len, topic_len;
    int born_v6, store_v6, r;
    if (!PyUnicode_CheckExact(topic) || !as_ll(o_queue_id, &queue_id) || !as_ll(o_flag, &flag) ||
        !as_ll(o_sysflag, &sysflag) || !as_ll(o_born_ts, &born_ts) || !as_ll(o_store_ts, &store_ts) ||
        !as_ll(o_reconsume, &reconsume) || !as_ll(o_version, &version))
        goto fallback;
    if (!in_range(queue_id, INT32_MIN, INT32_MAX) || !in_range(flag, INT32_MIN, INT32_MAX) ||
        !in_range(reconsume, INT32_MIN, INT32_MAX))
        goto fallback;
    const char *topic_bytes = PyUnicode_AsUTF8AndSize(topic, &topic_len);
    if (topic_bytes == NULL) { /* a lone surrogate: the Python encoder raises */
        PyErr_Clear();
        goto fallback;
    }
    if (version == 0)
        version = topic_len > 127 ? 2 : 1;
    if ((version != 1 && version != 2) || topic_len == 0 || topic_len > (version == 1 ? 127 : 32767) ||
        props.len > 32767)
        goto fallback;
    if ((r = known_host(hosts, born_host, &born, &born_len, &born_v6)) <= 0 ||
        (r = known_host(hosts, store_host, &store, &store_len, &store_v6)) <= 0) {
        if (r < 0)
            goto done;
        goto fallback;
    }
    sysflag = (sysflag & ~(long long)(SYSFLAG_BORNHOST_V6 | SYSFLAG_STOREHOST_V6)) |
              (born_v6 ? SYSFLAG_BORNHOST_V6 : 0) | (store_v6 ? SYSFLAG_STOREHOST_V6 : 0);
    if (!in_range(sysflag, INT32_MIN, INT32_MAX))
        goto fallback;
    long long total = 91 + (long long)body.len + topic_len + props.len + (version - 1) + 12 * born_v6 + 12 * store_v6;
    if (total > 0x7FFFFFFF)
        goto fallback;
    result = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)total);
    if (result == NULL)
        goto done;
    unsigned char *w = (unsigned char *)PyBytes_AS_STRING(result);
    uint32_t crc = mq_body_crc(body.buf, (size_t)body.len);
    mq_put32(w, (uint32_t)total);
    mq_put32(w + 4, version == 1 ? MAGIC_V1 : MAGIC_V2);
    mq_put32(w + 8, crc);
    mq_put32(w + 12, (uint32_t)queue_id);
    mq_put32(w + 16, (uint32_t)flag);
    mq_put64(w + 20, 0); /* QUEUEOFFSET */
    mq_put64(w + 28, 0); /* PHYSICALOFFSET */
    mq_put32(w + 36, (uint32_t)sysflag);
    mq_put64(w + 40, (uint64_t)born_ts);
    w += 48;
    memcpy(w, born, born_len);
    w += born_len;
    mq_put64(w, (uint64_t)store_ts);
    w += 8;
    memcpy(w, store, store_len);
    w += store_len;
    mq_put32(w, (uint32_t)reconsume);
    mq_put64(w + 4, 0); /* PREPAREDTRANSACTIONOFFSET */
    mq_put32(w + 12, (uint32_t)body.len);
    w += 16;
    memcpy(w, body.buf, body.len);
    w += body.len;
    if (version == 1) {
        *w++ = (unsigned char)topic_len;
    } else {
        mq_put16(w, (uint32_t)topic_len);
        w += 2;
    }
    memcpy(w, topic_bytes, topic_len);
    w += topic_len;
    mq_put16(w, (uint32_t)props.len);
    w += 2;
    memcpy(w, props.buf, props.len);
    goto done;
fallback:
    result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&body);
    PyBuffer_Release(&props);
    return result;
}

/* --- the property string ------------------------------------------------------------------- */

/* record.decode_properties of a str, by its rules (segments split on \x02; a segment of at least
 * 3 characters whose first \x01 is neither its first nor its last character is name\x01value;
 * the last duplicate wins); None for anything but a str (the Python function decodes bytes). */
PyObject *decode_properties(PyObject *self, PyObject *text) {
    if (!PyUnicode_CheckExact(text))
        Py_RETURN_NONE;
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    PyObject *result = PyDict_New();
    if (result == NULL)
        return NULL;
    Py_ssize_t start = 0;
    while (start <= n) {
        Py_ssize_t end = start;
        while (end < n && PyUnicode_READ(kind, data, end) != 2)
            end++;
        Py_ssize_t length = end - start;
        if (length >= 3) {
            Py_ssize_t sep = start;
            while (sep < end && PyUnicode_READ(kind, data, sep) != 1)
                sep++;
            if (sep > start && sep < end - 1) {
                PyObject *key = PyUnicode_Substring(text, start, sep);
                PyObject *value = key != NULL ? PyUnicode_Substring(text, sep + 1, end) : NULL;
                int r = value != NULL ? PyDict_SetItem(result, key, value) : -1;
                Py_XDECREF(key);
                Py_XDECREF(value);
                if (r < 0) {
                    Py_DECREF(result);
                    return NULL;
                }
            }
        }
        start = end + 1;
    }
    return result;
}
