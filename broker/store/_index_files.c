/* mqbench.broker.store._index_files: IndexWriter.put_flat's inlined insert in C.
 *
 * broker/store/index_files.py is the reference and the contract: index_put writes exactly the items
 * and slot values put_flat's loop writes for the same triples (tests/store/test_index_put_native.py
 * compares the files). The triples come from this program (a migration's key hashes), the slot
 * table is the writer's own: shapes are checked, values are not trusted for memory access (a slot
 * number is always reduced modulo the table's size).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "mq_bytes.h"
#include <stdint.h>
#include <string.h>



/* index_put(slots, items, flat, at, count, index_num, slot_num, begin_ts)
 *   -> (at, count, new_slots, last_phys, last_ms)
 * IndexWriter.put_flat's inlined insert: the triples of flat (packed int64) from triple ``at`` go
 * into the open file whose slot table is ``slots`` (array('i'), native order) and whose pending
 * items ``items`` (bytearray) gets, while count < index_num. */
static PyObject *index_put(PyObject *mod, PyObject *args) {
    Py_buffer slots_b = {0}, flat_b = {0};
    PyObject *items;
    Py_ssize_t at;
    long long n, index_num, slot_num, begin;
    if (!PyArg_ParseTuple(args, "w*O!y*nLLLL:index_put", &slots_b, &PyByteArray_Type, &items, &flat_b, &at, &n,
                          &index_num, &slot_num, &begin))
        return NULL;
    PyObject *result = NULL;
    if (slots_b.len != slot_num * 4 || slot_num <= 0 || flat_b.len % 24 || at < 0 || n < 1) {
        PyErr_SetString(PyExc_ValueError, "slot table, triples or count out of shape");
        goto done;
    }
    int32_t *slots = (int32_t *)slots_b.buf;
    const int64_t *flat = (const int64_t *)flat_b.buf;
    const Py_ssize_t end = flat_b.len / 24;
    long long new_slots = 0, phys = 0, ms = 0;
    Py_ssize_t todo = end - at;
    if (todo > index_num - n)
        todo = index_num - n > 0 ? (Py_ssize_t)(index_num - n) : 0;
    unsigned char *w = NULL;
    if (todo > 0 && (w = mq_grow(items, todo * 20)) == NULL)
        goto done;
    for (Py_ssize_t k = 0; k < todo; k++, at++) {
        int64_t t[3];
        memcpy(t, flat + 3 * at, sizeof t);
        const int64_t h = t[0];
        phys = t[1];
        ms = t[2];
        int64_t slot = h % slot_num;
        if (slot < 0)
            slot += slot_num;
        int64_t old = slots[slot];
        if (old <= 0 || old > n) {
            old = 0;
            new_slots++;
        }
        int64_t diff = 0;
        if (begin > 0) {
            int64_t d = ms - begin;
            diff = d >= 0 ? d / 1000 : -((-d + 999) / 1000);      /* Python's floor division */
            if (diff < 0)
                diff = 0;
            else if (diff > 0x7FFFFFFF)
                diff = 0x7FFFFFFF;
        }
        mq_put32(w, (int32_t)h);
        mq_put64(w + 4, phys);
        mq_put32(w + 12, (int32_t)diff);
        mq_put32(w + 16, (int32_t)old);
        w += 20;
        slots[slot] = (int32_t)n;
        n++;
    }
    result = Py_BuildValue("(nLLLL)", at, n, new_slots, phys, ms);
done:
    PyBuffer_Release(&slots_b);
    PyBuffer_Release(&flat_b);
    return result;
}

static PyMethodDef methods[] = {
    {"index_put", index_put, METH_VARARGS, "IndexWriter.put_flat's inlined insert over packed triples."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_index_files", NULL, -1, methods};

PyMODINIT_FUNC PyInit__index_files(void) { return PyModule_Create(&module); }
