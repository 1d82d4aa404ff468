/* safetensors.c — read-only safetensors reader: mmap, header validation, dtype widening.
 *
 * Format: 8 bytes little-endian header length N, N bytes of JSON mapping tensor names to
 * {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the end of the
 * header), an optional "__metadata__" object, then the raw little-endian tensor bytes.
 *
 * The file is untrusted input: every length, offset and shape is checked before use, the
 * byte ranges of tensors may not overlap or leave the file, and every failure names the
 * tensor. Nothing here asserts on file content.
 */
#include "engine_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define ST_MAX_HEADER (100u << 20) /* the format's own limit on the JSON header */

/* ---- Dtypes ---- */

static const struct {
    const char *name;
    enum ufb_st_dtype dtype;
    int bytes;
} st_dtypes[] = {
    {"F32", UFB_ST_F32, 4},    {"F16", UFB_ST_F16, 2},       {"BF16", UFB_ST_BF16, 2},
    {"F64", UFB_ST_F64, 8},    {"I64", UFB_ST_OTHER, 8},     {"U64", UFB_ST_OTHER, 8},
    {"I32", UFB_ST_OTHER, 4},  {"U32", UFB_ST_OTHER, 4},     {"I16", UFB_ST_OTHER, 2},
    {"U16", UFB_ST_OTHER, 2},  {"I8", UFB_ST_OTHER, 1},      {"U8", UFB_ST_OTHER, 1},
    {"BOOL", UFB_ST_OTHER, 1}, {"F8_E4M3", UFB_ST_OTHER, 1}, {"F8_E5M2", UFB_ST_OTHER, 1},
};

