/* Big-endian field reads and writes (the byte order of every RocketMQ and DLedger field), appending
 * to a bytearray, and module set-up helpers: one home for what every accelerator needs (include
 * "mq_bytes.h" after <Python.h>; setup.py puts broker/formats on every accelerator's include path).
 *
 * Contract: mq_u16/u32/u64 read 2/4/8 bytes at p as an unsigned big-endian number and mq_i16/i32/i64
 * the same bits as a two's-complement signed one (Java's short/int/long); mq_put16/32/64 write the
 * low 16/32/64 bits of v big-endian. The caller has checked that the bytes are inside its buffer. */
#ifndef MQ_BYTES_H
#define MQ_BYTES_H

#include <stdint.h>

static inline uint16_t mq_u16(const unsigned char *p) { return (uint16_t)(((unsigned)p[0] << 8) | p[1]); }

static inline uint32_t mq_u32(const unsigned char *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static inline uint64_t mq_u64(const unsigned char *p) { return ((uint64_t)mq_u32(p) << 32) | mq_u32(p + 4); }

static inline int16_t mq_i16(const unsigned char *p) { return (int16_t)mq_u16(p); }
static inline int32_t mq_i32(const unsigned char *p) { return (int32_t)mq_u32(p); }
static inline int64_t mq_i64(const unsigned char *p) { return (int64_t)mq_u64(p); }

static inline void mq_put16(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 8);
    p[1] = (unsigned char)v;
}

static inline void mq_put32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static inline void mq_put64(unsigned char *p, uint64_t v) {
    mq_put32(p, (uint32_t)(v >> 32));
    mq_put32(p + 4, (uint32_t)v);
}

#ifdef Py_PYTHON_H
/* Room for n more bytes at the end of the bytearray ba; returns where they go (NULL: error set).
 * PyByteArray_Resize grows by 1/8 at a time (a copy each time, about 8 copies of a large buffer in
 * all), so the allocation is doubled instead (a resize past 1/8 more allocates exactly, and a
 * resize back down to more than half of it keeps the allocation). */
static inline unsigned char *mq_grow(PyObject *ba, Py_ssize_t n) {
    Py_ssize_t len = PyByteArray_GET_SIZE(ba);
    if (len + n + 1 > ((PyByteArrayObject *)ba)->ob_alloc && len + n < 2 * len
            && PyByteArray_Resize(ba, 2 * len) < 0)
        return NULL;
    if (PyByteArray_Resize(ba, len + n) < 0)
        return NULL;
    return (unsigned char *)PyByteArray_AS_STRING(ba) + len;
}

/* module.name (a new reference), e.g. mq_import_attr("struct", "error"); NULL with the error set */
static inline PyObject *mq_import_attr(const char *module, const char *name) {
    PyObject *mod = PyImport_ImportModule(module);
    if (mod == NULL)
        return NULL;
    PyObject *attr = PyObject_GetAttrString(mod, name);
    Py_DECREF(mod);
    return attr;
}
#endif

#endif
