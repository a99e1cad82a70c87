/* migrate/_scan.c's sinks (included by _scan.c only, after its #includes): where summarize puts its
 * rows (ROW_FIELDS values each, scan.ROW) and index keys, as lists or as packed native int64.
 * Static, one copy in the one file that includes it. */
#ifndef MQ_SCAN_SINKS_H
#define MQ_SCAN_SINKS_H

#define ROW_FIELDS 17

/* ---- rows and keys: lists (rows as tuples), or packed native int64 (summarize's packed=True) ---- */

typedef struct {
    PyObject *list;     /* not packed */
    int64_t *data;      /* packed */
    Py_ssize_t n, cap;  /* int64 values held (packed), or items (list) */
    int packed;
} sink;

static int sink_init(sink *k, int packed) {
    k->packed = packed;
    k->data = NULL;
    k->n = k->cap = 0;
    k->list = packed ? NULL : PyList_New(0);
    return (packed || k->list) ? 0 : -1;
}

static void sink_free(sink *k) {
    Py_XDECREF(k->list);
    PyMem_Free(k->data);
}

static int sink_put(sink *k, const int64_t *v, Py_ssize_t n) {
    if (k->n + n > k->cap) {
        Py_ssize_t cap = k->cap ? k->cap * 2 : 4096;
        while (cap < k->n + n)
            cap *= 2;
        int64_t *data = PyMem_Realloc(k->data, (size_t)cap * sizeof(int64_t));
        if (!data) {
            PyErr_NoMemory();
            return -1;
        }
        k->data = data;
        k->cap = cap;
    }
    memcpy(k->data + k->n, v, (size_t)n * sizeof(int64_t));
    k->n += n;
    return 0;
}

/* the finished sink: its list, or its values as bytes */
static PyObject *sink_take(sink *k) {
    if (!k->packed) {
        Py_INCREF(k->list);
        return k->list;
    }
    return PyBytes_FromStringAndSize((const char *)k->data, k->n * (Py_ssize_t)sizeof(int64_t));
}

static int append_row(sink *rows, const int64_t *v) {
    if (rows->packed)
        return sink_put(rows, v, ROW_FIELDS);
    PyObject *row = PyTuple_New(ROW_FIELDS);
    if (!row)
        return -1;
    for (int k = 0; k < ROW_FIELDS; k++) {
        PyObject *x = PyLong_FromLongLong(v[k]);
        if (!x) {
            Py_DECREF(row);
            return -1;
        }
        PyTuple_SET_ITEM(row, k, x);
    }
    int failed = PyList_Append(rows->list, row);
    Py_DECREF(row);
    rows->n++;
    return failed;
}

static int append_bad(sink *rows, int64_t pos, int64_t nxt) {
    int64_t v[ROW_FIELDS] = {0};
    v[0] = pos;
    v[1] = nxt;
    return append_row(rows, v);
}

static int append_key(sink *keys, long h) {
    if (keys->packed) {
        int64_t v = h;
        return sink_put(keys, &v, 1);
    }
    PyObject *x = PyLong_FromLong(h);
    if (!x)
        return -1;
    int failed = PyList_Append(keys->list, x);
    Py_DECREF(x);
    keys->n++;
    return failed;
}

#endif
