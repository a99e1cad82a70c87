/* mqbench.broker.raft._wire: the per-entry loops of broker/raft/wire.py in C.
 *
 * A follower decodes every entry of every append a leader sends (decode_entries) and a leader
 * encodes the entries of each append once for its followers (encode_entries). The Python functions
 * in wire.py are the reference and their docstrings the contract: the same results for every
 * input and the same error classes and messages (PeerError for a malformed frame: the bytes are an
 * untrusted peer's, every read is bounds-checked; struct.error for an entry that does not fit the
 * wire's integer fields). tests/raft compare the two. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "mq_bytes.h"
#include <stdint.h>
#include <string.h>

#define ENTRY_BYTES 21 /* index u64, term u64, kind u8, length u32 */

static PyObject *peer_error;   /* mqbench.errors.PeerError */
static PyObject *struct_error; /* struct.error */


/* decode_entries(body, start, pos, end, count, entry_type, kinds) -> (entries tuple, bytes left) */
static PyObject *decode_entries(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *body, *entry_type, *kinds;
    Py_ssize_t start, pos, end, count;
    if (!PyArg_ParseTuple(args, "OnnnnOO:decode_entries", &body, &start, &pos, &end, &count, &entry_type, &kinds))
        return NULL;
    if (!PyType_Check(entry_type) || !PyType_IsSubtype((PyTypeObject *)entry_type, &PyTuple_Type) ||
        !PyTuple_Check(kinds)) {
        PyErr_SetString(PyExc_TypeError, "entry_type must be a tuple subclass and kinds a tuple");
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(body, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    PyObject *out = NULL, *result = NULL;
    if (start < 0 || pos < start || end < pos || end > view.len || count < 0) {
        PyErr_SetString(PyExc_ValueError, "start <= pos <= end <= len(body) and count >= 0 required");
        goto done;
    }
    const unsigned char *b = view.buf;
    Py_ssize_t n_kinds = PyTuple_GET_SIZE(kinds);
    out = PyTuple_New(count);
    if (out == NULL)
        goto done;
    PyTypeObject *type = (PyTypeObject *)entry_type;
    for (Py_ssize_t i = 0; i < count; i++) {
        if (end - pos < ENTRY_BYTES) {
            PyErr_Format(peer_error, "raft entry header cut at byte %zd", pos - start);
            goto done;
        }
        uint64_t index = mq_u64(b + pos), term = mq_u64(b + pos + 8);
        unsigned kind = b[pos + 16];
        uint32_t length = mq_u32(b + pos + 17);
        pos += ENTRY_BYTES;
        PyObject *kind_obj = (Py_ssize_t)kind < n_kinds ? PyTuple_GET_ITEM(kinds, kind) : Py_None;
        if (kind_obj == Py_None) {
            PyErr_Format(peer_error, "unknown raft entry kind %u", kind);
            goto done;
        }
        if ((Py_ssize_t)length > end - pos) {
            PyErr_Format(peer_error, "raft entry data of %u bytes overruns the frame at byte %zd", length,
                         pos - start);
            goto done;
        }
        PyObject *entry = type->tp_alloc(type, 4);
        if (entry == NULL)
            goto done;
        PyTuple_SET_ITEM(out, i, entry);
        PyObject *v;
        if ((v = PyLong_FromUnsignedLongLong(index)) == NULL)
            goto done;
        PyTuple_SET_ITEM(entry, 0, v);
        if ((v = PyLong_FromUnsignedLongLong(term)) == NULL)
            goto done;
        PyTuple_SET_ITEM(entry, 1, v);
        if ((v = PyBytes_FromStringAndSize((const char *)b + pos, (Py_ssize_t)length)) == NULL)
            goto done;
        PyTuple_SET_ITEM(entry, 2, v);
        Py_INCREF(kind_obj);
        PyTuple_SET_ITEM(entry, 3, kind_obj);
        pos += length;
    }
    result = Py_BuildValue("(On)", out, end - pos);
done:
    Py_XDECREF(out);
    PyBuffer_Release(&view);
    return result;
}

/* One entry field as a C integer in [0, max], struct.error otherwise (what struct.pack raises). */
static int field(PyObject *obj, unsigned long long max, unsigned long long *value) {
    if (!PyLong_Check(obj)) {
        PyObject *index = PyNumber_Index(obj);
        if (index == NULL) {
            PyErr_Clear();
            PyErr_SetString(struct_error, "required argument is not an integer");
            return -1;
        }
        int rc = field(index, max, value);
        Py_DECREF(index);
        return rc;
    }
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(obj, &overflow);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (overflow > 0) {
        unsigned long long u = PyLong_AsUnsignedLongLong(obj);
        if (u == (unsigned long long)-1 && PyErr_Occurred()) {
            PyErr_Clear();
            PyErr_SetString(struct_error, "argument out of range");
            return -1;
        }
        if (u > max) {
            PyErr_SetString(struct_error, "argument out of range");
            return -1;
        }
        *value = u;
        return 0;
    }
    if (overflow < 0 || v < 0 || (unsigned long long)v > max) {
        PyErr_SetString(struct_error, "argument out of range");
        return -1;
    }
    *value = (unsigned long long)v;
    return 0;
}

static PyObject *attr(PyObject *entry, Py_ssize_t i, const char *name) {
    if (PyTuple_Check(entry) && PyTuple_GET_SIZE(entry) == 4) {
        PyObject *v = PyTuple_GET_ITEM(entry, i);
        Py_INCREF(v);
        return v;
    }
    return PyObject_GetAttrString(entry, name);
}

/* encode_entries(entries) -> bytes */
static PyObject *encode_entries(PyObject *self, PyObject *arg) {
    (void)self;
    PyObject *seq = PySequence_Fast(arg, "entries must be a sequence");
    if (seq == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject *result = NULL;
    Py_buffer *views = PyMem_Calloc(n ? (size_t)n : 1, sizeof(Py_buffer));
    unsigned long long(*fields)[3] = PyMem_Calloc(n ? (size_t)n : 1, sizeof(*fields));
    Py_ssize_t got = 0, total = 0;
    if (views == NULL || fields == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *e = PySequence_Fast_GET_ITEM(seq, i);
        static const char *names[3] = {"index", "term", "kind"};
        static const Py_ssize_t at[3] = {0, 1, 3};
        static const unsigned long long max[3] = {UINT64_MAX, UINT64_MAX, 255};
        PyObject *data = attr(e, 2, "data");
        if (data == NULL)
            goto done;
        for (int k = 0; k < 3; k++) {
            PyObject *v = attr(e, at[k], names[k]);
            if (v == NULL) {
                Py_DECREF(data);
                goto done;
            }
            int rc = field(v, max[k], &fields[i][k]);
            Py_DECREF(v);
            if (rc < 0) {
                Py_DECREF(data);
                goto done;
            }
        }
        int rc = PyObject_GetBuffer(data, &views[i], PyBUF_SIMPLE);
        Py_DECREF(data);
        if (rc < 0)
            goto done;
        got = i + 1;
        if ((unsigned long long)views[i].len > UINT32_MAX) {
            PyErr_SetString(struct_error, "argument out of range");
            goto done;
        }
        total += ENTRY_BYTES + views[i].len;
    }
    result = PyBytes_FromStringAndSize(NULL, total);
    if (result == NULL)
        goto done;
    unsigned char *p = (unsigned char *)PyBytes_AS_STRING(result);
    for (Py_ssize_t i = 0; i < n; i++) {
        mq_put64(p, fields[i][0]);
        mq_put64(p + 8, fields[i][1]);
        p[16] = (unsigned char)fields[i][2];
        mq_put32(p + 17, (uint32_t)views[i].len);
        memcpy(p + ENTRY_BYTES, views[i].buf, (size_t)views[i].len);
        p += ENTRY_BYTES + views[i].len;
    }
done:
    for (Py_ssize_t i = 0; i < got; i++)
        PyBuffer_Release(&views[i]);
    PyMem_Free(views);
    PyMem_Free(fields);
    Py_DECREF(seq);
    return result;
}

static PyMethodDef methods[] = {
    {"decode_entries", decode_entries, METH_VARARGS,
     "decode_entries(body, start, pos, end, count, entry_type, kinds) -> (entries, left): wire's loop in C."},
    {"encode_entries", encode_entries, METH_O, "encode_entries(entries) -> bytes: wire.encode_entries in C."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_wire", NULL, -1, methods};

PyMODINIT_FUNC PyInit__wire(void) {
    struct_error = mq_import_attr("struct", "error");
    if (struct_error == NULL)
        return NULL;
    peer_error = mq_import_attr("mqbench.errors", "PeerError");
    if (peer_error == NULL)
        return NULL;
    return PyModule_Create(&module);
}
