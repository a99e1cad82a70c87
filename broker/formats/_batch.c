/* mqbench.broker.formats._batch: the per-item loops of RocketMQ 5's inner batch (BatchCQ) in C.
 *
 * batch.py (canonical_batch_count) and restamp.py (restamp_inner_batch) are the reference: each
 * function here returns what its Python namesake returns for every input (tests/formats/
 * test_batch_native.py compares them on valid and damaged bodies). The input is a client's
 * request body or a peer's replicated record: every read is bounds-checked, nothing is trusted.
 *
 * canonical_batch_count(body, items_max, names_refused, properties_bytes_max) -> int | None
 *   body: bytes (anything else: None); items_max: int or None; names_refused: a set/frozenset
 *   (only its bytes members can match a name); properties_bytes_max: int.
 *
 * restamp_inner_batch(record, queue_offset, props_at, props_len) -> (bytes, int) | None
 *   record: bytes; props_at/props_len: record._tail_positions' properties start and length
 *   (the caller read them from a record place_fields checked); queue_offset: 0 <= int < 2**63.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "mq_bytes.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define ITEM_FIXED 22
#define PROPERTIES_MAX 32767
#define INNER_NUM_MAX 0x7FFF

typedef struct {
    const unsigned char *p;
    Py_ssize_t n;
} span;

static int span_cmp(const void *a, const void *b) {
    const span *x = a, *y = b;
    Py_ssize_t n = x->n < y->n ? x->n : y->n;
    int c = memcmp(x->p, y->p, (size_t)n);
    if (c)
        return c;
    return (x->n > y->n) - (x->n < y->n);
}

/* 1: the names (k of them) are pairwise distinct; 0: not. scratch holds at least k spans. */
static int names_distinct(span *names, Py_ssize_t k) {
    if (k <= 8) {
        for (Py_ssize_t a = 0; a < k; a++)
            for (Py_ssize_t b = a + 1; b < k; b++)
                if (names[a].n == names[b].n && memcmp(names[a].p, names[b].p, (size_t)names[a].n) == 0)
                    return 0;
        return 1;
    }
    qsort(names, (size_t)k, sizeof(span), span_cmp);
    for (Py_ssize_t a = 1; a < k; a++)
        if (names[a].n == names[a - 1].n && memcmp(names[a].p, names[a - 1].p, (size_t)names[a].n) == 0)
            return 0;
    return 1;
}

/* Splits a property string as encode_properties writes it (name\x01value\x02 segments, name and
 * value non-empty without a separator, the last one ended) into its names. Returns the number of
 * segments, or -1 when the string is not of that form; names must hold len/4 + 1 spans. */
static Py_ssize_t split_plain(const unsigned char *p, Py_ssize_t len, span *names) {
    Py_ssize_t i = 0, k = 0;
    while (i < len) {
        Py_ssize_t start = i;
        while (i < len && p[i] != 1 && p[i] != 2)
            i++;
        if (i == start || i >= len || p[i] != 1)
            return -1;
        names[k].p = p + start;
        names[k].n = i - start;
        i++;
        Py_ssize_t vstart = i;
        while (i < len && p[i] != 1 && p[i] != 2)
            i++;
        if (i == vstart || i >= len || p[i] != 2)
            return -1;
        i++;
        k++;
    }
    return k;
}

/* 1: ASCII or valid UTF-8 by CPython's own strict decoder; 0: not; -1: error set. */
static int is_utf8(const unsigned char *p, Py_ssize_t len) {
    Py_ssize_t i = 0;
    for (; i < len; i++)
        if (p[i] & 0x80)
            break;
    if (i == len)
        return 1;
    PyObject *text = PyUnicode_DecodeUTF8((const char *)p, len, "strict");
    if (text != NULL) {
        Py_DECREF(text);
        return 1;
    }
    if (PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
        PyErr_Clear();
        return 0;
    }
    return -1;
}

