/* test_util.h — shared includes and small helpers of the cmocka tests (run from the repo root). */
#ifndef UFB_TEST_UTIL_H
#define UFB_TEST_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <jansson.h>

#include "engine.h"

#define FIXTURES "tests/fixtures"

/* Copy a JSON array of integers into out (at most cap). @return the count, or -1. */
static inline int json_int_array(int32_t *out, int cap, json_t *arr) {
    if (!json_is_array(arr) || (int)json_array_size(arr) > cap) return -1;
    for (size_t i = 0; i < json_array_size(arr); i++)
        out[i] = (int32_t)json_integer_value(json_array_get(arr, i));
    return (int)json_array_size(arr);
}

#endif
