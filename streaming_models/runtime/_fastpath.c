/* The compiled per-message audio path of StreamBuffer (streaming_models/runtime/hops.py).

   One HopCutter per stream holds, in C arrays, what the pure-Python path keeps in numpy arrays
   and lists: the polyphase FIR's input history (SoxrFirUpsampler in resample.py, soxr's own HQ
   taps, or no filter when the rates match) and the model-rate samples not yet cut into hops.
   `push` filters one message's float32 samples straight into that buffer, so a message costs one
   call instead of a chain of numpy calls.

   It reproduces the Python path's bookkeeping exactly, so that `StreamBuffer` behaves the same
   whichever path runs: the FIR's output is "settled" (counted in buffered samples and
   samples_out, subject to the memory cap) only once it completes a hop, as the Python path defers
   its filter call until then; the cap drops the oldest settled samples. Sequence numbers, gap
   filling and counters other than these stay in Python.

   Bound through the CPython C API and the buffer protocol (no numpy headers needed to build it):
   a METH_FASTCALL method costs about 0.1 us to call, where ctypes' argument conversion alone
   costs microseconds per call, which a 20 ms message cannot afford. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define BLOCK 32 /* outputs per register block of the FIR */

typedef struct {
    PyObject_HEAD
    int ratio, half, taps_len; /* R, K, L = 2K + 1 */
    float *rtaps;              /* [R][L], each phase reversed: out[R i + p] = sum_j win[i + j] rtaps[p][j] */
    Py_ssize_t hop, cap;
    float *win;                /* the filter's input: history (<= 2K samples) then new input */
    Py_ssize_t win_len, win_cap;
    float *out;                /* model-rate samples not yet cut: out[out_start .. out_start + out_len) */
    Py_ssize_t out_start, out_len, out_cap;
    Py_ssize_t settled;        /* the first `settled` of out_len: what the Python path has stored */
    float *acc;                /* one phase's outputs before interleaving */
    Py_ssize_t acc_cap;
    long long consumed, samples_out, dropped;
    int ended;
    void (*kernel)(const float *, const float *, int, Py_ssize_t, float *);
} HopCutter;

