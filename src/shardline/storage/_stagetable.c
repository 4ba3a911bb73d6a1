/* Staged records of a group of shard logs, compiled: staging.PyStageTable without a Python object per shard.
 *
 * staging.py holds the reference implementation and the contract; tests/storage/test_stagetable.py runs both on
 * random sequences of calls and compares every observable result. Here each slot is one C struct (offsets, arrival
 * times, a growing buffer of the staged records' segment encoding), all slots in one array: staging a record reads
 * and writes its slot's struct and the end of its buffer, and nothing else of its shard. With 1,000 shards the
 * structs take 56 KB, which the CPU caches hold, where the Python objects of 1,000 lists and their integers did not.
 *
 * Record layout (big-endian), see framing.py: offset delta u32, arrival delta u32, pk len u16, ehk len u8,
 * data len u32, then partition key, explicit hash key, data. A journal record puts shard index u32 and offset u64
 * before it (journal.py).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

/* The frame layout of framing.py (and journal_scan.py for ID_SIZE), which defines it; the module exports these and
 * tests/storage/test_layout.py checks them against the Python definitions. */
#define REC_SIZE 15
#define ID_SIZE 12
#define FRAME_HEADER 37 /* framing.py: base u64, len u32, magic u8, crc u32, count u32, first u64, newest u64 */
#define FRAME_MAGIC 1
#define LEN_PREFIX 12
#define CRC_AT 13
#define CRC_START 17

/* zlib's shared library, by the name the platform gives it: the CRC below calls its crc32 when it is loaded. Where
 * the name is not known (or dlopen finds no such library) the built-in CRC runs, with the same results. */
#if defined(__linux__)
#define ZLIB_SONAME "libz.so.1"
#elif defined(__APPLE__)
#define ZLIB_SONAME "libz.1.dylib"
#endif
#ifdef ZLIB_SONAME
#include <dlfcn.h>
#endif

/* The CRC-32 framing.py computes (zlib.crc32), callable without the GIL: zlib's crc32 from the library the zlib
 * module loads, found at import, else a table-driven one (slicing by 8, about two thirds of zlib's speed). */
typedef unsigned long (*crc32_fn)(unsigned long, const unsigned char *, unsigned int);
static crc32_fn system_crc32 = NULL;
static uint32_t crc_table[8][256];

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) {
            c = c & 1 ? (c >> 1) ^ 0xEDB88320u : c >> 1;
        }
        crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++) {
        for (int t = 1; t < 8; t++) {
            crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xFF];
        }
    }
#ifdef ZLIB_SONAME
    void *lib = dlopen(ZLIB_SONAME, RTLD_NOW | RTLD_NOLOAD);
    if (lib == NULL) {
        lib = dlopen(ZLIB_SONAME, RTLD_NOW);
    }
    if (lib != NULL) {
        system_crc32 = (crc32_fn)dlsym(lib, "crc32"); /* (the handle is kept: the library stays loaded) */
    }
#endif
}

static uint32_t crc_builtin(uint32_t c, const unsigned char *p, size_t n) {
    c = ~c;
    for (; n && ((uintptr_t)p & 7); n--) {
        c = (c >> 8) ^ crc_table[0][(c ^ *p++) & 0xFF];
    }
    for (; n >= 8; n -= 8, p += 8) {
        uint32_t lo = ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24) ^ c;
        uint32_t hi = (uint32_t)p[4] | (uint32_t)p[5] << 8 | (uint32_t)p[6] << 16 | (uint32_t)p[7] << 24;
        c = crc_table[7][lo & 0xFF] ^ crc_table[6][(lo >> 8) & 0xFF] ^ crc_table[5][(lo >> 16) & 0xFF] ^
            crc_table[4][lo >> 24] ^ crc_table[3][hi & 0xFF] ^ crc_table[2][(hi >> 8) & 0xFF] ^
            crc_table[1][(hi >> 16) & 0xFF] ^ crc_table[0][hi >> 24];
    }
    for (; n; n--) {
        c = (c >> 8) ^ crc_table[0][(c ^ *p++) & 0xFF];
    }
    return ~c;
}

static uint32_t crc_any(uint32_t c, const unsigned char *p, size_t n) {
    if (system_crc32 == NULL) {
        return crc_builtin(c, p, n);
    }
    while (n > 0) {
        unsigned int k = n > (1u << 30) ? (1u << 30) : (unsigned int)n;
        c = (uint32_t)system_crc32(c, p, k);
        p += k;
        n -= k;
    }
    return c;
}
/* An emptied buffer is kept for the slot's next batch (no regrowing it record by record) when it holds at most
 * KEEP_BYTES and the table's kept buffers stay within IDLE_BUDGET; otherwise it is freed. So a table holds at most
 * IDLE_BUDGET of memory beyond its staged records, however many shards it has. */
#define KEEP_BYTES (256 * 1024)
#define IDLE_BUDGET (32 * 1024 * 1024)
#define NAME_MAX_LEN 21 /* a shard id has 20 characters */
#define ID_DIGITS 41    /* digits of an id base: a sequence number prefix has 41 */

typedef struct {
    /* what staging a record reads and writes: one cache line */
    long long base;      /* offset of the first staged record (with none staged, the next offset) */
    long long first;     /* arrival ms of the first staged record (-1: none yet) */
    long long newest;    /* newest arrival ms among them */
    char *buf;           /* the staged records, back to back */
    Py_ssize_t len, cap, count;
    long long put_bytes; /* key + data bytes of every record staged here (records taken back not counted) */
    /* the names of its records' results (StageTable.name): the slot's name, and id base + offset in decimal;
     * one more cache line (slots are 128 bytes, aligned to 64) */
    unsigned char name_len, ndigits;
    char name[NAME_MAX_LEN];
    char digits[ID_DIGITS];
} Slot;

_Static_assert(sizeof(Slot) == 128, "a slot is two cache lines");

#define EMPTY_SLOT                                                                                                     \
    (Slot) { .base = 0, .first = -1, .newest = -1, .buf = NULL, .len = 0, .cap = 0, .count = 0, .put_bytes = 0,    \
             .name_len = 0, .ndigits = 0 }