/* long long from an int object, clamped to [lo, hi]; -1 with an error set when not an int */
static int clamp_ll(PyObject *obj, long long lo, long long hi, long long *out) {
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(obj, &overflow);
    if (v == -1 && !overflow && PyErr_Occurred())
        return -1;
    if (overflow > 0 || v > hi)
        v = hi;
    else if (overflow < 0 || v < lo)
        v = lo;
    *out = v;
    return 0;
}

static PyObject *canonical_batch_count(PyObject *self, PyObject *args) {
    PyObject *body, *items_max_obj, *refused, *props_max_obj;
    if (!PyArg_ParseTuple(args, "OOOO", &body, &items_max_obj, &refused, &props_max_obj))
        return NULL;
    if (!PyBytes_Check(body))
        Py_RETURN_NONE;
    const unsigned char *buf = (const unsigned char *)PyBytes_AS_STRING(body);
    Py_ssize_t end = PyBytes_GET_SIZE(body);
    long long limit = end, props_max;
    if (items_max_obj != Py_None && clamp_ll(items_max_obj, LLONG_MIN, LLONG_MAX, &limit) < 0)
        return NULL;
    if (clamp_ll(props_max_obj, LLONG_MIN, LLONG_MAX, &props_max) < 0)
        return NULL;
    if (!PyAnySet_Check(refused)) {
        PyErr_SetString(PyExc_TypeError, "names_refused must be a set or frozenset");
        return NULL;
    }

    /* pass 1: the framing of every item, as batch.py's loop */
    Py_ssize_t pos = 0, count = 0, wires = 0, longest = 0;
    while (pos < end) {
        if (count >= limit || end - pos < ITEM_FIXED)
            Py_RETURN_NONE;
        const unsigned char *h = buf + pos;
        int64_t total = mq_i32(h), magic = mq_i32(h + 4), crc = mq_i32(h + 8), body_len = mq_i32(h + 16);
        if (magic || crc || body_len < 0 || total < ITEM_FIXED + body_len || total > (int64_t)(end - pos))
            Py_RETURN_NONE;
        Py_ssize_t props_at = pos + 20 + (Py_ssize_t)body_len;   /* props_at + 2 <= pos + total <= end */
        int64_t props_len = mq_i16(buf + props_at);
        if (props_len < 0 || ITEM_FIXED + body_len + props_len != total || props_len > props_max)
            Py_RETURN_NONE;
        pos += (Py_ssize_t)total;
        if (props_len) {
            if (buf[pos - 1] != 2)
                Py_RETURN_NONE;
            wires++;
            if (props_len > longest)
                longest = (Py_ssize_t)props_len;
        }
        count++;
    }
    if (!count)
        Py_RETURN_NONE;
    if (!wires)
        return PyLong_FromSsize_t(count);

    /* the refused names that can match (bytes members), once */
    Py_ssize_t nrefused = 0, cap = PySet_GET_SIZE(refused);
    span *refused_names = PyMem_Malloc(sizeof(span) * (size_t)(cap + 1));
    span *names = PyMem_Malloc(sizeof(span) * (size_t)(longest / 4 + 1));
    PyObject *iter = NULL, *result = NULL;
    if (refused_names == NULL || names == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    iter = PyObject_GetIter(refused);
    if (iter == NULL)
        goto done;
    PyObject *item;
    while ((item = PyIter_Next(iter)) != NULL) {
        /* the set holds a reference for as long as this call runs (nothing here can change it) */
        if (PyBytes_Check(item) && nrefused < cap) {
            refused_names[nrefused].p = (const unsigned char *)PyBytes_AS_STRING(item);
            refused_names[nrefused].n = PyBytes_GET_SIZE(item);
            nrefused++;
        }
        Py_DECREF(item);
    }
    if (PyErr_Occurred())
        goto done;

    /* pass 2: each property string is plain, UTF-8, with distinct names none of them refused */
    pos = 0;
    while (pos < end) {
        Py_ssize_t total = (Py_ssize_t)mq_i32(buf + pos), body_len = (Py_ssize_t)mq_i32(buf + pos + 16);
        Py_ssize_t props_len = total - ITEM_FIXED - body_len;
        const unsigned char *wire = buf + pos + 22 + body_len;
        pos += total;
        if (!props_len)
            continue;
        Py_ssize_t k = split_plain(wire, props_len, names);
        if (k < 0)
            goto none;
        int ok = is_utf8(wire, props_len);
        if (ok < 0)
            goto done;
        if (!ok)
            goto none;
        for (Py_ssize_t j = 0; j < k; j++)
            for (Py_ssize_t r = 0; r < nrefused; r++)
                if (names[j].n == refused_names[r].n && memcmp(names[j].p, refused_names[r].p, (size_t)names[j].n) == 0)
                    goto none;
        if (!names_distinct(names, k))
            goto none;
    }
    result = PyLong_FromSsize_t(count);
    goto done;
none:
    Py_INCREF(Py_None);
    result = Py_None;
done:
    Py_XDECREF(iter);
    PyMem_Free(refused_names);
    PyMem_Free(names);
    return result;
}

/* restamp.restamp_inner_batch's property work (restamp.py is the reference): the record's
 * property string must read back as written (name\x01value\x02 segments, the name non-empty without
 * a separator, the value non-empty without \x02, distinct names, UTF-8, ended by \x02), INNER_NUM
 * must be int() of 1..32767; INNER_BASE's value becomes str(queue_offset) in place (or the segment
 * is added last); TOTALSIZE, QUEUEOFFSET and PROPERTIESLENGTH are rewritten. None where the Python
 * code returns None. The caller (restamp.py) checked props_at >= 30 and 0 <= queue_offset < 2**63. */
static PyObject *restamp_inner_batch(PyObject *self, PyObject *args) {
    Py_buffer view;
    long long queue_offset;
    Py_ssize_t props_at, props_len;
    if (!PyArg_ParseTuple(args, "y*Lnn", &view, &queue_offset, &props_at, &props_len))
        return NULL;
    PyObject *result = NULL;
    span *names = NULL;
    const unsigned char *rec = view.buf;
    Py_ssize_t len = view.len;
    if (props_at < 30 || queue_offset < 0 || props_at > len) {
        PyErr_SetString(PyExc_ValueError, "restamp_inner_batch: props_at below 30, beyond the record, or a negative queue offset");
        goto done;
    }
    if (props_len < 0 || props_at + props_len != len || props_len == 0)
        goto none;          /* no properties: no INNER_NUM */
    const unsigned char *wire = rec + props_at;
    if (wire[props_len - 1] != 2)
        goto none;
    names = PyMem_Malloc(sizeof(span) * (size_t)(props_len / 4 + 1));
    if (names == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t k = 0, i = 0, num_at = -1, num_len = 0, base_at = -1, base_len = 0;
    while (i < props_len) {
        const unsigned char *seg = wire + i;
        const unsigned char *stop = memchr(seg, 2, (size_t)(props_len - i));   /* found: the string ends with \x02 */
        Py_ssize_t seg_len = stop - seg;
        const unsigned char *sep = memchr(seg, 1, (size_t)seg_len);
        if (sep == NULL || sep == seg || sep - seg >= seg_len - 1)
            goto none;      /* decode_properties drops this segment: not written back as it is */
        Py_ssize_t name_len = sep - seg, value_at = i + name_len + 1, value_len = seg_len - name_len - 1;
        names[k].p = seg;
        names[k].n = name_len;
        k++;
        if (name_len == 9 && memcmp(seg, "INNER_NUM", 9) == 0) {
            num_at = value_at;
            num_len = value_len;
        } else if (name_len == 10 && memcmp(seg, "INNER_BASE", 10) == 0) {
            base_at = value_at;
            base_len = value_len;
        }
        i += seg_len + 1;
    }
    int ok = is_utf8(wire, props_len);
    if (ok < 0)
        goto done;
    if (!ok || !names_distinct(names, k) || num_at < 0)
        goto none;
    /* INNER_NUM as int() reads it (spaces, signs, underscores and non-ASCII digits included) */
    PyObject *num_text = PyUnicode_DecodeUTF8((const char *)wire + num_at, num_len, "strict");
    if (num_text == NULL)
        goto done;
    PyObject *num = PyLong_FromUnicodeObject(num_text, 10);
    Py_DECREF(num_text);
    if (num == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_ValueError))
            goto done;
        PyErr_Clear();
        goto none;
    }
    int overflow = 0;
    long long inner_num = PyLong_AsLongLongAndOverflow(num, &overflow);
    Py_DECREF(num);
    if (overflow || inner_num <= 0 || inner_num > INNER_NUM_MAX)
        goto none;
    char base[24];
    Py_ssize_t new_base_len = snprintf(base, sizeof base, "%lld", queue_offset);
    Py_ssize_t new_props_len = base_at >= 0 ? props_len - base_len + new_base_len : props_len + 12 + new_base_len;
    if (new_props_len > PROPERTIES_MAX)
        goto none;
    Py_ssize_t head_len = props_at - 2, out_len = props_at + new_props_len;
    PyObject *out = PyBytes_FromStringAndSize(NULL, out_len);
    if (out == NULL)
        goto done;
    unsigned char *o = (unsigned char *)PyBytes_AS_STRING(out);
    memcpy(o, rec, (size_t)head_len);
    mq_put32(o, (uint32_t)out_len);                  /* TOTALSIZE */
    mq_put64(o + 20, (uint64_t)queue_offset);        /* QUEUEOFFSET */
    mq_put16(o + head_len, (uint32_t)new_props_len); /* PROPERTIESLENGTH */
    unsigned char *w = o + props_at;
    if (base_at >= 0) {
        memcpy(w, wire, (size_t)base_at);
        memcpy(w + base_at, base, (size_t)new_base_len);
        memcpy(w + base_at + new_base_len, wire + base_at + base_len, (size_t)(props_len - base_at - base_len));
    } else {
        memcpy(w, wire, (size_t)props_len);
        memcpy(w + props_len, "INNER_BASE\x01", 11);
        memcpy(w + props_len + 11, base, (size_t)new_base_len);
        w[props_len + 11 + new_base_len] = 2;
    }
    result = Py_BuildValue("(Nn)", out, (Py_ssize_t)inner_num);
    goto done;
none:
    Py_INCREF(Py_None);
    result = Py_None;
done:
    PyMem_Free(names);
    PyBuffer_Release(&view);
    return result;
}

