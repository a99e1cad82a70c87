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

/* --- the fields of pulled records ------------------------------------------------------------ */

/* The host tuple record_fields._IPV4_HOSTS holds for (address, port), as a new reference; NULL when it is
 * not there (no error set) or on an error (set). The key is record_fields._ipv4_host's. */
static PyObject *ipv4_host(PyObject *hosts, uint32_t address, int32_t port) {
    PyObject *key = PyLong_FromUnsignedLongLong(((unsigned long long)address << 32) | (uint32_t)port);
    if (key == NULL)
        return NULL;
    PyObject *host = PyDict_GetItemWithError(hosts, key);
    Py_DECREF(key);
    if (host == NULL || !PyTuple_CheckExact(host))
        return NULL;
    return Py_NewRef(host);
}

/* One record at p (rec_end - p bytes, rec_end checked) by decode_fields' fast path, as a ``cls``
 * tuple (a new reference); NULL when the path does not take it (no error set) or on an error (set).
 * Hosts are the caller's two one-entry caches (new references it owns). */
typedef struct {
    uint32_t address;
    int32_t port;
    PyObject *host;
} host_slot;

static PyObject *host_of(PyObject *hosts, host_slot *slot, uint32_t address, int32_t port) {
    if (slot->host == NULL || slot->address != address || slot->port != port) {
        PyObject *host = ipv4_host(hosts, address, port);
        if (host == NULL)
            return NULL;
        Py_XSETREF(slot->host, host);
        slot->address = address;
        slot->port = port;
    }
    return Py_NewRef(slot->host);
}

/* every fixed field of a record with two IPv4 hosts (record_layout._FIXED_IPV4): BORNHOST at 48,
 * STORETIMESTAMP 56, STOREHOST 64, RECONSUMETIMES 72, BODYLEN 84 */
#define FIXED_IPV4_BYTES 88

PyObject *decode_fields_run(PyObject *self, PyObject *args) {
    Py_buffer buf;
    Py_ssize_t pos, end;
    int check_crc;
    PyObject *hosts, *cls;
    if (!PyArg_ParseTuple(args, "y*nnpO!O!", &buf, &pos, &end, &check_crc, &PyDict_Type, &hosts, &PyType_Type, &cls))
        return NULL;
    PyObject *out = NULL, *result = NULL;
    host_slot born_slot = {0, 0, NULL}, store_slot = {0, 0, NULL};
    if (!PyType_IsSubtype((PyTypeObject *)cls, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "cls must be a tuple type");
        goto done;
    }
    if ((out = PyList_New(0)) == NULL)
        goto done;
    if (end > buf.len)
        end = buf.len;
    const unsigned char *base = (const unsigned char *)buf.buf;
    while (pos >= 0 && end - pos >= FIXED_IPV4_BYTES) {
        const unsigned char *p = base + pos;
        int32_t total = mq_i32(p), body_len = mq_i32(p + 84), sysflag = mq_i32(p + 36);
        uint32_t magic = mq_u32(p + 4);
        if (sysflag & (SYSFLAG_BORNHOST_V6 | SYSFLAG_STOREHOST_V6) || (magic != MAGIC_V1 && magic != MAGIC_V2) ||
            total > end - pos || body_len < 0)
            break;
        Py_ssize_t rec_end = pos + total, at = pos + FIXED_IPV4_BYTES, body_end = at + body_len;
        if (body_end + 4 > rec_end)
            break;
        Py_ssize_t topic_len, topic_at;
        if (magic == MAGIC_V1) {
            topic_len = base[body_end];
            topic_at = body_end + 1;
            if (topic_len > 127)
                break;
        } else {
            topic_len = mq_i16(base + body_end);
            topic_at = body_end + 2;
        }
        Py_ssize_t props_at = topic_at + topic_len + 2;
        if (topic_len <= 0 || props_at > rec_end || props_at + mq_i16(base + props_at - 2) != rec_end)
            break;
        if (check_crc && mq_body_crc(base + at, (size_t)body_len) != (uint32_t)mq_i32(p + 8))
            break;
        PyObject *topic = PyUnicode_DecodeUTF8((const char *)base + topic_at, topic_len, "strict");
        PyObject *text = topic != NULL ? PyUnicode_DecodeUTF8((const char *)base + props_at, rec_end - props_at,
                                                              "strict") : NULL;
        if (text == NULL) { /* not UTF-8: decode_fields' parser names it */
            Py_XDECREF(topic);
            if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError))
                goto done;
            PyErr_Clear();
            break;
        }
        PyObject *born = host_of(hosts, &born_slot, mq_u32(p + 48), mq_i32(p + 52));
        PyObject *store = born != NULL ? host_of(hosts, &store_slot, mq_u32(p + 64), mq_i32(p + 68)) : NULL;
        if (store == NULL) { /* a host not seen yet: decode_fields makes its tuple */
            Py_DECREF(topic);
            Py_DECREF(text);
            Py_XDECREF(born);
            if (PyErr_Occurred())
                goto done;
            break;
        }
        PyObject *fields = ((PyTypeObject *)cls)->tp_alloc((PyTypeObject *)cls, 14);
        if (fields == NULL) {
            Py_DECREF(topic);
            Py_DECREF(text);
            Py_DECREF(born);
            Py_DECREF(store);
            goto done;
        }
        PyTuple_SET_ITEM(fields, 1, topic);
        PyTuple_SET_ITEM(fields, 3, text);
        PyTuple_SET_ITEM(fields, 10, born);
        PyTuple_SET_ITEM(fields, 12, store);
        PyObject *items[10] = {
            PyLong_FromLong(total),
            PyBytes_FromStringAndSize((const char *)base + at, body_len),
            PyLong_FromLong(mq_i32(p + 12)),      /* QUEUEID */
            PyLong_FromLong(mq_i32(p + 16)),      /* FLAG */
            PyLong_FromLongLong(mq_i64(p + 20)),  /* QUEUEOFFSET */
            PyLong_FromLongLong(mq_i64(p + 28)),  /* PHYSICALOFFSET */
            PyLong_FromLong(sysflag),
            PyLong_FromLongLong(mq_i64(p + 40)),  /* BORNTIMESTAMP */
            PyLong_FromLongLong(mq_i64(p + 56)),  /* STORETIMESTAMP */
            PyLong_FromLong(mq_i32(p + 72)),      /* RECONSUMETIMES */
        };
        static const int place[10] = {0, 2, 4, 5, 6, 7, 8, 9, 11, 13};
        int failed = 0;
        for (int i = 0; i < 10; i++) {
            if (items[i] == NULL)
                failed = 1;
            PyTuple_SET_ITEM(fields, place[i], items[i]); /* a NULL item is fine for the dealloc */
        }
        if (failed || PyList_Append(out, fields) < 0) {
            Py_DECREF(fields);
            goto done;
        }
        Py_DECREF(fields);
        pos = rec_end;
    }
    result = Py_BuildValue("(On)", out, pos);
done:
    Py_XDECREF(out);
    Py_XDECREF(born_slot.host);
    Py_XDECREF(store_slot.host);
    PyBuffer_Release(&buf);
    return result;
}
