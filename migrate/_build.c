/* mqbench.migrate._build: the copy step's per-record loop (bulk.BulkCopy.copy_run) in C, one call
 * per run of records.
 *
 * migrate/bulk.py is the reference and the contract: run() writes
 * exactly the bytes, queue units, DLedger index units and key-index triples the Python loop
 * writes for the same rows, and stops at exactly the record where the Python loop would stop or
 * hand over (tests/migrate/test_build_native.py compares whole migrations byte for byte with and
 * without this module).
 *
 * run(rows, i, buf, wkeys, wq, out, index_units, keyq, dirty, st, cfg) -> (i, reason, queue)
 *   rows: scan.ROW rows packed as native int64 (17 a row); buf: the window's bytes; wkeys: the
 *   window's key hashes, packed int64; wq: per topic number, None (the fast path does not take the
 *   topic) or a dict queue id -> Queue; out, index_units, keyq: bytearrays the target bytes, the
 *   DLedger index units and the (hash, physical offset, store ms) int64 triples are appended to;
 *   dirty: a list a Queue is appended to when it gets its first pending unit; st: a list of the
 *   loop's state (ST_* below, updated in place); cfg: (src_dl, dst_dl, keep_indexes, segment bytes,
 *   buffer bytes, queue units pending). The loop runs from row i and returns the row it stopped
 *   at, why (R_* below) and a Queue whose pending units reached the limit (to be written) or None.
 *
 * Rows come from scan.summarize (this program's own output, not the store), but the record bytes
 * they point at are read only within buf: a row that points outside it stops the run (R_BREAK),
 * so the reader then decides about that item.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "mq_bytes.h"
#include <structmember.h>
#include <stdint.h>
#include <string.h>

#include "mq_crc32.h"

#define ROW_FIELDS 17
#define ENTRY_BYTES 48            /* dledger.ENTRY_HEADER_BYTES */
#define DLEDGER_BLANK_BYTES 8
#define BLANK_MIN_BYTES 8         /* record.BLANK_MIN_BYTES */
#define DLEDGER_MAGIC 1
#define DLEDGER_BLANK_MAGIC (-1)
#define BLANK_MAGIC ((int32_t)0xCBD43194)   /* record.BLANK_MAGIC */
#define INDEX_UNIT_BYTES 32
#define CQ_UNIT_BYTES 20
#define PHYS_AT 28

/* row fields (scan.ROW) */
enum { RW_POS, RW_NXT, RW_OK, RW_RAT, RW_TOTAL, RW_WSIZE, RW_PLEN_AT, RW_PROPS_LEN, RW_TOPIC, RW_QUEUE_ID, RW_QUEUE_OFFSET,
       RW_STORE_MS, RW_EINDEX, RW_ETERM, RW_TAGS_CODE, RW_KEY_AT, RW_NKEYS };
/* st: the loop's state */
enum { ST_END, ST_LAST_INDEX, ST_LAST_TERM, ST_EXPECTED, ST_BEFORE, ST_BOUNDARY, ST_RECORDS, ST_BYTES_IN,
       ST_BYTES_OUT, ST_MAX_STORE_MS, ST_FIELDS };
/* why run() returned */
enum { R_END = 0, R_BREAK = 1, R_NEWQ = 2, R_ROLL = 3, R_BOUNDARY = 4, R_FULL = 5, R_MORE = 6 };


/* -- Queue: a queue's pending units (bulk._Queue) ---------------------------------------------- */

typedef struct {
    PyObject_HEAD
    PyObject *cq;          /* the target's ConsumeQueue */
    PyObject *units;       /* bytearray of pending units */
    long long count;       /* pending units */
    long long base;        /* cq.max_offset when count was last 0 */
} QueueObject;

static int Queue_init(QueueObject *self, PyObject *args, PyObject *kw) {
    PyObject *cq;
    if (!PyArg_ParseTuple(args, "O", &cq))
        return -1;
    PyObject *units = PyByteArray_FromStringAndSize(NULL, 0);
    if (units == NULL)
        return -1;
    Py_INCREF(cq);
    Py_XSETREF(self->cq, cq);
    Py_XSETREF(self->units, units);
    self->count = 0;
    self->base = 0;
    return 0;
}