float ufb_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    uint32_t bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13); /* inf / nan */
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (man << 13);
    } else if (man == 0) {
        bits = sign;
    } else { /* subnormal: normalise */
        exp = 113;
        while (!(man & 0x400)) {
            man <<= 1;
            exp--;
        }
        bits = sign | (exp << 23) | ((man & 0x3ff) << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

float ufb_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

void ufb_st_to_f32(float *dst, const ufb_st_tensor *t, int64_t n) {
    const uint8_t *p = t->data;
    for (int64_t i = 0; i < n; i++) {
        switch (t->dtype) {
        case UFB_ST_F32:
            memcpy(&dst[i], p + 4 * i, 4);
            break;
        case UFB_ST_F16:
        case UFB_ST_BF16: {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = t->dtype == UFB_ST_F16 ? ufb_f16_to_f32(h) : ufb_bf16_to_f32(h);
            break;
        }
        case UFB_ST_F64: {
            double d;
            memcpy(&d, p + 8 * i, 8);
            dst[i] = (float)d;
            break;
        }
        case UFB_ST_OTHER:
            dst[i] = 0.0f; /* callers check the dtype first */
            break;
        }
    }
}

/* ---- Header parsing ---- */

static int parse_shape(ufb_st_tensor *t, json_t *shape, char *err, size_t errlen) {
    if (!json_is_array(shape) || json_array_size(shape) > 8) {
        snprintf(err, errlen, "tensor '%s': shape must be an array of at most 8 sizes", t->name);
        return UFB_ERR_FORMAT;
    }
    t->n_dims = (int)json_array_size(shape);
    t->numel = 1;
    for (int i = 0; i < t->n_dims; i++) {
        json_t *d = json_array_get(shape, (size_t)i);
        json_int_t v = json_is_integer(d) ? json_integer_value(d) : -1;
        if (v < 0 || v > ((int64_t)1 << 40) || (v && t->numel > ((int64_t)1 << 40) / v)) {
            snprintf(err, errlen, "tensor '%s': invalid shape", t->name);
            return UFB_ERR_FORMAT;
        }
        t->shape[i] = v;
        t->numel *= v;
    }
    return 0;
}

static int parse_dtype(ufb_st_tensor *t, json_t *dtype, int *elem_bytes, char *err, size_t errlen) {
    const char *s = json_string_value(dtype);
    for (size_t i = 0; s && i < sizeof st_dtypes / sizeof st_dtypes[0]; i++) {
        if (strcmp(s, st_dtypes[i].name) == 0) {
            t->dtype = st_dtypes[i].dtype;
            snprintf(t->dtype_name, sizeof t->dtype_name, "%s", s);
            *elem_bytes = st_dtypes[i].bytes;
            return 0;
        }
    }
    snprintf(err, errlen, "tensor '%s': unknown dtype '%.16s'", t->name, s ? s : "(not a string)");
    return UFB_ERR_FORMAT;
}

static int parse_tensor(ufb_st_tensor *t, const char *name, json_t *desc, const uint8_t *data,
                        size_t data_bytes, char *err, size_t errlen) {
    t->name = strdup(name);
    if (!t->name) return UFB_ERR_NOMEM;
    if (!json_is_object(desc)) {
        snprintf(err, errlen, "tensor '%s': description is not an object", name);
        return UFB_ERR_FORMAT;
    }
    int elem_bytes = 0, rc;
    if ((rc = parse_dtype(t, json_object_get(desc, "dtype"), &elem_bytes, err, errlen))) return rc;
    if ((rc = parse_shape(t, json_object_get(desc, "shape"), err, errlen))) return rc;
    json_t *offs = json_object_get(desc, "data_offsets");
    json_t *b = json_array_get(offs, 0), *e = json_array_get(offs, 1);
    if (!json_is_array(offs) || json_array_size(offs) != 2 || !json_is_integer(b) ||
        !json_is_integer(e)) {
        snprintf(err, errlen, "tensor '%s': data_offsets must be [begin, end]", name);
        return UFB_ERR_FORMAT;
    }
    json_int_t begin = json_integer_value(b), end = json_integer_value(e);
    if (begin < 0 || end < begin || (uint64_t)end > data_bytes) {
        snprintf(err, errlen, "tensor '%s': data_offsets [%lld, %lld] outside the %zu data bytes",
                 name, (long long)begin, (long long)end, data_bytes);
        return UFB_ERR_FORMAT;
    }
    if ((uint64_t)(end - begin) != (uint64_t)t->numel * (uint64_t)elem_bytes) {
        snprintf(err, errlen, "tensor '%s': %lld bytes do not match shape x dtype (%lld bytes)",
                 name, (long long)(end - begin), (long long)t->numel * elem_bytes);
        return UFB_ERR_FORMAT;
    }
    t->data = data + begin;
    t->n_bytes = (size_t)(end - begin);
    return 0;
}

static int cmp_by_data(const void *a, const void *b) {
    const ufb_st_tensor *x = a, *y = b;
    return x->data < y->data ? -1 : x->data > y->data;
}

static int check_overlaps(ufb_st_file *f, char *err, size_t errlen) {
    ufb_st_tensor *sorted = malloc(sizeof *sorted * (size_t)(f->n_tensors ? f->n_tensors : 1));
    if (!sorted) return UFB_ERR_NOMEM;
    memcpy(sorted, f->tensors, sizeof *sorted * (size_t)f->n_tensors);
    qsort(sorted, (size_t)f->n_tensors, sizeof *sorted, cmp_by_data);
    int rc = 0;
    for (int i = 1; i < f->n_tensors && !rc; i++) {
        if (sorted[i].data < sorted[i - 1].data + sorted[i - 1].n_bytes) {
            snprintf(err, errlen, "tensors '%s' and '%s' overlap in the file", sorted[i - 1].name,
                     sorted[i].name);
            rc = UFB_ERR_FORMAT;
        }
    }
    free(sorted);
    return rc;
}

int ufb_st_parse(ufb_st_file *f, const uint8_t *buf, size_t n_bytes, char *err, size_t errlen) {
    f->tensors = NULL;
    f->n_tensors = 0;
    if (n_bytes < 8) {
        snprintf(err, errlen, "file too short for a safetensors header (%zu bytes)", n_bytes);
        return UFB_ERR_FORMAT;
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = (hlen << 8) | buf[i];
    if (hlen > ST_MAX_HEADER || hlen > n_bytes - 8) {
        snprintf(err, errlen, "header length %llu exceeds the file (%zu bytes)",
                 (unsigned long long)hlen, n_bytes);
        return UFB_ERR_FORMAT;
    }
    json_error_t jerr;
    json_t *root = json_loadb((const char *)buf + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(root)) {
        snprintf(err, errlen, "header is not a JSON object: %s", root ? "wrong type" : jerr.text);
        json_decref(root);
        return UFB_ERR_FORMAT;
    }
    int rc = 0;
    f->tensors = calloc(json_object_size(root) + 1, sizeof *f->tensors);
    if (!f->tensors) rc = UFB_ERR_NOMEM;
    const char *name;
    json_t *desc;
    json_object_foreach(root, name, desc) {
        if (rc) break;
        if (strcmp(name, "__metadata__") == 0) continue;
        rc = parse_tensor(&f->tensors[f->n_tensors++], name, desc, buf + 8 + hlen,
                          n_bytes - 8 - (size_t)hlen, err, errlen);
    }
    json_decref(root);
    if (!rc) rc = check_overlaps(f, err, errlen);
    return rc;
}

int ufb_st_open(ufb_st_file *f, const char *path, char *err, size_t errlen) {
    memset(f, 0, sizeof *f);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return UFB_ERR_IO;
    }
    /* the mapping outlives the descriptor, so it is closed right after mmap */
    struct stat sb;
    int rc = UFB_ERR_IO;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file", path);
    } else if ((f->map_bytes = (size_t)sb.st_size) == 0) {
        rc = 0;
    } else {
        void *p = mmap(NULL, f->map_bytes, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED)
            snprintf(err, errlen, "%s: mmap: %s", path, strerror(errno));
        else
            f->map = p, rc = 0;
    }
    close(fd);
    if (rc) return rc;
    char why[400];
    rc = ufb_st_parse(f, f->map, f->map_bytes, why, sizeof why);
    if (rc) snprintf(err, errlen, "%s: %s", path, why);
    return rc;
}

void ufb_st_close(ufb_st_file *f) {
    if (!f) return;
    for (int i = 0; i < f->n_tensors; i++)
        free(f->tensors[i].name);
    free(f->tensors);
    if (f->map) munmap(f->map, f->map_bytes);
    memset(f, 0, sizeof *f);
}

ufb_st_tensor *ufb_st_find(const ufb_st_file *f, const char *name, bool *ambiguous) {
    ufb_st_tensor *found = NULL;
    size_t n = strlen(name);
    *ambiguous = false;
    for (int i = 0; i < f->n_tensors; i++) {
        const char *s = f->tensors[i].name;
        size_t len = strlen(s);
        bool match = len == n ? strcmp(s, name) == 0
                              : len > n && s[len - n - 1] == '.' && strcmp(s + len - n, name) == 0;
        if (!match) continue;
        if (found) {
            *ambiguous = true;
            return NULL;
        }
        found = &f->tensors[i];
    }
    return found;
}
