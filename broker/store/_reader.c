/* mqbench.broker.store._reader: a pull's read of records held in the commitlog's tail cache, in C.
 *
 * broker/store/reader.py's read_queue_records is the reference and the contract: for a ConsumeQueue
 * pull without a tag filter, pull_from_tail returns exactly the (body, count, next_offset) its loop
 * returns, or None wherever that loop would do anything else than take whole records that the tail
 * cache holds (a filler or end unit, a record not held or split by the ring's edge, a record that
 * is not the unit's): the Python loop then reads the same units and answers or raises as before. Everything is untrusted for memory access: the held range is checked
 * against the ring, every unit's record against the held range, every field against its record.
 * The GIL is held throughout, so no writer changes the ring during the call.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "mq_bytes.h"
#include <stdint.h>
#include <string.h>

#define CQ_UNIT 20
#define MAGIC_V1 ((int32_t)0xDAA320A7)
#define MAGIC_V2 ((int32_t)0xDAA320AB)
#define BODY_LEN_AT_IPV4 84
#define HOST_V6_EXTRA 12
#define SYSFLAG_BORNHOST_V6 0x10
#define SYSFLAG_STOREHOST_V6 0x20
#define TOPIC_V1_MAX 127

/* record_peek.is_record_of on the record at p of size bytes: 1 when it is the record of topic,
 * queue_id at queue_offset, else 0. */
static int record_of(const unsigned char *p, int64_t size, const unsigned char *topic, Py_ssize_t topic_len,
                     int32_t queue_id, int64_t queue_offset) {
    if (size < BODY_LEN_AT_IPV4 + 4)
        return 0;
    int32_t magic = mq_i32(p + 4);
    if (mq_i32(p) != size || mq_i32(p + 12) != queue_id || mq_i64(p + 20) != queue_offset
            || (magic != MAGIC_V1 && magic != MAGIC_V2))
        return 0;
    int32_t sysflag = mq_i32(p + 36);
    int64_t at = BODY_LEN_AT_IPV4;
    if (sysflag & SYSFLAG_BORNHOST_V6)
        at += HOST_V6_EXTRA;
    if (sysflag & SYSFLAG_STOREHOST_V6)
        at += HOST_V6_EXTRA;
    if (at + 4 > size)
        return 0;
    int32_t body_len = mq_i32(p + at);
    if (body_len < 0)
        return 0;
    at += 4 + (int64_t)body_len;
    if (magic == MAGIC_V1) {
        if (at + 1 > size || p[at] != topic_len || topic_len > TOPIC_V1_MAX)
            return 0;
        at += 1;
    } else {
        if (at + 2 > size || mq_i16(p + at) != topic_len)
            return 0;
        at += 2;
    }
    return at + topic_len <= size && memcmp(p + at, topic, (size_t)topic_len) == 0;
}

/* pull_from_tail(ring, start, end, units, first_offset, topic, queue_id, max_bytes)
 *   -> (body, count, next_offset) | None
 * ring: the tail cache's buffer (byte x of the log at x % len(ring)), holding [start, end); units:
 * the consume-queue units of first_offset on, back to back (20 bytes each). */
static PyObject *pull_from_tail(PyObject *mod, PyObject *args) {
    Py_buffer ring_b = {0}, units_b = {0}, topic_b = {0};
    long long start, end, first_offset, max_bytes;
    int queue_id;
    if (!PyArg_ParseTuple(args, "y*LLy*Ly*iL:pull_from_tail", &ring_b, &start, &end, &units_b, &first_offset,
                          &topic_b, &queue_id, &max_bytes))
        return NULL;
    PyObject *result = NULL;
    const Py_ssize_t cap = ring_b.len;
    const Py_ssize_t n = units_b.len / CQ_UNIT;
    if (cap <= 0 || start < 0 || end < start || end - start > cap || n <= 0 || units_b.len % CQ_UNIT) {
        result = Py_None;
        Py_INCREF(result);
        goto done;
    }
    const unsigned char *ring = (const unsigned char *)ring_b.buf;
    const unsigned char *units = (const unsigned char *)units_b.buf;
    const unsigned char *topic = (const unsigned char *)topic_b.buf;
    /* first pass: which units are taken, all checked; the second copies them */
    long long used = 0;
    Py_ssize_t count = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        const unsigned char *u = units + i * CQ_UNIT;
        int64_t phys = mq_i64(u);
        int32_t size = mq_i32(u + 8);
        if (phys <= 0 || size <= 0)
            goto fallback;                               /* a filler or damage: the Python loop */
        if (count && used + size > max_bytes)
            break;
        if (phys < start || phys > end - size)
            goto fallback;                               /* not held: read from the files */
        int64_t at = phys % cap;
        if (at + size > cap)
            goto fallback;                               /* split by the ring's edge */
        if (!record_of(ring + at, size, topic, topic_b.len, queue_id, first_offset + i))
            goto fallback;                               /* the Python check names what is wrong */
        used += size;
        count++;
    }
    PyObject *body = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)used);
    if (body == NULL)
        goto done;
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(body);
    for (Py_ssize_t i = 0; i < count; i++) {
        const unsigned char *u = units + i * CQ_UNIT;
        int32_t size = mq_i32(u + 8);
        memcpy(out, ring + mq_i64(u) % cap, (size_t)size);
        out += size;
    }
    result = Py_BuildValue("(NnL)", body, count, first_offset + (long long)count);
    goto done;
fallback:
    result = Py_None;
    Py_INCREF(result);
done:
    PyBuffer_Release(&ring_b);
    PyBuffer_Release(&units_b);
    PyBuffer_Release(&topic_b);
    return result;
}

static PyMethodDef methods[] = {
    {"pull_from_tail", pull_from_tail, METH_VARARGS,
     "read_queue_records' loop over records held in the tail cache (no tag filter), or None."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_reader", NULL, -1, methods};

PyMODINIT_FUNC PyInit__reader(void) { return PyModule_Create(&module); }