static int grow(float **buffer, Py_ssize_t *capacity, Py_ssize_t needed) {
    if (needed <= *capacity) return 0;
    Py_ssize_t size = *capacity ? *capacity : 256;
    while (size < needed) size *= 2;
    float *bigger = PyMem_Realloc(*buffer, (size_t)size * sizeof(float));
    if (bigger == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    *buffer = bigger;
    *capacity = size;
    return 0;
}

/* After a spike (a 1 s message, a long gap filled with silence) give the memory back: keep at most
   twice what is in use, or `floor`, the steady state's need. */
static void trim(float **buffer, Py_ssize_t *capacity, Py_ssize_t used, Py_ssize_t floor) {
    Py_ssize_t target = 2 * used > floor ? 2 * used : floor;
    if (*capacity <= 2 * target) return;
    float *smaller = PyMem_Realloc(*buffer, (size_t)target * sizeof(float));
    if (smaller != NULL) {
        *buffer = smaller;
        *capacity = target;
    }
}

#define STEADY 1024 /* floats: a 20 ms message at 16 kHz, or at 8 kHz upsampled, is 320 */

/* One phase over `ready` outputs, register-blocked: BLOCK accumulators stay in vector registers
   while the taps stream past. The taps are summed in runs of CHUNK, each run's partial sum then
   added to the output's total: a straight float sum over ~200 taps drifts by ~1e-6 from the exact
   value, runs keep it near numpy's (tests/test_fastpath.py). No fast-math and no fused
   multiply-add: every output is the same sum in the same order, whatever the message size and
   whichever kernel runs (the portable one and the AVX2 one give the same bits). */
#define CHUNK 32

/* outputs i0 .. i0 + WIDTH; WIDTH is a constant at each use, so the compiler keeps its
   accumulators in registers */
#define FIR_BLOCK(WIDTH)                                                                   \
    do {                                                                                   \
        float total[WIDTH] = {0};                                                          \
        for (int j0 = 0; j0 < taps_len; j0 += CHUNK) {                                     \
            const int j1 = j0 + CHUNK < taps_len ? j0 + CHUNK : taps_len;                  \
            float a[WIDTH] = {0};                                                          \
            for (int j = j0; j < j1; j++) {                                                \
                const float t = taps[j];                                                   \
                const float *w = win + i0 + j;                                             \
                for (int b = 0; b < WIDTH; b++) a[b] += w[b] * t;                          \
            }                                                                              \
            for (int b = 0; b < WIDTH; b++) total[b] += a[b];                              \
        }                                                                                  \
        memcpy(acc + i0, total, sizeof(total));                                            \
    } while (0)

typedef void (*fir_kernel)(const float *win, const float *taps, int taps_len, Py_ssize_t ready, float *acc);

static void fir_portable(const float *win, const float *taps, int taps_len, Py_ssize_t ready, float *acc) {
    Py_ssize_t i0 = 0;
    for (; i0 + BLOCK <= ready; i0 += BLOCK) FIR_BLOCK(BLOCK);
    for (; i0 + 8 <= ready; i0 += 8) FIR_BLOCK(8);
    for (; i0 < ready; i0++) FIR_BLOCK(1);
}

#if defined(__GNUC__) && defined(__x86_64__)
#define HAVE_AVX2_KERNEL 1
typedef float v8 __attribute__((vector_size(32)));
typedef float v8u __attribute__((vector_size(32), aligned(4))); /* an unaligned load */
#define LOAD8(p) (*(const v8u *)(p))

/* The same sums, written with 8-float vectors (4 accumulators for 32 outputs): about a quarter
   faster than what the compiler makes of fir_portable for AVX2, and chosen at import where the
   CPU has AVX2 (x86-64 is built for SSE2 only). */
__attribute__((target("avx2")))
static void fir_avx2(const float *win, const float *taps, int taps_len, Py_ssize_t ready, float *acc) {
    Py_ssize_t i0 = 0;
    for (; i0 + 32 <= ready; i0 += 32) {
        v8 total[4] = {{0}};
        for (int j0 = 0; j0 < taps_len; j0 += CHUNK) {
            const int j1 = j0 + CHUNK < taps_len ? j0 + CHUNK : taps_len;
            v8 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
            for (int j = j0; j < j1; j++) {
                const float *w = win + i0 + j;
                const float t = taps[j];
                const v8 x = {t, t, t, t, t, t, t, t};
                a0 += LOAD8(w) * x;
                a1 += LOAD8(w + 8) * x;
                a2 += LOAD8(w + 16) * x;
                a3 += LOAD8(w + 24) * x;
            }
            total[0] += a0;
            total[1] += a1;
            total[2] += a2;
            total[3] += a3;
        }
        memcpy(acc + i0, total, sizeof(total));
    }
    for (; i0 + 8 <= ready; i0 += 8) {
        v8 total = {0};
        for (int j0 = 0; j0 < taps_len; j0 += CHUNK) {
            const int j1 = j0 + CHUNK < taps_len ? j0 + CHUNK : taps_len;
            v8 a = {0};
            for (int j = j0; j < j1; j++) {
                const float t = taps[j];
                const v8 x = {t, t, t, t, t, t, t, t};
                a += LOAD8(win + i0 + j) * x;
            }
            total += a;
        }
        memcpy(acc + i0, &total, sizeof(total));
    }
    for (; i0 < ready; i0++) FIR_BLOCK(1);
}
#endif

static fir_kernel fastest_kernel = fir_portable;
static const char *fastest_kernel_name = "portable";

/* Room for `more` output samples after the buffered ones. */
static int reserve_out(HopCutter *self, Py_ssize_t more) {
    if (self->out_start && self->out_start + self->out_len + more > self->out_cap) {
        memmove(self->out, self->out + self->out_start, (size_t)self->out_len * sizeof(float));
        self->out_start = 0;
    }
    return grow(&self->out, &self->out_cap, self->out_start + self->out_len + more);
}

/* Filter what the window holds: every input whose 2K + 1 neighbourhood has arrived. */
static int run_filter(HopCutter *self) {
    const int R = self->ratio, H = 2 * self->half;
    Py_ssize_t ready = self->win_len - H;
    if (ready <= 0) return 0;
    if (reserve_out(self, ready * R) < 0) return -1;
    float *dest = self->out + self->out_start + self->out_len;
    if (R == 1 && H == 0) {
        memcpy(dest, self->win, (size_t)ready * sizeof(float));
    } else {
        if (grow(&self->acc, &self->acc_cap, ready) < 0) return -1;
        for (int p = 0; p < R; p++) {
            self->kernel(self->win, self->rtaps + (Py_ssize_t)p * self->taps_len, self->taps_len, ready, self->acc);
            for (Py_ssize_t i = 0; i < ready; i++) dest[i * R + p] = self->acc[i];
        }
    }
    self->out_len += ready * R;
    memmove(self->win, self->win + ready, (size_t)H * sizeof(float));
    self->win_len = H;
    trim(&self->win, &self->win_cap, H, H + STEADY);
    trim(&self->acc, &self->acc_cap, 0, STEADY);
    return 0;
}

static void drop_over_cap(HopCutter *self) {
    Py_ssize_t excess = self->settled - self->cap;
    if (excess > 0) {
        self->out_start += excess;
        self->out_len -= excess;
        self->settled -= excess;
        self->consumed += excess;
        self->dropped += excess;
    }
}

/* The Python path stores the filter's output (counts it, caps it) when it completes a hop, or at
   once when there is no filter. */
static void settle(HopCutter *self, int force) {
    Py_ssize_t fresh = self->out_len - self->settled;
    if (!force && self->ratio > 1 && self->settled + fresh < self->hop) return;
    self->samples_out += fresh;
    self->settled = self->out_len;
    drop_over_cap(self);
}

static int initialised(HopCutter *self) {
    if (self->rtaps == NULL) {
        PyErr_SetString(PyExc_ValueError, "HopCutter not initialised");
        return 0;
    }
    return 1;
}

static int check_open(HopCutter *self) {
    if (!initialised(self)) return -1;
    if (self->ended) {
        PyErr_SetString(PyExc_ValueError, "push after flush(): the stream has ended");
        return -1;
    }
    return 0;
}

static int is_native_float32(const Py_buffer *view) {
    const char *f = view->format;
    if (view->itemsize != 4 || f == NULL) return 0;
    if (f[0] == '@' || f[0] == '=') f++;
#if PY_LITTLE_ENDIAN
    else if (f[0] == '<') f++;
#else
    else if (f[0] == '>') f++;
#endif
    return f[0] == 'f' && f[1] == '\0';
}

/* push(samples): one message of mono float32 samples (any 1-D buffer) at the source rate. */
static PyObject *HopCutter_push(HopCutter *self, PyObject *samples) {
    if (check_open(self) < 0) return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(samples, &view, PyBUF_RECORDS_RO) < 0) return NULL;
    if (view.ndim != 1 || !is_native_float32(&view)) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_TypeError, "samples must be a 1-D float32 array");
        return NULL;
    }
    Py_ssize_t n = view.shape[0];
    if (grow(&self->win, &self->win_cap, self->win_len + n) < 0) {
        PyBuffer_Release(&view);
        return NULL;
    }
    float *dest = self->win + self->win_len;
    Py_ssize_t stride = view.strides ? view.strides[0] : 4;
    if (stride == 4) {
        memcpy(dest, view.buf, (size_t)n * sizeof(float));
    } else {
        for (Py_ssize_t i = 0; i < n; i++) memcpy(dest + i, (const char *)view.buf + i * stride, sizeof(float));
    }
    PyBuffer_Release(&view);
    self->win_len += n;
    if (run_filter(self) < 0) return NULL;
    settle(self, 0);
    return PyLong_FromSsize_t(self->settled);
}