typedef struct {
    PyObject_HEAD
    Slot *slots;
    Py_ssize_t n, allocated; /* slots in use, slots allocated */
    Py_ssize_t full_at;
    Py_ssize_t idle;      /* bytes of the buffers kept by slots with no records */
    Py_ssize_t view_slot; /* the slot a buffer request exports (set only inside view()) */
    Py_ssize_t exports;   /* views of a slot's records still held: no buffer may move meanwhile */
    PyTypeObject *entry;  /* the NamedTuple of a staged record's result (None: no results) */
    Py_ssize_t entry_fields;
} StageTable;

static char empty[1] = {0};

/* Whether the slots' buffers may change (no view of one is held). */
static int unlocked(StageTable *self) {
    if (self->exports > 0) {
        PyErr_SetString(PyExc_BufferError, "a view of staged records is still held");
        return 0;
    }
    return 1;
}

static inline void put32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static inline void put64(unsigned char *p, unsigned long long v) {
    put32(p, (uint32_t)(v >> 32));
    put32(p + 4, (uint32_t)v);
}

static inline uint32_t get32(const unsigned char *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

/* Bytes of the record that starts at p (header included). The buffer only ever holds whole records. */
static inline Py_ssize_t rec_len(const unsigned char *p) {
    return REC_SIZE + (Py_ssize_t)(((uint32_t)p[8] << 8) | p[9]) + (Py_ssize_t)p[10] + (Py_ssize_t)get32(p + 11);
}

/* Byte position of record k of the slot (k <= count). */
static Py_ssize_t rec_pos(const Slot *s, Py_ssize_t k) {
    Py_ssize_t p = 0;
    for (Py_ssize_t i = 0; i < k; i++) {
        p += rec_len((const unsigned char *)s->buf + p);
    }
    return p;
}

/* The slot's records are all gone: keep its buffer for the next batch (counted in idle) or free it. Invariant: a
 * slot with no records and a buffer is counted in self->idle. */
static void settle(StageTable *self, Slot *s) {
    s->len = 0;
    s->count = 0;
    if (s->buf != NULL && s->cap <= KEEP_BYTES && self->idle + s->cap <= IDLE_BUDGET) {
        self->idle += s->cap;
    } else {
        PyMem_Free(s->buf);
        s->buf = NULL;
        s->cap = 0;
    }
}

/* A slot with no records is about to get one: its kept buffer is in use again. */
static void wake(StageTable *self, Slot *s) {
    if (s->count == 0 && s->buf != NULL) {
        self->idle -= s->cap;
    }
}

static int reserve(StageTable *self, Slot *s, Py_ssize_t more) {
    if (s->cap - s->len >= more) {
        return 0;
    }
    if (!unlocked(self)) {
        return -1;
    }
    Py_ssize_t cap = s->cap ? s->cap : 1024;
    while (cap - s->len < more) {
        if (cap > PY_SSIZE_T_MAX / 2) {
            PyErr_NoMemory();
            return -1;
        }
        cap *= 2;
    }
    char *buf = PyMem_Realloc(s->buf, (size_t)cap);
    if (buf == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    s->buf = buf;
    s->cap = cap;
    return 0;
}

static Slot *slot_of(StageTable *self, PyObject *arg, Py_ssize_t *index) {
    Py_ssize_t i = PyNumber_AsSsize_t(arg, PyExc_IndexError);
    if (i == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (i < 0 || i >= self->n) {
        PyErr_Format(PyExc_IndexError, "stage slot %zd out of range", i);
        return NULL;
    }
    if (index != NULL) {
        *index = i;
    }
    return &self->slots[i];
}

static int parse_slot_ll(StageTable *self, PyObject *args, const char *fmt, Slot **s, long long *v) {
    PyObject *slot;
    if (!PyArg_ParseTuple(args, fmt, &slot, v)) {
        return -1;
    }
    *s = slot_of(self, slot, NULL);
    return *s == NULL ? -1 : 0;
}

/* ----------------------------------------------------------------------------- type basics */
/* The number of fields of a NamedTuple type (a tuple subclass with no instance fields), or -1 with an error. */
static Py_ssize_t namedtuple_fields(PyObject *cls) {
    if (!PyType_Check(cls) || !PyType_IsSubtype((PyTypeObject *)cls, &PyTuple_Type) ||
        ((PyTypeObject *)cls)->tp_basicsize != PyTuple_Type.tp_basicsize) {
        PyErr_SetString(PyExc_TypeError, "entry must be a NamedTuple type");
        return -1;
    }
    PyObject *names = PyObject_GetAttrString(cls, "_fields");
    if (names == NULL) {
        return -1;
    }
    Py_ssize_t n = PyTuple_Check(names) ? PyTuple_GET_SIZE(names) : -1;
    Py_DECREF(names);
    if (n < 2) {
        PyErr_SetString(PyExc_TypeError, "entry must have at least two fields (name, record id)");
        return -1;
    }
    return n;
}

static PyObject *st_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"full_at", "entry", NULL};
    Py_ssize_t full_at, fields = 0;
    PyObject *entry = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "n|O:StageTable", kwlist, &full_at, &entry)) {
        return NULL;
    }
    if (full_at < 1) {
        PyErr_SetString(PyExc_ValueError, "full_at must be at least 1");
        return NULL;
    }
    if (entry != Py_None && (fields = namedtuple_fields(entry)) < 0) {
        return NULL;
    }
    StageTable *self = (StageTable *)type->tp_alloc(type, 0);
    if (self != NULL) {
        self->slots = NULL;
        self->n = self->allocated = 0;
        self->idle = 0;
        self->full_at = full_at;
        self->view_slot = -1;
        self->exports = 0;
        self->entry = entry == Py_None ? NULL : (PyTypeObject *)Py_NewRef(entry);
        self->entry_fields = fields;
    }
    return (PyObject *)self;
}

