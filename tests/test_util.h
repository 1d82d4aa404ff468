/* test_util.h — shared includes and small helpers of the cmocka tests (run from the repo root). */
#ifndef UFB_TEST_UTIL_H
#define UFB_TEST_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "engine.h"

#define FIXTURES "tests/fixtures"

/* Copy a JSON array of integers into out (at most cap). @return the count, or -1. */
/* The engine's own answer for one text, in-process, on one thread (what the server's answers
 * are compared with bit for bit). st may be NULL. */
static inline void engine_logits(const ufb_model *m, const char *text, float *logits,
                                 ufb_seq_stats *st) {
    ufb_encoding enc = {0};
    char err[128];
    assert_int_equal(ufb_tokenize(ufb_model_tokenizer(m), &enc, text, strlen(text), NULL, 0,
                                  ufb_model_info_get(m)->max_positions, err, sizeof err),
                     0);
    ufb_ctx *ctx = ufb_ctx_create(m, NULL);
    ufb_seq seq = {enc.ids, enc.type_ids, enc.n};
    if (st) *st = (ufb_seq_stats){0};
    assert_int_equal(ufb_forward(ctx, logits, st, &seq, 1), 0);
    ufb_ctx_free(ctx);
    ufb_encoding_free(&enc);
}

static inline int json_int_array(int32_t *out, int cap, json_t *arr) {
    if (!json_is_array(arr) || (int)json_array_size(arr) > cap) return -1;
    for (size_t i = 0; i < json_array_size(arr); i++)
        out[i] = (int32_t)json_integer_value(json_array_get(arr, i));
    return (int)json_array_size(arr);
}

#endif