/* push_zeros(n): n samples of silence (a sequence gap). */
static PyObject *HopCutter_push_zeros(HopCutter *self, PyObject *arg) {
    if (check_open(self) < 0) return NULL;
    Py_ssize_t n = PyLong_AsSsize_t(arg);
    if (n < 0) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "negative length");
        return NULL;
    }
    if (grow(&self->win, &self->win_cap, self->win_len + n) < 0) return NULL;
    memset(self->win + self->win_len, 0, (size_t)n * sizeof(float));
    self->win_len += n;
    if (run_filter(self) < 0) return NULL;
    settle(self, 0);
    return PyLong_FromSsize_t(self->settled);
}

/* take(out): fill a writable float32 buffer of k whole hops from the front; returns the start
   sample (model rate, from the stream's start) of the first. */
static PyObject *HopCutter_take(HopCutter *self, PyObject *dest) {
    if (!initialised(self)) return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(dest, &view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return NULL;
    Py_ssize_t count = view.len / (Py_ssize_t)sizeof(float);
    if (!is_native_float32(&view) || view.len % ((Py_ssize_t)sizeof(float) * self->hop) ||
        count > self->settled) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "take: not a whole number of complete hops");
        return NULL;
    }
    memcpy(view.buf, self->out + self->out_start, (size_t)count * sizeof(float));
    PyBuffer_Release(&view);
    long long start = self->consumed;
    self->out_start += count;
    self->out_len -= count;
    self->settled -= count;
    self->consumed += count;
    if (self->out_start) {
        memmove(self->out, self->out + self->out_start, (size_t)self->out_len * sizeof(float));
        self->out_start = 0;
    }
    trim(&self->out, &self->out_cap, self->out_len, self->hop + STEADY);
    return PyLong_FromLongLong(start);
}