static void st_dealloc(StageTable *self) {
    for (Py_ssize_t i = 0; i < self->n; i++) {
        PyMem_Free(self->slots[i].buf);
    }
    free(self->slots);
    Py_XDECREF(self->entry);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static Py_ssize_t st_len(StageTable *self) { return self->n; }

static PyObject *st_grow(StageTable *self, PyObject *arg) {
    Py_ssize_t n = PyNumber_AsSsize_t(arg, PyExc_OverflowError);
    if (n == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (n > self->allocated) { /* (slots are added one by one as shards open: grow geometrically) */
        Py_ssize_t allocated = self->allocated < 8 ? 8 : self->allocated;
        while (allocated < n) {
            allocated *= 2;
        }
        if ((size_t)allocated > PY_SSIZE_T_MAX / sizeof(Slot)) {
            return PyErr_NoMemory();
        }
        Slot *slots = NULL; /* aligned to cache lines: a record touches two of its slot's, not three */
        if (posix_memalign((void **)&slots, 64, (size_t)allocated * sizeof(Slot)) != 0) {
            return PyErr_NoMemory();
        }
        if (self->n) {
            memcpy(slots, self->slots, (size_t)self->n * sizeof(Slot));
        }
        free(self->slots);
        self->slots = slots;
        self->allocated = allocated;
    }
    for (Py_ssize_t i = self->n; i < n; i++) {
        self->slots[i] = EMPTY_SLOT;
    }
    if (n > self->n) {
        self->n = n;
    }
    Py_RETURN_NONE;
}

static PyObject *st_reset(StageTable *self, PyObject *arg) {
    Slot *s = slot_of(self, arg, NULL);
    if (s == NULL || !unlocked(self)) {
        return NULL;
    }
    wake(self, s); /* (its buffer is freed, not kept) */
    PyMem_Free(s->buf);
    *s = EMPTY_SLOT;
    Py_RETURN_NONE;
}

/* ----------------------------------------------------------------------------- getters and setters */
/* st_<name>(slot): one number of a slot's state, as a Python int. */
#define SLOT_GETTER(name, expr)                                                                                        \
    static PyObject *st_##name(StageTable *self, PyObject *arg) {                                                      \
        Slot *s = slot_of(self, arg, NULL);                                                                            \
        return s == NULL ? NULL : PyLong_FromLongLong((long long)(expr));                                              \
    }

SLOT_GETTER(count, s->count)
SLOT_GETTER(nbytes, s->len)
SLOT_GETTER(base, s->base)
SLOT_GETTER(next_offset, s->base + (long long)s->count)
SLOT_GETTER(first, s->first)
SLOT_GETTER(newest, s->newest)
SLOT_GETTER(put_bytes, s->put_bytes)

static PyObject *st_name(StageTable *self, PyObject *args) {
    PyObject *slot, *name, *id_base;
    if (!PyArg_ParseTuple(args, "OUO!:name", &slot, &name, &PyLong_Type, &id_base)) {
        return NULL;
    }
    Slot *s = slot_of(self, slot, NULL);
    if (s == NULL) {
        return NULL;
    }
    if (!PyUnicode_IS_ASCII(name) || PyUnicode_GET_LENGTH(name) > NAME_MAX_LEN) {
        PyErr_Format(PyExc_ValueError, "a slot's name is ASCII, at most %d characters", NAME_MAX_LEN);
        return NULL;
    }
    PyObject *digits = PyObject_Str(id_base);
    if (digits == NULL) {
        return NULL;
    }
    Py_ssize_t n = PyUnicode_GET_LENGTH(digits);
    if (PyUnicode_READ_CHAR(digits, 0) == '-' || n > ID_DIGITS) {
        Py_DECREF(digits);
        PyErr_Format(PyExc_ValueError, "an id base is a non-negative integer of at most %d digits", ID_DIGITS);
        return NULL;
    }
    s->name_len = (unsigned char)PyUnicode_GET_LENGTH(name);
    memcpy(s->name, PyUnicode_1BYTE_DATA(name), s->name_len);
    s->ndigits = (unsigned char)n;
    memcpy(s->digits, PyUnicode_1BYTE_DATA(digits), (size_t)n);
    Py_DECREF(digits);
    Py_RETURN_NONE;
}

/* The decimal of the slot's id base + off (off >= 0): the base's digits with off added in place. */
static PyObject *record_id(const Slot *s, long long off) {
    char buf[ID_DIGITS + 24];
    Py_ssize_t end = (Py_ssize_t)sizeof(buf), start = end - s->ndigits;
    memcpy(buf + start, s->digits, s->ndigits);
    unsigned long long v = (unsigned long long)off;
    int carry = 0;
    for (Py_ssize_t i = end - 1; v || carry; i--) {
        if (i < start) { /* the sum has more digits than the base */
            buf[i] = '0';
            start = i;
        }
        int d = buf[i] - '0' + (int)(v % 10) + carry;
        v /= 10;
        carry = d >= 10;
        buf[i] = (char)('0' + (carry ? d - 10 : d));
    }
    while (start < end - 1 && buf[start] == '0') { /* (a base of 0) */
        start++;
    }
    PyObject *str = PyUnicode_New(end - start, 127);
    if (str != NULL) {
        memcpy(PyUnicode_1BYTE_DATA(str), buf + start, (size_t)(end - start));
    }
    return str;
}

/* entry(name, record id, None, ...): a result, out of the cyclic GC (its fields are all atomic). */
static PyObject *make_entry(StageTable *self, const Slot *s, long long off) {
    PyObject *name = PyUnicode_New(s->name_len, 127);
    if (name == NULL) {
        return NULL;
    }
    memcpy(PyUnicode_1BYTE_DATA(name), s->name, s->name_len);
    PyObject *id = record_id(s, off);
    if (id == NULL) {
        Py_DECREF(name);
        return NULL;
    }
    PyObject *e = self->entry->tp_alloc(self->entry, self->entry_fields);
    if (e == NULL) {
        Py_DECREF(name);
        Py_DECREF(id);
        return NULL;
    }
    PyTuple_SET_ITEM(e, 0, name);
    PyTuple_SET_ITEM(e, 1, id);
    for (Py_ssize_t k = 2; k < self->entry_fields; k++) {
        PyTuple_SET_ITEM(e, k, Py_NewRef(Py_None));
    }
    PyObject_GC_UnTrack(e);
    return e;
}

static PyObject *st_set_base(StageTable *self, PyObject *args) {
    Slot *s;
    long long v;
    if (parse_slot_ll(self, args, "OL:set_base", &s, &v) < 0) {
        return NULL;
    }
    if (s->count) {
        PyErr_Format(PyExc_ValueError, "stage slot %zd holds records: its base is theirs", (Py_ssize_t)(s - self->slots));
        return NULL;
    }
    if (v < 0) {
        PyErr_Format(PyExc_ValueError, "negative offset %lld", v);
        return NULL;
    }
    s->base = v;
    Py_RETURN_NONE;
}

static PyObject *st_set_newest(StageTable *self, PyObject *args) {
    Slot *s;
    long long v;
    if (parse_slot_ll(self, args, "OL:set_newest", &s, &v) < 0) {
        return NULL;
    }
    s->newest = v;
    Py_RETURN_NONE;
}

/* ----------------------------------------------------------------------------- the records */
static PyObject *st_records(StageTable *self, PyObject *arg) {
    Slot *s = slot_of(self, arg, NULL);
    if (s == NULL) {
        return NULL;
    }
    PyObject *out = PyList_New(s->count);
    if (out == NULL) {
        return NULL;
    }
    Py_ssize_t p = 0;
    for (Py_ssize_t i = 0; i < s->count; i++) {
        Py_ssize_t n = rec_len((const unsigned char *)s->buf + p);
        PyObject *rec = PyBytes_FromStringAndSize(s->buf + p, n);
        if (rec == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, i, rec);
        p += n;
    }
    return out;
}

static PyObject *st_body(StageTable *self, PyObject *arg) {
    Slot *s = slot_of(self, arg, NULL);
    if (s == NULL) {
        return NULL;
    }
    return PyBytes_FromStringAndSize(s->len ? s->buf : "", s->len);
}

/* A read-only memoryview of the slot's staged records, without copying them: a frame's body, written as it is. Until
 * it is released, nothing may change any slot's records (BufferError). */
static PyObject *st_view(StageTable *self, PyObject *arg) {
    Py_ssize_t i;
    if (slot_of(self, arg, &i) == NULL) {
        return NULL;
    }
    self->view_slot = i;
    PyObject *view = PyMemoryView_FromObject((PyObject *)self);
    self->view_slot = -1;
    return view;
}

static int st_getbuffer(StageTable *self, Py_buffer *view, int flags) {
    if (self->view_slot < 0) {
        PyErr_SetString(PyExc_BufferError, "use StageTable.view(slot) for a slot's records");
        view->obj = NULL;
        return -1;
    }
    Slot *s = &self->slots[self->view_slot];
    if (PyBuffer_FillInfo(view, (PyObject *)self, s->len ? s->buf : empty, s->len, 1, flags) < 0) {
        return -1;
    }
    self->exports++;
    return 0;
}

static void st_releasebuffer(StageTable *self, Py_buffer *view) { self->exports--; }

static PyBufferProcs st_as_buffer = {
    .bf_getbuffer = (getbufferproc)st_getbuffer,
    .bf_releasebuffer = (releasebufferproc)st_releasebuffer,
};

/* Whether the slot's records go out as one frame (frame_header): 1, 0 if not, -1 with an error. */
static int one_frame(const Slot *s, Py_ssize_t max_records, Py_ssize_t max_bytes) {
    if (s->count == 0 || (s->count > 1 && (s->count > max_records || s->len > max_bytes))) {
        return 0;
    }
    if (s->len > (Py_ssize_t)UINT32_MAX - (FRAME_HEADER - LEN_PREFIX) || s->first < 0 || s->newest < 0) {
        PyErr_SetString(PyExc_OverflowError, "staged records do not fit a frame header");
        return -1;
    }
    return 1;
}

/* The header of a frame of the slot's records, but its CRC (h + CRC_AT); the bytes the CRC covers before the
 * records go to covered: crc = crc32(records, crc32(covered)), as framing.encode_frame_header computes it. */
static void fill_header(const Slot *s, unsigned char h[FRAME_HEADER], unsigned char covered[FRAME_HEADER - 4]) {
    put64(h, (unsigned long long)s->base);
    put32(h + 8, (uint32_t)(FRAME_HEADER - LEN_PREFIX + s->len));
    h[LEN_PREFIX] = FRAME_MAGIC;
    put32(h + CRC_AT, 0);
    put32(h + CRC_START, (uint32_t)s->count);
    put64(h + CRC_START + 4, (unsigned long long)s->first);
    put64(h + CRC_START + 12, (unsigned long long)s->newest);
    memcpy(covered, h, CRC_AT);
    memcpy(covered + CRC_AT, h + CRC_START, FRAME_HEADER - CRC_START);
}

/* frame_header(slot, max_records, max_bytes) -> (header, count, base, first, newest, nbytes) or None: see
 * staging.PyStageTable.frame_header */
static PyObject *st_frame_header(StageTable *self, PyObject *args) {
    PyObject *slot;
    Py_ssize_t max_records, max_bytes;
    if (!PyArg_ParseTuple(args, "Onn:frame_header", &slot, &max_records, &max_bytes)) {
        return NULL;
    }
    Py_ssize_t i;
    Slot *s = slot_of(self, slot, &i);
    if (s == NULL) {
        return NULL;
    }
    int one = one_frame(s, max_records, max_bytes);
    if (one <= 0) {
        return one < 0 ? NULL : Py_NewRef(Py_None);
    }
    unsigned char h[FRAME_HEADER], covered[FRAME_HEADER - 4];
    fill_header(s, h, covered);
    uint32_t crc = crc_any(0, covered, sizeof(covered));
    const unsigned char *buf = (const unsigned char *)(s->len ? s->buf : empty);
    size_t len = (size_t)s->len;
    self->exports++; /* (other threads run while the CRC reads the records: nothing may move them) */
    Py_BEGIN_ALLOW_THREADS;
    crc = crc_any(crc, buf, len);
    Py_END_ALLOW_THREADS;
    self->exports--;
    put32(h + CRC_AT, crc);
    s = &self->slots[i];
    return Py_BuildValue("(y#nLLLn)", (const char *)h, (Py_ssize_t)FRAME_HEADER, s->count, s->base, s->first,
                         s->newest, s->len);
}

/* One frame of write_frames. */
typedef struct {
    Py_ssize_t slot;
    int fd, single; /* single: the slot's records go out as one frame (else nothing is written) */
    long long pos;
    unsigned char head[FRAME_HEADER], covered[FRAME_HEADER - 4];
    const char *buf; /* the slot's records and what the result reports, taken with the GIL held */
    Py_ssize_t len, count;
    long long base, first, newest;
    int err, cut_err; /* errno of a failed write, and of a failed cut back (0: none) */
} FrameJob;

/* Append header + records to fd, then cut a failed write back to pos. Runs without the GIL. */
static void write_job(FrameJob *j) {
    struct iovec iov[2] = {{j->head, FRAME_HEADER}, {(void *)j->buf, (size_t)j->len}};
    struct iovec *at = iov;
    int left = 2;
    while (left > 0) {
        ssize_t w = writev(j->fd, at, left);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) { /* (0: no progress on a regular file, so an I/O error) */
            j->err = w < 0 ? errno : EIO;
            break;
        }
        while (left > 0 && (size_t)w >= at->iov_len) {
            w -= (ssize_t)at->iov_len;
            at++;
            left--;
        }
        if (left > 0) {
            at->iov_base = (char *)at->iov_base + w;
            at->iov_len -= (size_t)w;
        }
    }
    if (j->err && ftruncate(j->fd, (off_t)j->pos) < 0) {
        j->cut_err = errno;
    }
}