/* batch.decode_batch for the usual body: every item framed as decode_batch requires and each
 * property string plain (split_plain: name\x01value\x02 segments, neither holding a separator),
 * UTF-8, with distinct names. Returns the list of item_class(body, properties, flag, wire) that
 * decode_batch returns, or None for any other body (damaged, over items_max, or a property string
 * decode_properties reads by its other rules): batch.py then decodes it, which names the damage.
 * items_max: an int, or None for no bound. */
static PyObject *decode_batch_plain(PyObject *self, PyObject *args) {
    PyObject *body, *items_max_obj, *item_class;
    if (!PyArg_ParseTuple(args, "OOO", &body, &items_max_obj, &item_class))
        return NULL;
    if (!PyBytes_Check(body))
        Py_RETURN_NONE;
    const unsigned char *buf = (const unsigned char *)PyBytes_AS_STRING(body);
    Py_ssize_t end = PyBytes_GET_SIZE(body);
    long long limit = end;
    if (items_max_obj != Py_None && clamp_ll(items_max_obj, LLONG_MIN, LLONG_MAX, &limit) < 0)
        return NULL;
    PyObject *items = PyList_New(0);
    span *names = PyMem_Malloc(sizeof(span) * (PROPERTIES_MAX / 4 + 1));
    if (items == NULL || names == NULL) {
        Py_XDECREF(items);
        PyMem_Free(names);
        return PyErr_NoMemory();
    }
    Py_ssize_t pos = 0, count = 0;
    while (pos < end) {
        if (count >= limit || end - pos < ITEM_FIXED)
            goto none;
        const unsigned char *h = buf + pos;
        int64_t total = mq_i32(h), flag = mq_i32(h + 12), body_len = mq_i32(h + 16);
        if (body_len < 0 || total < ITEM_FIXED + body_len || total > (int64_t)(end - pos))
            goto none;
        Py_ssize_t props_at = pos + 20 + (Py_ssize_t)body_len;
        int64_t props_len = mq_i16(buf + props_at);
        if (props_len < 0 || ITEM_FIXED + body_len + props_len != total)
            goto none;
        const unsigned char *wire = buf + props_at + 2;
        PyObject *props = PyDict_New();
        if (props == NULL)
            goto fail;
        if (props_len) {
            Py_ssize_t k = split_plain(wire, (Py_ssize_t)props_len, names);
            int ok = k < 0 ? 0 : is_utf8(wire, (Py_ssize_t)props_len);
            if (ok > 0)
                ok = names_distinct(names, k);      /* may reorder names: the wire is walked again below */
            if (ok <= 0) {
                Py_DECREF(props);
                if (ok < 0)
                    goto fail;
                goto none;
            }
            /* each segment again, in order: name and value as str */
            Py_ssize_t i = 0;
            while (i < props_len) {
                Py_ssize_t n0 = i;
                while (wire[i] != 1)
                    i++;
                Py_ssize_t v0 = ++i;
                while (wire[i] != 2)
                    i++;
                PyObject *name = PyUnicode_DecodeUTF8((const char *)wire + n0, v0 - 1 - n0, "strict");
                PyObject *value = name == NULL ? NULL : PyUnicode_DecodeUTF8((const char *)wire + v0, i - v0, "strict");
                int bad = value == NULL || PyDict_SetItem(props, name, value) < 0;
                Py_XDECREF(name);
                Py_XDECREF(value);
                if (bad) {
                    Py_DECREF(props);
                    goto fail;
                }
                i++;
            }
        }
        PyObject *item_body = PyBytes_FromStringAndSize((const char *)buf + pos + 20, (Py_ssize_t)body_len);
        PyObject *item_wire = PyBytes_FromStringAndSize((const char *)wire, (Py_ssize_t)props_len);
        PyObject *flag_obj = PyLong_FromLongLong(flag);
        PyObject *item = NULL;
        if (item_body != NULL && item_wire != NULL && flag_obj != NULL)
            item = PyObject_CallFunctionObjArgs(item_class, item_body, props, flag_obj, item_wire, NULL);
        Py_XDECREF(item_body);
        Py_XDECREF(item_wire);
        Py_XDECREF(flag_obj);
        Py_DECREF(props);
        if (item == NULL)
            goto fail;
        int appended = PyList_Append(items, item);
        Py_DECREF(item);
        if (appended < 0)
            goto fail;
        pos += (Py_ssize_t)total;
        count++;
    }
    PyMem_Free(names);
    return items;
none:
    PyMem_Free(names);
    Py_DECREF(items);
    Py_RETURN_NONE;
fail:
    PyMem_Free(names);
    Py_DECREF(items);
    return NULL;
}

static PyMethodDef methods[] = {
    {"decode_batch_plain", decode_batch_plain, METH_VARARGS,
     "batch.decode_batch(body, items_max=items_max) for the usual body (else None), items built by item_class."},
    {"restamp_inner_batch", restamp_inner_batch, METH_VARARGS,
     "restamp.restamp_inner_batch(record, queue_offset) in C, given the properties' start and length."},
    {"canonical_batch_count", canonical_batch_count, METH_VARARGS,
     "batch.canonical_batch_count(body, items_max, names_refused, properties_bytes_max) in C."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_batch", "Inner-batch loops in C (see batch.py).", -1,
                                    methods};

PyMODINIT_FUNC PyInit__batch(void) { return PyModule_Create(&module); }