/* flush(): end of stream: the filter's tail (K zeros of look-ahead) comes out; idempotent. */
static PyObject *HopCutter_flush(HopCutter *self, PyObject *Py_UNUSED(ignored)) {
    if (!initialised(self)) return NULL;
    if (!self->ended) {
        self->ended = 1;
        settle(self, 1);
        if (self->ratio > 1) {
            if (grow(&self->win, &self->win_cap, self->win_len + self->half) < 0) return NULL;
            memset(self->win + self->win_len, 0, (size_t)self->half * sizeof(float));
            self->win_len += self->half;
            if (run_filter(self) < 0) return NULL;
            settle(self, 1);
        }
    }
    Py_RETURN_NONE;
}

static int HopCutter_init(HopCutter *self, PyObject *args, PyObject *kwargs) {
    static char *names[] = {"taps", "ratio", "half", "hop_samples", "cap_samples", "portable", NULL};
    Py_buffer taps;
    int ratio, half, portable = 0;
    Py_ssize_t hop, cap;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*iinn|$p", names, &taps, &ratio, &half, &hop, &cap,
                                     &portable))
        return -1;
    int taps_len = 2 * half + 1;
    if (ratio < 1 || half < 0 || hop <= 0 || cap < hop ||
        taps.len != (Py_ssize_t)ratio * taps_len * (Py_ssize_t)sizeof(float)) {
        PyBuffer_Release(&taps);
        PyErr_SetString(PyExc_ValueError, "HopCutter: taps must be float32 [ratio, 2 * half + 1]; hop > 0; cap >= hop");
        return -1;
    }
    PyMem_Free(self->rtaps);
    self->rtaps = PyMem_Malloc((size_t)taps.len);
    if (self->rtaps == NULL) {
        PyBuffer_Release(&taps);
        PyErr_NoMemory();
        return -1;
    }
    memcpy(self->rtaps, taps.buf, (size_t)taps.len);
    PyBuffer_Release(&taps);
    self->kernel = portable ? fir_portable : fastest_kernel;
    self->ratio = ratio;
    self->half = half;
    self->taps_len = taps_len;
    self->hop = hop;
    self->cap = cap;
    /* before the stream's first sample the filter sees K zeros, as soxr assumes */
    if (grow(&self->win, &self->win_cap, 2 * half + 1) < 0) return -1;
    memset(self->win, 0, (size_t)half * sizeof(float));
    self->win_len = half;
    self->out_start = self->out_len = self->settled = 0;
    self->consumed = self->samples_out = self->dropped = 0;
    self->ended = 0;
    return 0;
}