static void Queue_dealloc(QueueObject *self) {
    Py_XDECREF(self->cq);
    Py_XDECREF(self->units);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMemberDef Queue_members[] = {
    {"cq", T_OBJECT_EX, offsetof(QueueObject, cq), 0, "the target's consume queue"},
    {"units", T_OBJECT_EX, offsetof(QueueObject, units), 0, "pending units (bytearray)"},
    {"count", T_LONGLONG, offsetof(QueueObject, count), 0, "pending units"},
    {NULL},
};

static PyTypeObject QueueType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "mqbench.migrate._build.Queue",
    .tp_doc = "A queue's pending units: cq, units (bytearray), count (bulk._Queue's fields).",
    .tp_basicsize = sizeof(QueueObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Queue_init,
    .tp_dealloc = (destructor)Queue_dealloc,
    .tp_members = Queue_members,
};

/* -- appending to a bytearray --------------------------------------------------------------------- */


static int get_ll(PyObject *list, Py_ssize_t k, long long *out) {
    PyObject *v = PyList_GET_ITEM(list, k);
    if (v == Py_None) {
        *out = -1;
        return 0;
    }
    *out = PyLong_AsLongLong(v);
    return (*out == -1 && PyErr_Occurred()) ? -1 : 0;
}

static int set_ll(PyObject *list, Py_ssize_t k, long long v) {
    PyObject *x = PyLong_FromLongLong(v);
    if (x == NULL)
        return -1;
    PyList_SetItem(list, k, x);     /* steals x */
    return 0;
}

static PyObject *run(PyObject *mod, PyObject *args) {
    Py_buffer rows_b = {0}, buf_b = {0}, keys_b = {0};
    Py_ssize_t i;
    PyObject *wq, *out, *index_units, *keyq, *dirty, *st;
    int src_dl, dst_dl, keep_indexes;
    long long seg, buffer_bytes, queue_pending;
    if (!PyArg_ParseTuple(args, "y*ny*y*O!O!O!O!O!O!(pppLLL):run", &rows_b, &i, &buf_b, &keys_b, &PyList_Type, &wq,
                          &PyByteArray_Type, &out, &PyByteArray_Type, &index_units, &PyByteArray_Type, &keyq,
                          &PyList_Type, &dirty, &PyList_Type, &st, &src_dl, &dst_dl, &keep_indexes, &seg,
                          &buffer_bytes, &queue_pending))
        return NULL;
    PyObject *result = NULL;
    QueueObject *full_q = NULL;
    int reason = R_END;
    long long s[ST_FIELDS];
    int has_expected;
    if (PyList_GET_SIZE(st) != ST_FIELDS) {
        PyErr_SetString(PyExc_ValueError, "state list of the wrong size");
        goto done;
    }
    has_expected = PyList_GET_ITEM(st, ST_EXPECTED) != Py_None;
    for (int k = 0; k < ST_FIELDS; k++)
        if (get_ll(st, k, &s[k]) < 0)
            goto done;
    if (rows_b.len % (ROW_FIELDS * 8) || keys_b.len % 8 || seg <= 0 || i < 0) {
        PyErr_SetString(PyExc_ValueError, "rows or keys not packed int64, or a bad segment size");
        goto done;
    }
    const int64_t *rows = (const int64_t *)rows_b.buf;
    const int64_t *wkeys = (const int64_t *)keys_b.buf;
    const Py_ssize_t n = rows_b.len / (ROW_FIELDS * 8), nwkeys = keys_b.len / 8, ntopics = PyList_GET_SIZE(wq);
    const unsigned char *src = (const unsigned char *)buf_b.buf;
    const Py_ssize_t src_len = buf_b.len;

    for (; i < n; ) {
        const int64_t *r = rows + i * ROW_FIELDS;
        /* -- the source item, checked ahead (scan.summarize), and what depends on the copy so far */
        if (!r[RW_OK]) { reason = R_BREAK; break; }
        const int64_t eindex = r[RW_EINDEX];
        if (src_dl && has_expected && eindex != s[ST_EXPECTED]) { reason = R_BREAK; break; }
        const int64_t tid = r[RW_TOPIC];
        if (tid < 0 || tid >= ntopics) { reason = R_BREAK; break; }
        PyObject *qmap = PyList_GET_ITEM(wq, tid);
        if (!PyDict_Check(qmap)) { reason = R_BREAK; break; }
        PyObject *qid = PyLong_FromLongLong(r[RW_QUEUE_ID]);
        if (qid == NULL)
            goto done;
        PyObject *qo = PyDict_GetItemWithError(qmap, qid);
        Py_DECREF(qid);
        if (qo == NULL) {
            if (PyErr_Occurred())
                goto done;
            reason = R_NEWQ;
            break;
        }
        if (Py_TYPE(qo) != &QueueType) {
            PyErr_SetString(PyExc_TypeError, "queue map holds something that is not a Queue");
            goto done;
        }
        QueueObject *q = (QueueObject *)qo;
        if (!q->count) {      /* nothing pending: the per-record path may have moved the queue's end */
            PyObject *mo = PyObject_GetAttrString(q->cq, "max_offset");
            if (mo == NULL)
                goto done;
            q->base = PyLong_AsLongLong(mo);
            Py_DECREF(mo);
            if (q->base == -1 && PyErr_Occurred())
                goto done;
        }
        if (r[RW_QUEUE_OFFSET] != q->base + q->count) { reason = R_BREAK; break; }
        /* -- the target record --------------------------------------------------------------------- */
        const int64_t total = r[RW_TOTAL], wsize = r[RW_WSIZE], rat = r[RW_RAT], plen_at = r[RW_PLEN_AT];
        if (rat < 0 || wsize < PHYS_AT + 8 || wsize > total || rat + wsize > src_len || plen_at < 0
                || plen_at + 2 > wsize || !PyByteArray_CheckExact(q->units)) { reason = R_BREAK; break; }
        const int strip = wsize != total;
        int64_t new_phys, wpos = s[ST_END];
        unsigned char *w;
        if (dst_dl) {
            const int64_t term = src_dl ? r[RW_ETERM] : 0;
            if (term < s[ST_LAST_TERM]) { reason = R_BREAK; break; }
            if (keep_indexes && eindex != s[ST_LAST_INDEX] + 1) { reason = R_BREAK; break; }
            const int64_t esize_out = ENTRY_BYTES + wsize;
            if (esize_out + DLEDGER_BLANK_BYTES > seg) { reason = R_BREAK; break; }
            const int64_t room = seg - wpos % seg;
            if (esize_out + DLEDGER_BLANK_BYTES > room) {     /* the data file's end: a blank, then the next file */
                if ((w = mq_grow(out, 8)) == NULL)
                    goto done;
                mq_put32(w, DLEDGER_BLANK_MAGIC);
                mq_put32(w + 4, (int32_t)room);
                s[ST_END] = wpos + room;
                reason = R_ROLL;
                break;
            }
            const int64_t new_index = s[ST_LAST_INDEX] + 1;
            if ((w = mq_grow(out, esize_out)) == NULL)
                goto done;
            unsigned char *rec = w + ENTRY_BYTES;
            memcpy(rec, src + rat, (size_t)wsize);
            mq_put64(rec + PHYS_AT, wpos + ENTRY_BYTES);
            if (strip) {
                mq_put32(rec, (int32_t)wsize);
                mq_put16(rec + plen_at, (int32_t)(r[RW_PROPS_LEN] - 1));
            }
            mq_put32(w, DLEDGER_MAGIC);
            mq_put32(w + 4, (int32_t)esize_out);
            mq_put64(w + 8, new_index);
            mq_put64(w + 16, term);
            mq_put64(w + 24, wpos);
            mq_put32(w + 32, 0);
            mq_put32(w + 36, 0);
            mq_put32(w + 40, (int32_t)mq_body_crc(rec, (size_t)wsize));
            mq_put32(w + 44, (int32_t)wsize);
            if ((w = mq_grow(index_units, INDEX_UNIT_BYTES)) == NULL)
                goto done;
            mq_put32(w, DLEDGER_MAGIC);
            mq_put64(w + 4, wpos);
            mq_put32(w + 12, (int32_t)esize_out);
            mq_put64(w + 16, new_index);
            mq_put64(w + 24, term);
            new_phys = wpos + ENTRY_BYTES;
            s[ST_END] = wpos + esize_out;
            s[ST_LAST_INDEX] = new_index;
            s[ST_LAST_TERM] = term;
        } else {
            if (wsize + BLANK_MIN_BYTES > seg) { reason = R_BREAK; break; }
            const int64_t room = seg - wpos % seg;
            if (wsize + BLANK_MIN_BYTES > room) {     /* the commitlog file's end: a blank, then the next file */
                if ((w = mq_grow(out, 8)) == NULL)
                    goto done;
                mq_put32(w, (int32_t)room);
                mq_put32(w + 4, BLANK_MAGIC);
                s[ST_END] = wpos + room;
                reason = R_ROLL;
                break;
            }
            if ((w = mq_grow(out, wsize)) == NULL)
                goto done;
            memcpy(w, src + rat, (size_t)wsize);
            mq_put64(w + PHYS_AT, wpos);
            if (strip) {
                mq_put32(w, (int32_t)wsize);
                mq_put16(w + plen_at, (int32_t)(r[RW_PROPS_LEN] - 1));
            }
            new_phys = wpos;
            s[ST_END] = wpos + wsize;
        }
        if (src_dl) {
            s[ST_EXPECTED] = eindex + 1;
            has_expected = 1;
        }
        /* -- its queue unit and keys ------------------------------------------------------------- */
        if (!q->count && PyList_Append(dirty, qo) < 0)
            goto done;
        if ((w = mq_grow(q->units, CQ_UNIT_BYTES)) == NULL)
            goto done;
        mq_put64(w, new_phys);
        mq_put32(w + 8, (int32_t)wsize);
        mq_put64(w + 12, r[RW_TAGS_CODE]);
        q->count++;
        const int64_t key_at = r[RW_KEY_AT], nkeys = r[RW_NKEYS];
        if (nkeys) {
            if (key_at < 0 || nkeys < 0 || key_at + nkeys > nwkeys) {
                PyErr_SetString(PyExc_ValueError, "a row's keys are outside the window's keys");
                goto done;
            }
            if ((w = mq_grow(keyq, nkeys * 24)) == NULL)
                goto done;
            int64_t *t = (int64_t *)w;      /* bytearray storage is malloc-aligned; appended in steps of 24 */
            for (int64_t k = 0; k < nkeys; k++) {
                int64_t triple[3] = {wkeys[key_at + k], new_phys, r[RW_STORE_MS]};
                memcpy(t + 3 * k, triple, sizeof triple);
            }
        }
        i++;
        s[ST_RECORDS]++;
        s[ST_BYTES_IN] += total;
        s[ST_BYTES_OUT] += wsize;
        if (r[RW_STORE_MS] > s[ST_MAX_STORE_MS])
            s[ST_MAX_STORE_MS] = r[RW_STORE_MS];
        s[ST_BEFORE] = r[RW_NXT];
        if (q->count >= queue_pending)
            full_q = q;
        if (r[RW_NXT] >= s[ST_BOUNDARY]) { reason = R_BOUNDARY; break; }
        if (PyByteArray_GET_SIZE(out) >= buffer_bytes) { reason = R_FULL; break; }
        if (full_q != NULL) { reason = R_MORE; break; }
    }
    for (int k = 0; k < ST_FIELDS; k++) {
        if (k == ST_EXPECTED && !has_expected)
            continue;
        if (set_ll(st, k, s[k]) < 0)
            goto done;
    }
    result = Py_BuildValue("(niO)", i, reason, full_q != NULL ? (PyObject *)full_q : Py_None);
done:
    PyBuffer_Release(&rows_b);
    PyBuffer_Release(&buf_b);
    PyBuffer_Release(&keys_b);
    return result;
}

static PyMethodDef methods[] = {
    {"run", run, METH_VARARGS, "The copy loop over a window's rows (bulk.BulkCopy.copy_run; module doc)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_build", NULL, -1, methods};

PyMODINIT_FUNC PyInit__build(void) {
    mq_crc32_init();
    if (PyType_Ready(&QueueType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&QueueType);
    if (PyModule_AddObject(m, "Queue", (PyObject *)&QueueType) < 0) {
        Py_DECREF(&QueueType);
        Py_DECREF(m);
        return NULL;
    }
    if (PyModule_AddIntConstant(m, "R_END", R_END) < 0 || PyModule_AddIntConstant(m, "R_BREAK", R_BREAK) < 0 ||
        PyModule_AddIntConstant(m, "R_NEWQ", R_NEWQ) < 0 || PyModule_AddIntConstant(m, "R_ROLL", R_ROLL) < 0 ||
        PyModule_AddIntConstant(m, "R_BOUNDARY", R_BOUNDARY) < 0 || PyModule_AddIntConstant(m, "R_FULL", R_FULL) < 0 ||
        PyModule_AddIntConstant(m, "R_MORE", R_MORE) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