/* write_frames(jobs, max_records, max_bytes) -> results: see staging.PyStageTable.write_frames. The CRCs and the
 * writes run without the GIL, so two threads each writing half of a checkpoint's frames run on two cores. */
static PyObject *st_write_frames(StageTable *self, PyObject *args) {
    PyObject *arg;
    Py_ssize_t max_records, max_bytes;
    if (!PyArg_ParseTuple(args, "Onn:write_frames", &arg, &max_records, &max_bytes)) {
        return NULL;
    }
    PyObject *jobs = PySequence_Tuple(arg);
    if (jobs == NULL) {
        return NULL;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(jobs);
    FrameJob *js = PyMem_Calloc((size_t)(n ? n : 1), sizeof(FrameJob));
    char *seen = NULL;
    PyObject *results = NULL;
    if (js == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    /* First every number, which may run Python code (__index__) that changes the table; then, running none, the
     * checks and what the writes need. */
    for (Py_ssize_t k = 0; k < n; k++) {
        FrameJob *j = &js[k];
        PyObject *job = PySequence_Tuple(PyTuple_GET_ITEM(jobs, k));
        if (job == NULL) {
            goto done;
        }
        long fd = -1;
        if (PyTuple_GET_SIZE(job) != 3) {
            PyErr_SetString(PyExc_TypeError, "a write_frames job is (slot, fd, position)");
        } else if ((j->slot = PyNumber_AsSsize_t(PyTuple_GET_ITEM(job, 0), PyExc_IndexError)) == -1 &&
                   PyErr_Occurred()) {
        } else if ((fd = PyLong_AsLong(PyTuple_GET_ITEM(job, 1))) == -1 && PyErr_Occurred()) {
        } else if (fd < INT_MIN || fd > INT_MAX) {
            PyErr_SetString(PyExc_OverflowError, "fd out of range");
        } else {
            j->fd = (int)fd;
            j->pos = PyLong_AsLongLong(PyTuple_GET_ITEM(job, 2));
        }
        Py_DECREF(job);
        if (PyErr_Occurred()) {
            goto done;
        }
    }
    seen = PyMem_Calloc((size_t)(self->n ? self->n : 1), 1);
    if (seen == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t k = 0; k < n; k++) {
        FrameJob *j = &js[k];
        if (j->slot < 0 || j->slot >= self->n) {
            PyErr_Format(PyExc_IndexError, "stage slot %zd out of range", j->slot);
            goto done;
        }
        if (seen[j->slot]) {
            PyErr_Format(PyExc_ValueError, "slot %zd is in write_frames twice", j->slot);
            goto done;
        }
        seen[j->slot] = 1;
        const Slot *s = &self->slots[j->slot];
        if ((j->single = one_frame(s, max_records, max_bytes)) < 0) {
            goto done;
        }
        if (j->single) {
            fill_header(s, j->head, j->covered);
            j->buf = s->len ? s->buf : empty;
            j->len = s->len;
            j->count = s->count;
            j->base = s->base;
            j->first = s->first;
            j->newest = s->newest;
        }
    }
    /* Without the GIL only the jobs and the records are read: no buffer moves while exports is set (every method
     * that could move one refuses), and nothing reads the slots. */
    self->exports++;
    Py_BEGIN_ALLOW_THREADS;
    for (Py_ssize_t k = 0; k < n; k++) {
        FrameJob *j = &js[k];
        if (j->single) {
            uint32_t crc = crc_any(0, j->covered, sizeof(j->covered));
            put32(j->head + CRC_AT, crc_any(crc, (const unsigned char *)j->buf, (size_t)j->len));
            write_job(j);
        }
    }
    Py_END_ALLOW_THREADS;
    self->exports--;
    results = PyList_New(n);
    for (Py_ssize_t k = 0; results != NULL && k < n; k++) {
        const FrameJob *j = &js[k];
        PyObject *r;
        if (!j->single) {
            r = Py_NewRef(Py_None);
        } else if (j->err) {
            r = Py_BuildValue("(ii)", j->err, j->cut_err);
        } else {
            r = Py_BuildValue("(nLLLnn)", j->count, j->base, j->first, j->newest, j->len,
                              (Py_ssize_t)FRAME_HEADER + j->len);
        }
        if (r == NULL) {
            Py_CLEAR(results);
            break;
        }
        PyList_SET_ITEM(results, k, r);
    }
    if (results == NULL) { /* (out of memory) the caller learns of no write: take them back, as far as it can */
        for (Py_ssize_t k = 0; k < n; k++) {
            if (js[k].single && !js[k].err && ftruncate(js[k].fd, (off_t)js[k].pos) < 0) {
                continue; /* (the MemoryError is the error to raise) */
            }
        }
    }
done:
    PyMem_Free(js);
    PyMem_Free(seen);
    Py_DECREF(jobs);
    return results;
}

/* (slot, n) of consume / drop_last: n of the slot's records, whose buffer may change. -1 with an error if not. */
static int slot_and_records(StageTable *self, PyObject *args, const char *fmt, const char *verb, Slot **s,
                            long long *n) {
    if (parse_slot_ll(self, args, fmt, s, n) < 0 || !unlocked(self)) {
        return -1;
    }
    if (*n < 0 || *n > (long long)(*s)->count) {
        PyErr_Format(PyExc_ValueError, "cannot %s %lld of %zd staged records", verb, *n, (*s)->count);
        return -1;
    }
    return 0;
}

static PyObject *st_consume(StageTable *self, PyObject *args) {
    Slot *s;
    long long n;
    if (slot_and_records(self, args, "OL:consume", "consume", &s, &n) < 0) {
        return NULL;
    }
    if (n > 0 && n == (long long)s->count) {
        settle(self, s);
    } else if (n) {
        Py_ssize_t cut = rec_pos(s, (Py_ssize_t)n);
        memmove(s->buf, s->buf + cut, (size_t)(s->len - cut));
        s->len -= cut;
        s->count -= (Py_ssize_t)n;
        unsigned char *p = (unsigned char *)s->buf;
        for (Py_ssize_t k = 0; k < s->count; k++) { /* offset deltas count from the new base */
            put32(p, (uint32_t)k);
            p += rec_len(p);
        }
    }
    s->base += n;
    Py_RETURN_NONE;
}

static PyObject *st_drop_last(StageTable *self, PyObject *args) {
    Slot *s;
    long long n;
    if (slot_and_records(self, args, "OL:drop_last", "drop", &s, &n) < 0) {
        return NULL;
    }
    Py_ssize_t keep = s->count - (Py_ssize_t)n;
    Py_ssize_t cut = rec_pos(s, keep);
    for (const unsigned char *p = (const unsigned char *)s->buf + cut; p < (const unsigned char *)s->buf + s->len;
         p += rec_len(p)) {
        s->put_bytes -= (long long)(((uint32_t)p[8] << 8) | p[9]) + (long long)get32(p + 11);
    }
    s->len = cut;
    s->count = keep;
    if (n > 0 && keep == 0) {
        settle(self, s);
    }
    if (keep) {
        uint32_t newest = 0;
        const unsigned char *p = (const unsigned char *)s->buf;
        for (Py_ssize_t k = 0; k < keep; k++) {
            uint32_t a = get32(p + 4);
            newest = a > newest ? a : newest;
            p += rec_len(p);
        }
        s->newest = s->first + (long long)newest;
    }
    Py_RETURN_NONE;
}

/* ----------------------------------------------------------------------------- stage */
typedef struct {
    Py_ssize_t slot;
    long long first, newest; /* the slot's arrivals before the record */
    long long bytes;         /* the record's key + data bytes */
} Undo;

static int call_slot(PyObject *fn, PyObject *slot) {
    PyObject *r = PyObject_CallOneArg(fn, slot);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

/* With many shards, the buffer bytes a record is written to were last touched a checkpoint ago and are no longer in
 * the caches: each record's copy waited for them, line after line. The staging loop asks for the lines of the record
 * PREFETCH_AHEAD places on, so that these misses overlap the work on the records before it (the first pass asked for
 * its slot). A hint only: a slot whose buffer moves before then is simply missed. */
#define PREFETCH_AHEAD 8
#define PREFETCH_MAX 512 /* bytes of a record asked for: a large record's copy streams well enough on its own */

/* stage(now, span, plan, on_span, on_first, full, results) -> (journal bytes, offsets, results or None): see
 * staging.PyStageTable.stage */
static PyObject *st_stage(StageTable *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 7) {
        PyErr_Format(PyExc_TypeError, "stage() takes 7 arguments (%zd given)", nargs);
        return NULL;
    }
    int want = PyObject_IsTrue(args[6]);
    if (want < 0) {
        return NULL;
    }
    want = want && self->entry != NULL;
    long long now = PyLong_AsLongLong(args[0]);
    if (now == -1 && PyErr_Occurred()) {
        return NULL;
    }
    long long span = PyLong_AsLongLong(args[1]);
    if (span == -1 && PyErr_Occurred()) {
        return NULL;
    }
    PyObject *on_span = args[3], *on_first = args[4], *full = args[5];
    if (!unlocked(self)) {
        return NULL;
    }
    if (!PyList_Check(full)) {
        PyErr_SetString(PyExc_TypeError, "full must be a list");
        return NULL;
    }
    /* A tuple of the plan's entries: the callbacks run Python code, which must not be able to free them. */
    PyObject *plan = PySequence_Tuple(args[2]);
    if (plan == NULL) {
        return NULL;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(plan);
    PyObject *body = NULL, *offsets = NULL, *entries = NULL, *result = NULL;
    Undo *undo = NULL;
    Py_ssize_t staged = 0;

    undo = PyMem_Malloc((size_t)(n ? n : 1) * sizeof(Undo));
    if (undo == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    /* Refuse a bad entry before anything is staged, and size the journal encoding. */
    Py_ssize_t total = 0;
    for (Py_ssize_t k = 0; k < n; k++) {
        PyObject *e = PyTuple_GET_ITEM(plan, k);
        if (!PyTuple_Check(e) || PyTuple_GET_SIZE(e) != 4) {
            PyErr_SetString(PyExc_TypeError, "a staged record is a (slot, key, hash key, data) tuple");
            goto done;
        }
        Slot *s = slot_of(self, PyTuple_GET_ITEM(e, 0), &undo[k].slot);
        if (s == NULL) {
            goto done;
        }
        if (want && s->ndigits == 0) {
            PyErr_Format(PyExc_ValueError, "stage slot %zd has no name", (Py_ssize_t)(s - self->slots));
            goto done;
        }
        /* With many shards a request's slots are not in the caches: ask for all of them now, so that their misses
         * overlap instead of stalling the staging loop below one after another. */
        __builtin_prefetch(s, 1, 3);
        if (want) {
            __builtin_prefetch((char *)s + 64, 0, 3);
        }
        PyObject *pk = PyTuple_GET_ITEM(e, 1), *ehk = PyTuple_GET_ITEM(e, 2), *data = PyTuple_GET_ITEM(e, 3);
        if (!PyBytes_CheckExact(pk) || !PyBytes_CheckExact(ehk) || !PyBytes_CheckExact(data)) {
            PyErr_SetString(PyExc_TypeError, "a staged record's key, hash key and data must be bytes");
            goto done;
        }
        if (PyBytes_GET_SIZE(pk) > 0xFFFF || PyBytes_GET_SIZE(ehk) > 0xFF ||
            (unsigned long long)PyBytes_GET_SIZE(data) > 0xFFFFFFFFULL) {
            PyErr_SetString(PyExc_ValueError, "a staged record's field is too long for its length field");
            goto done;
        }
        Py_ssize_t size = ID_SIZE + REC_SIZE + PyBytes_GET_SIZE(pk) + PyBytes_GET_SIZE(ehk) + PyBytes_GET_SIZE(data);
        if (total > PY_SSIZE_T_MAX - size) {
            PyErr_NoMemory();
            goto done;
        }
        total += size;
    }
    body = PyBytes_FromStringAndSize(NULL, total);
    offsets = PyList_New(n);
    entries = want ? PyList_New(n) : Py_NewRef(Py_None);
    if (body == NULL || offsets == NULL || entries == NULL) {
        goto done;
    }
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(body);
    for (Py_ssize_t k = 0; k < n; k++) {
        if (k + PREFETCH_AHEAD < n) { /* (inline: GCC drops a call to a function that only prefetches) */
            const Slot *ahead = &self->slots[undo[k + PREFETCH_AHEAD].slot];
            if (ahead->buf != NULL) {
                PyObject *a = PyTuple_GET_ITEM(plan, k + PREFETCH_AHEAD);
                Py_ssize_t size = REC_SIZE + PyBytes_GET_SIZE(PyTuple_GET_ITEM(a, 1)) +
                                  PyBytes_GET_SIZE(PyTuple_GET_ITEM(a, 2)) + PyBytes_GET_SIZE(PyTuple_GET_ITEM(a, 3));
                /* (addresses as integers: the lines may lie past the buffer's end, which reserve() moves first) */
                uintptr_t at = (uintptr_t)ahead->buf + (uintptr_t)ahead->len;
                uintptr_t end = at + (uintptr_t)(size < PREFETCH_MAX ? size : PREFETCH_MAX);
                for (; at < end; at += 64) {
                    __builtin_prefetch((const void *)at, 1, 3);
                }
                __builtin_prefetch((const void *)(end - 1), 1, 3);
            }
        }
        PyObject *e = PyTuple_GET_ITEM(plan, k);
        PyObject *slot_obj = PyTuple_GET_ITEM(e, 0);
        Py_ssize_t i;
        Slot *s = slot_of(self, slot_obj, &i);
        if (s == NULL) { /* (a callback may have shrunk nothing, but never trust it) */
            goto done;
        }
        long long first_before = s->first, newest_before = s->newest, adelta = 0;
        if (s->count) {
            adelta = now - s->first;
            if (adelta > span) { /* keep a frame's records close in time (and staged memory bounded) */
                if (call_slot(on_span, slot_obj) < 0) {
                    goto done;
                }
                if ((s = slot_of(self, slot_obj, &i)) == NULL) {
                    goto done;
                }
            } else if (adelta < 0) { /* the clock stepped back: never before the first record of the batch */
                adelta = 0;
            }
        }
        if (s->count == 0) {
            if (call_slot(on_first, slot_obj) < 0) {
                goto done;
            }
            if ((s = slot_of(self, slot_obj, &i)) == NULL) {
                goto done;
            }
            s->first = s->newest = now;
            adelta = 0;
        }
        if (adelta < 0 || adelta > 0xFFFFFFFFLL) {
            PyErr_SetString(PyExc_OverflowError, "arrival delta out of range");
            goto done;
        }
        PyObject *pk = PyTuple_GET_ITEM(e, 1), *ehk = PyTuple_GET_ITEM(e, 2), *data = PyTuple_GET_ITEM(e, 3);
        Py_ssize_t pkl = PyBytes_GET_SIZE(pk), ehkl = PyBytes_GET_SIZE(ehk), dl = PyBytes_GET_SIZE(data);
        Py_ssize_t reclen = REC_SIZE + pkl + ehkl + dl;
        if (s->count > (Py_ssize_t)0xFFFFFFFF) {
            PyErr_SetString(PyExc_OverflowError, "too many staged records in one slot");
            goto done;
        }
        wake(self, s);
        if (reserve(self, s, reclen) < 0) {
            if (s->count == 0) {
                settle(self, s);
            }
            goto done;
        }
        long long off = s->base + (long long)s->count;
        PyObject *off_obj = PyLong_FromLongLong(off);
        if (off_obj == NULL) {
            goto done;
        }
        PyList_SET_ITEM(offsets, k, off_obj);
        if (want) {
            PyObject *entry = make_entry(self, s, off);
            if (entry == NULL) {
                goto done;
            }
            PyList_SET_ITEM(entries, k, entry);
        }
        /* The journal encoding: shard index, offset, then the segment encoding, which is then copied to the
         * slot's buffer. In this order nothing reads the slot's buffer: with many shards its bytes are not in the
         * caches, and reading them back right after writing them waited for them. */
        put32(out, (uint32_t)i);
        put32(out + 4, (uint32_t)((unsigned long long)off >> 32));
        put32(out + 8, (uint32_t)off);
        unsigned char *r = out + ID_SIZE;
        put32(r, (uint32_t)s->count);
        put32(r + 4, (uint32_t)adelta);
        r[8] = (unsigned char)(pkl >> 8);
        r[9] = (unsigned char)pkl;
        r[10] = (unsigned char)ehkl;
        put32(r + 11, (uint32_t)dl);
        memcpy(r + REC_SIZE, PyBytes_AS_STRING(pk), (size_t)pkl);
        memcpy(r + REC_SIZE + pkl, PyBytes_AS_STRING(ehk), (size_t)ehkl);
        memcpy(r + REC_SIZE + pkl + ehkl, PyBytes_AS_STRING(data), (size_t)dl);
        memcpy(s->buf + s->len, r, (size_t)reclen);
        out += ID_SIZE + reclen;
        undo[staged].slot = i;
        undo[staged].first = first_before;
        undo[staged].newest = newest_before;
        undo[staged].bytes = (long long)pkl + (long long)dl;
        staged++;
        s->put_bytes += (long long)pkl + (long long)dl;
        if (now > s->newest) {
            s->newest = now;
        }
        s->len += reclen;
        s->count++;
        if (s->count == self->full_at && PyList_Append(full, slot_obj) < 0) {
            goto done;
        }
    }
    result = PyTuple_Pack(3, body, offsets, entries);
done:
    if (result == NULL) {
        /* Take back what this call staged, newest first: the slots are as they were. */
        for (Py_ssize_t k = staged - 1; k >= 0; k--) {
            Slot *s = &self->slots[undo[k].slot];
            s->count--;
            s->len = rec_pos(s, s->count);
            s->first = undo[k].first;
            s->newest = undo[k].newest;
            s->put_bytes -= undo[k].bytes;
            if (s->count == 0) {
                settle(self, s);
            }
        }
    }
    PyMem_Free(undo);
    Py_XDECREF(body);
    Py_XDECREF(offsets);
    Py_XDECREF(entries);
    Py_DECREF(plan);
    return result;
}

/* ----------------------------------------------------------------------------- the type */
/* crc32(data, value=0, builtin=False): the CRC the frames get (zlib's, or with builtin the table-driven
 * one), for the tests to compare with zlib.crc32. */
static PyObject *mod_crc32(PyObject *mod, PyObject *args) {
    Py_buffer data;
    unsigned int value = 0;
    int builtin = 0;
    if (!PyArg_ParseTuple(args, "y*|Ip:crc32", &data, &value, &builtin)) {
        return NULL;
    }
    uint32_t crc = builtin ? crc_builtin(value, data.buf, (size_t)data.len)
                           : crc_any(value, data.buf, (size_t)data.len);
    PyBuffer_Release(&data);
    return PyLong_FromUnsignedLong(crc);
}

static PyMethodDef st_methods[] = {
    {"grow", (PyCFunction)st_grow, METH_O, "Make slots 0..n-1 exist (new ones empty, base 0)."},
    {"reset", (PyCFunction)st_reset, METH_O, "Empty the slot: no records, base 0, no arrivals."},
    {"count", (PyCFunction)st_count, METH_O, "Staged records of the slot."},
    {"nbytes", (PyCFunction)st_nbytes, METH_O, "Bytes of the slot's staged records."},
    {"base", (PyCFunction)st_base, METH_O, "Offset of the slot's first staged record."},
    {"next_offset", (PyCFunction)st_next_offset, METH_O, "The offset the slot's next record gets."},
    {"first", (PyCFunction)st_first, METH_O, "Arrival of the slot's first staged record."},
    {"newest", (PyCFunction)st_newest, METH_O, "Newest arrival among the slot's staged records."},
    {"put_bytes", (PyCFunction)st_put_bytes, METH_O, "Key + data bytes of every record staged in the slot."},
    {"name", (PyCFunction)st_name, METH_VARARGS, "Name the slot's results: name, and record ids from id_base."},
    {"set_base", (PyCFunction)st_set_base, METH_VARARGS, "Set the next offset of an empty slot."},
    {"set_newest", (PyCFunction)st_set_newest, METH_VARARGS, "Set the slot's newest arrival."},
    {"records", (PyCFunction)st_records, METH_O, "The slot's staged records, in offset order."},
    {"body", (PyCFunction)st_body, METH_O, "The slot's staged records joined."},
    {"view", (PyCFunction)st_view, METH_O, "A read-only memoryview of the slot's staged records."},
    {"frame_header", (PyCFunction)st_frame_header, METH_VARARGS, "The header of a frame of the slot's records."},
    {"write_frames", (PyCFunction)st_write_frames, METH_VARARGS, "Write slots' records as frames to their files."},
    {"consume", (PyCFunction)st_consume, METH_VARARGS, "Drop the first n staged records (written)."},
    {"drop_last", (PyCFunction)st_drop_last, METH_VARARGS, "Take back the last n staged records."},
    {"stage", (PyCFunction)(void (*)(void))st_stage, METH_FASTCALL, "Stage a request's records."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef st_members[] = {
    {"full_at", T_PYSSIZET, offsetof(StageTable, full_at), READONLY, "A batch of this many records is full."},
    {"idle_bytes", T_PYSSIZET, offsetof(StageTable, idle), READONLY, "Bytes of buffers kept by empty slots."},
    {NULL, 0, 0, 0, NULL},
};

static PySequenceMethods st_as_sequence = {
    .sq_length = (lenfunc)st_len,
};

static PyTypeObject StageTableType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "shardline.storage._stagetable.StageTable",
    .tp_basicsize = sizeof(StageTable),
    .tp_dealloc = (destructor)st_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Staged records of a group of shard logs (see staging.py).",
    .tp_methods = st_methods,
    .tp_members = st_members,
    .tp_as_sequence = &st_as_sequence,
    .tp_as_buffer = &st_as_buffer,
    .tp_new = st_new,
};

static PyMethodDef module_methods[] = {
    {"crc32", (PyCFunction)mod_crc32, METH_VARARGS, "The CRC-32 of the frames (tests)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_stagetable",
    .m_doc = "Compiled staging.StageTable.",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC PyInit__stagetable(void) {
    if (PyType_Ready(&StageTableType) < 0) {
        return NULL;
    }
    crc_init();
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) {
        return NULL;
    }
    if (PyModule_AddIntConstant(m, "KEEP_BYTES", KEEP_BYTES) < 0 ||
        PyModule_AddIntConstant(m, "IDLE_BUDGET", IDLE_BUDGET) < 0 ||
        PyModule_AddIntConstant(m, "REC_SIZE", REC_SIZE) < 0 || PyModule_AddIntConstant(m, "ID_SIZE", ID_SIZE) < 0 ||
        PyModule_AddIntConstant(m, "HEADER_SIZE", FRAME_HEADER) < 0 ||
        PyModule_AddIntConstant(m, "MAGIC", FRAME_MAGIC) < 0 ||
        PyModule_AddIntConstant(m, "LEN_PREFIX", LEN_PREFIX) < 0 || PyModule_AddIntConstant(m, "CRC_AT", CRC_AT) < 0 ||
        PyModule_AddIntConstant(m, "CRC_START", CRC_START) < 0 ||
        PyModule_AddObjectRef(m, "SYSTEM_CRC32", system_crc32 != NULL ? Py_True : Py_False) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&StageTableType);
    if (PyModule_AddObject(m, "StageTable", (PyObject *)&StageTableType) < 0) {
        Py_DECREF(&StageTableType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
