/* migrate/_scan.c's topics of a window (included by _scan.c only, after its #includes): which topic
 * names take the fast path, the index-key hash prefix of each, and the table that gives each topic
 * of a window its id in first-seen order (Summary.topics). Static, one copy in the one file that
 * includes it. */
#ifndef MQ_SCAN_TOPICS_H
#define MQ_SCAN_TOPICS_H

static const char *SPECIAL_TOPICS[] = {"RMQ_SYS_TRANS_HALF_TOPIC", "SCHEDULE_TOPIC_XXXX", "rmq_sys_wheel_timer"};

/* tags.java_hash_ascii (unsigned), continued from h */
static inline uint32_t jhash(uint32_t h, const unsigned char *p, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++)
        h = h * 31u + p[i];
    return h;
}

/* record_check's TopicValidator set [%|a-zA-Z0-9_-]+ (any topic a broker writes) */
static int topic_chars(const unsigned char *t, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = t[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '%' || c == '|' ||
              c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

/* topic_chars and not a delay, timer or half topic */
static int topic_fast(const unsigned char *t, Py_ssize_t n) {
    if (!topic_chars(t, n))
        return 0;
    for (size_t k = 0; k < sizeof SPECIAL_TOPICS / sizeof SPECIAL_TOPICS[0]; k++)
        if ((size_t)n == strlen(SPECIAL_TOPICS[k]) && memcmp(t, SPECIAL_TOPICS[k], (size_t)n) == 0)
            return 0;
    return 1;
}

/* ---- the window's topics: an open-addressing table keyed by the topic's bytes in the window ---- */

typedef struct {
    Py_ssize_t at;      /* where the topic's bytes are in the window; -1: empty slot */
    Py_ssize_t len;
    Py_ssize_t tid;
    uint32_t prefix;    /* java_hash_ascii(topic + "#") */
    int fast;
    int chars;          /* topic_chars: what a relaxed summarize asks */
    uint64_t hash;
} topic_slot;

typedef struct {
    topic_slot *slots;
    size_t cap, used;
    PyObject *list;     /* Summary.topics */
} topic_table;

static uint64_t fnv(const unsigned char *p, Py_ssize_t n) {
    uint64_t h = 1469598103934665603ull;
    for (Py_ssize_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

static int table_init(topic_table *t) {
    t->cap = 64;
    t->used = 0;
    t->slots = PyMem_Malloc(t->cap * sizeof(topic_slot));
    if (!t->slots) {
        PyErr_NoMemory();
        return -1;
    }
    for (size_t i = 0; i < t->cap; i++)
        t->slots[i].at = -1;
    t->list = PyList_New(0);
    return t->list ? 0 : -1;
}

static void table_free(topic_table *t) {
    PyMem_Free(t->slots);
    Py_XDECREF(t->list);
}

static int table_grow(topic_table *t) {
    size_t cap = t->cap * 2;
    topic_slot *slots = PyMem_Malloc(cap * sizeof(topic_slot));
    if (!slots) {
        PyErr_NoMemory();
        return -1;
    }
    for (size_t i = 0; i < cap; i++)
        slots[i].at = -1;
    for (size_t i = 0; i < t->cap; i++) {
        if (t->slots[i].at < 0)
            continue;
        size_t j = (size_t)t->slots[i].hash & (cap - 1);
        while (slots[j].at >= 0)
            j = (j + 1) & (cap - 1);
        slots[j] = t->slots[i];
    }
    PyMem_Free(t->slots);
    t->slots = slots;
    t->cap = cap;
    return 0;
}

/* The entry of the topic at buf[at:at+len] (added, in first-seen order, when new); NULL on error. */
static topic_slot *table_get(topic_table *t, const unsigned char *buf, Py_ssize_t at, Py_ssize_t len) {
    uint64_t h = fnv(buf + at, len);
    size_t j = (size_t)h & (t->cap - 1);
    while (t->slots[j].at >= 0) {
        topic_slot *s = &t->slots[j];
        if (s->hash == h && s->len == len && memcmp(buf + s->at, buf + at, (size_t)len) == 0)
            return s;
        j = (j + 1) & (t->cap - 1);
    }
    PyObject *topic = PyBytes_FromStringAndSize((const char *)buf + at, len);
    if (!topic)
        return NULL;
    int failed = PyList_Append(t->list, topic);
    Py_DECREF(topic);
    if (failed)
        return NULL;
    topic_slot *s = &t->slots[j];
    s->at = at;
    s->len = len;
    s->tid = PyList_GET_SIZE(t->list) - 1;
    s->prefix = jhash(jhash(0, buf + at, len), (const unsigned char *)"#", 1);
    s->fast = topic_fast(buf + at, len);
    s->chars = topic_chars(buf + at, len);
    s->hash = h;
    t->used++;
    if (t->used * 2 > t->cap) {
        if (table_grow(t) < 0)
            return NULL;
        return table_get(t, buf, at, len);      /* found again at its new slot */
    }
    return s;
}

#endif
