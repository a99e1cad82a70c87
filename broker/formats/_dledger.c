/* mqbench.broker.formats._dledger: broker/formats/dledger.py's build_record_entries in C.
 *
 * Every replica of a Raft group places each run of record entries through this loop (the leader
 * its own records, a follower the leader's): one pass per record building the 48-byte DLedger
 * entry header, the record with its QUEUEOFFSET/PHYSICALOFFSET, the bodyCrc and the 32-byte
 * index unit. The Python function in dledger.py is the reference and its docstring the contract:
 * this returns the same writes (bytearray runs, bytes blanks), units (bytearray) and placed
 * tuples (the record object itself when it already held both offsets) for every input, and
 * raises the same error classes (struct.error for a record under 36 bytes or an offset that does
 * not fit int64, UserError for a blank with fewer than 8 bytes left). tests/formats compare the
 * two. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "mq_bytes.h"
#include <stdint.h>
#include <string.h>

#include "mq_crc32.h"

#define HEADER_BYTES 48
#define BLANK_BYTES 8
#define UNIT_BYTES 32
#define OFFSETS_AT 20 /* QUEUEOFFSET, then PHYSICALOFFSET at 28 */
#define MAGIC 1

static PyObject *struct_error; /* struct.error */
static PyObject *user_error;   /* mqbench.errors.UserError */

/* Python's floor modulo for a positive divisor. */
static long long floor_mod(long long a, long long m) {
    long long r = a % m;
    return r < 0 ? r + m : r;
}

/* Append (at, obj) to writes; steals nothing, returns -1 on error. */
static int add_write(PyObject *writes, long long at, PyObject *obj) {
    PyObject *item = Py_BuildValue("(LO)", at, obj);
    if (item == NULL)
        return -1;
    int rc = PyList_Append(writes, item);
    Py_DECREF(item);
    return rc;
}