static void HopCutter_dealloc(HopCutter *self) {
    PyMem_Free(self->rtaps);
    PyMem_Free(self->win);
    PyMem_Free(self->out);
    PyMem_Free(self->acc);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *get_buffered(HopCutter *self, void *unused) { return PyLong_FromSsize_t(self->settled); }
static PyObject *get_consumed(HopCutter *self, void *unused) { return PyLong_FromLongLong(self->consumed); }
static PyObject *get_samples_out(HopCutter *self, void *unused) { return PyLong_FromLongLong(self->samples_out); }
static PyObject *get_dropped(HopCutter *self, void *unused) { return PyLong_FromLongLong(self->dropped); }
static PyObject *get_allocated(HopCutter *self, void *unused) {
    return PyLong_FromSsize_t((self->win_cap + self->out_cap + self->acc_cap) * (Py_ssize_t)sizeof(float));
}

static PyGetSetDef HopCutter_getset[] = {
    {"buffered", (getter)get_buffered, NULL, "model-rate samples stored and not yet cut", NULL},
    {"consumed", (getter)get_consumed, NULL, "model-rate samples removed from the front (cut or dropped)", NULL},
    {"samples_out", (getter)get_samples_out, NULL, "model-rate samples stored so far", NULL},
    {"dropped", (getter)get_dropped, NULL, "model-rate samples dropped for the cap", NULL},
    {"allocated_bytes", (getter)get_allocated, NULL, "memory held for the sample buffers", NULL},
    {NULL},
};

static PyMethodDef HopCutter_methods[] = {
    {"push", (PyCFunction)HopCutter_push, METH_O, "push(float32 samples) -> buffered samples"},
    {"push_zeros", (PyCFunction)HopCutter_push_zeros, METH_O, "push_zeros(n) -> buffered samples"},
    {"take", (PyCFunction)HopCutter_take, METH_O, "take(float32 out of k hops) -> start sample"},
    {"flush", (PyCFunction)HopCutter_flush, METH_NOARGS, "end of stream: the filter's tail"},
    {NULL},
};

static PyTypeObject HopCutterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "streaming_models.runtime._fastpath.HopCutter",
    .tp_doc = "One stream's FIR upsampling (or none) and hop buffer; see _fastpath.c",
    .tp_basicsize = sizeof(HopCutter),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)HopCutter_init,
    .tp_dealloc = (destructor)HopCutter_dealloc,
    .tp_methods = HopCutter_methods,
    .tp_getset = HopCutter_getset,
};

static struct PyModuleDef fastpath_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_fastpath",
    .m_doc = "The compiled per-message audio path of StreamBuffer.",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__fastpath(void) {
#ifdef HAVE_AVX2_KERNEL
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2")) {
        fastest_kernel = fir_avx2;
        fastest_kernel_name = "avx2";
    }
#endif
    if (PyType_Ready(&HopCutterType) < 0) return NULL;
    PyObject *module = PyModule_Create(&fastpath_module);
    if (module == NULL) return NULL;
    if (PyModule_AddStringConstant(module, "KERNEL", fastest_kernel_name) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    Py_INCREF(&HopCutterType);
    if (PyModule_AddObject(module, "HopCutter", (PyObject *)&HopCutterType) < 0) {
        Py_DECREF(&HopCutterType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