static PyObject *build_record_entries(PyObject *self, PyObject *args) {
    PyObject *records_arg, *offsets_arg;
    long long term, index, end_pos, segment_bytes;
    if (!PyArg_ParseTuple(args, "OOLLLL:build_record_entries", &records_arg, &offsets_arg, &term, &index,
                          &end_pos, &segment_bytes))
        return NULL;
    if (segment_bytes <= 0) {
        PyErr_SetString(PyExc_ValueError, "segment_bytes must be > 0");
        return NULL;
    }
    PyObject *records = PySequence_Fast(records_arg, "records must be a sequence");
    if (records == NULL)
        return NULL;
    PyObject *offsets = PySequence_Fast(offsets_arg, "queue_offsets must be a sequence");
    if (offsets == NULL) {
        Py_DECREF(records);
        return NULL;
    }
    Py_ssize_t n_records = PySequence_Fast_GET_SIZE(records);
    Py_ssize_t n = n_records < PySequence_Fast_GET_SIZE(offsets) ? n_records : PySequence_Fast_GET_SIZE(offsets);
    PyObject *writes = NULL, *units = NULL, *placed = NULL, *big = NULL, *result = NULL;
    Py_buffer *views = NULL;
    long long *qos = NULL;
    Py_ssize_t got = 0; /* views held */

    views = PyMem_Calloc(n ? (size_t)n : 1, sizeof(Py_buffer));
    qos = PyMem_Calloc(n ? (size_t)n : 1, sizeof(long long));
    if (views == NULL || qos == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    /* Sizes first (one buffer for every entry). The Python loop raises at the first bad record
     * in order, so a record that is not a buffer raises only when the loop reaches it. */
    Py_ssize_t total = 0, bad = -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(records, i), &views[i], PyBUF_SIMPLE) < 0) {
            PyErr_Clear();
            bad = i;
            break;
        }
        got = i + 1;
        total += HEADER_BYTES + views[i].len;
    }
    writes = PyList_New(0);
    placed = PyList_New(n);
    units = PyByteArray_FromStringAndSize(NULL, n_records * UNIT_BYTES);
    big = PyByteArray_FromStringAndSize(NULL, total);
    if (writes == NULL || placed == NULL || units == NULL || big == NULL)
        goto done;
    unsigned char *buf = (unsigned char *)PyByteArray_AS_STRING(big);
    unsigned char *ubuf = (unsigned char *)PyByteArray_AS_STRING(units);
    memset(ubuf, 0, (size_t)(n_records * UNIT_BYTES));
    Py_ssize_t run_from = 0, at = 0; /* the current run is buf[run_from:at] */
    long long end = end_pos, run_at = end_pos;
    int runs = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (i == bad) { /* raise what the Python loop raises for it */
            Py_buffer again;
            if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(records, i), &again, PyBUF_SIMPLE) == 0) {
                PyBuffer_Release(&again);
                PyErr_SetString(PyExc_TypeError, "record is not a buffer");
            }
            goto done;
        }
        Py_ssize_t len = views[i].len;
        long long size = HEADER_BYTES + (long long)len;
        long long remaining = segment_bytes - floor_mod(end, segment_bytes);
        if (size + BLANK_BYTES > remaining) { /* the entry opens the next segment */
            if (at > run_from) {
                PyObject *run = PyByteArray_FromStringAndSize((const char *)buf + run_from, at - run_from);
                if (run == NULL || add_write(writes, run_at, run) < 0) {
                    Py_XDECREF(run);
                    goto done;
                }
                Py_DECREF(run);
                run_from = at;
                runs++;
            }
            if (remaining < BLANK_BYTES) {
                PyErr_Format(user_error, "a DLedger blank needs %d bytes, %lld left", BLANK_BYTES, remaining);
                goto done;
            }
            unsigned char blank[BLANK_BYTES];
            mq_put32(blank, 0xFFFFFFFFu);
            mq_put32(blank + 4, (uint32_t)remaining);
            PyObject *b = PyBytes_FromStringAndSize((const char *)blank, BLANK_BYTES);
            if (b == NULL || add_write(writes, end, b) < 0) {
                Py_XDECREF(b);
                goto done;
            }
            Py_DECREF(b);
            end = run_at = end + remaining;
        }
        long long pos = end;
        long long physical = pos + HEADER_BYTES;
        unsigned char *h = buf + at, *body = h + HEADER_BYTES;
        const unsigned char *rec = views[i].buf;
        if (len < OFFSETS_AT + 16) {
            PyErr_Format(struct_error, "unpack_from requires a buffer of at least %d bytes for unpacking 16 "
                         "bytes at offset %d (actual buffer size is %zd)", OFFSETS_AT + 16, OFFSETS_AT, len);
            goto done;
        }
        long long held_qo = (long long)mq_u64(rec + OFFSETS_AT), held_po = (long long)mq_u64(rec + OFFSETS_AT + 8);
        PyObject *qo = PySequence_Fast_GET_ITEM(offsets, i);
        int same; /* does the record hold both offsets already (Python's tuple comparison) */
        if (PyLong_CheckExact(qo) || PyLong_Check(qo)) {
            int overflow = 0;
            long long value = PyLong_AsLongLongAndOverflow(qo, &overflow);
            if (value == -1 && PyErr_Occurred())
                goto done;
            same = !overflow && value == held_qo && held_po == physical;
            if (!same && overflow) {
                PyErr_SetString(struct_error, "argument out of range");
                goto done;
            }
            qos[i] = value;
        } else {
            PyObject *held = PyLong_FromLongLong(held_qo);
            if (held == NULL)
                goto done;
            int eq = PyObject_RichCompareBool(held, qo, Py_EQ);
            Py_DECREF(held);
            if (eq < 0)
                goto done;
            same = eq && held_po == physical;
            if (!same) {
                PyErr_SetString(struct_error, "required argument is not an integer");
                goto done;
            }
        }
        if (len > 0x7FFFFFFF - HEADER_BYTES) {
            PyErr_SetString(struct_error, "'i' format requires -2147483648 <= number <= 2147483647");
            goto done;
        }
        memcpy(body, rec, (size_t)len);
        PyObject *stored;
        if (same) {
            stored = PySequence_Fast_GET_ITEM(records, i);
            Py_INCREF(stored);
        } else {
            mq_put64(body + OFFSETS_AT, (uint64_t)qos[i]);
            mq_put64(body + OFFSETS_AT + 8, (uint64_t)physical);
            stored = PyBytes_FromStringAndSize((const char *)body, len);
            if (stored == NULL)
                goto done;
        }
        uint32_t crc = mq_body_crc(body, (size_t)len);
        mq_put32(h, MAGIC);
        mq_put32(h + 4, (uint32_t)size);
        mq_put64(h + 8, (uint64_t)(index + i));
        mq_put64(h + 16, (uint64_t)term);
        mq_put64(h + 24, (uint64_t)pos);
        mq_put32(h + 32, 0);
        mq_put32(h + 36, 0);
        mq_put32(h + 40, crc);
        mq_put32(h + 44, (uint32_t)len);
        unsigned char *u = ubuf + i * UNIT_BYTES;
        mq_put32(u, MAGIC);
        mq_put64(u + 4, (uint64_t)pos);
        mq_put32(u + 12, (uint32_t)size);
        mq_put64(u + 16, (uint64_t)(index + i));
        mq_put64(u + 24, (uint64_t)term);
        PyObject *item = Py_BuildValue("(LLN)", index + i, pos, stored);
        if (item == NULL)
            goto done;
        PyList_SET_ITEM(placed, i, item);
        at += size;
        end = pos + size;
    }
    if (at > run_from) {
        PyObject *run;
        if (runs == 0 && run_from == 0 && at == total) {
            run = big; /* the usual case: one run, no copy */
            Py_INCREF(run);
        } else {
            run = PyByteArray_FromStringAndSize((const char *)buf + run_from, at - run_from);
            if (run == NULL)
                goto done;
        }
        if (add_write(writes, run_at, run) < 0) {
            Py_DECREF(run);
            goto done;
        }
        Py_DECREF(run);
    }
    result = PyTuple_Pack(3, writes, units, placed);
done:
    for (Py_ssize_t i = 0; i < got; i++)
        PyBuffer_Release(&views[i]);
    PyMem_Free(views);
    PyMem_Free(qos);
    Py_XDECREF(writes);
    Py_XDECREF(units);
    Py_XDECREF(placed);
    Py_XDECREF(big);
    Py_DECREF(records);
    Py_DECREF(offsets);
    return result;
}

static PyMethodDef methods[] = {
    {"build_record_entries", build_record_entries, METH_VARARGS,
     "build_record_entries(records, queue_offsets, term, index, end_pos, segment_bytes) -> "
     "(writes, units, placed): dledger.build_record_entries in C (same contract)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_dledger", NULL, -1, methods};

PyMODINIT_FUNC PyInit__dledger(void) {
    mq_crc32_init();
    struct_error = mq_import_attr("struct", "error");
    if (struct_error == NULL)
        return NULL;
    user_error = mq_import_attr("mqbench.errors", "UserError");
    if (user_error == NULL)
        return NULL;
    return PyModule_Create(&module);
}
