/* test_cli.c — the real `ufb` binary, run as a user would: JSON on stdout, exit codes, and a
 * one-line reason on stderr for bad model folders and bad input. */
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

static char ufb[256];

static int setup(void **state) {
    (void)state;
    const char *b = getenv("BUILD");
    snprintf(ufb, sizeof ufb, "%s/ufb", b && *b ? b : "build");
    return 0;
}

typedef struct run_result {
    int status;
    char out[1 << 16];
    char err[4096];
} run_result;

/* Run `ufb ARGS` through the shell with optional stdin text; capture stdout and stderr. */
static void run(run_result *r, const char *args, const char *stdin_text) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s%s %s 2>/tmp/ufb_test_cli.err",
             stdin_text ? "printf '%s' \"$UFB_STDIN\" | " : "", ufb, args);
    if (stdin_text) setenv("UFB_STDIN", stdin_text, 1);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(r->out, 1, sizeof r->out - 1, p);
    r->out[n] = 0;
    int st = pclose(p);
    r->status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    FILE *e = fopen("/tmp/ufb_test_cli.err", "r");
    n = e ? fread(r->err, 1, sizeof r->err - 1, e) : 0;
    r->err[n] = 0;
    if (e) fclose(e);
}

static int count_lines(const char *s) {
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static void test_inspect(void **state) {
    (void)state;
    run_result *r = malloc(sizeof *r);
    run(r, "inspect --model " FIXTURES "/crammed_d5_t2_f16", NULL);
    assert_int_equal(r->status, 0);
    json_t *o = json_loads(r->out, 0, NULL);
    assert_non_null(o);
    assert_string_equal(json_string_value(json_object_get(o, "family")), "crammed");
    assert_string_equal(json_string_value(json_object_get(o, "ff")), "fff");
    assert_string_equal(json_string_value(json_object_get(o, "dtype")), "F16");
    assert_int_equal(json_integer_value(json_object_get(o, "fff_depth")), 5);
    assert_int_equal(json_integer_value(json_object_get(o, "fff_trees")), 2);
    assert_true(json_integer_value(json_object_get(o, "n_params")) > 0);
    json_decref(o);
    free(r);
}

/* `ufb logits` on a golden case gives the golden logits (reference within 1e-4). */
static void test_logits_matches_golden(void **state) {
    (void)state;
    json_t *g = json_load_file(FIXTURES "/bert_fff_d6_t1_f16/golden.json", 0, NULL);
    json_t *c = json_array_get(json_object_get(g, "cases"), 3);
    char ids[4096] = "", types[4096] = "", args[9000];
    json_t *v;
    size_t i;
    json_array_foreach(json_object_get(c, "ids"), i, v)
        snprintf(ids + strlen(ids), sizeof ids - strlen(ids), "%s%lld", i ? "," : "",
                 (long long)json_integer_value(v));
    json_array_foreach(json_object_get(c, "type_ids"), i, v)
        snprintf(types + strlen(types), sizeof types - strlen(types), "%s%lld", i ? "," : "",
                 (long long)json_integer_value(v));
    snprintf(args, sizeof args, "logits --model %s/bert_fff_d6_t1_f16 --ids %s --type-ids %s",
             FIXTURES, ids, types);
    run_result *r = malloc(sizeof *r);
    run(r, args, NULL);
    assert_int_equal(r->status, 0);
    json_t *o = json_loads(r->out, 0, NULL);
    assert_non_null(o);
    json_t *logits = json_object_get(o, "logits"), *want = json_object_get(c, "logits");
    assert_int_equal(json_array_size(logits), json_array_size(want));
    for (i = 0; i < json_array_size(want); i++)
        assert_true(fabs(json_number_value(json_array_get(logits, i)) -
                         json_number_value(json_array_get(want, i))) <= 1e-4);
    int n = (int)json_array_size(json_object_get(c, "ids"));
    assert_int_equal(json_integer_value(json_object_get(o, "neurons_used")), 7 * n * 2);
    assert_int_equal(json_integer_value(json_object_get(o, "neurons_total")), 127 * n * 2);
    json_decref(o);
    json_decref(g);
    free(r);
}

static void test_classify_args_and_stdin(void **state) {
    (void)state;
    run_result *r = malloc(sizeof *r);
    run(r, "classify --model " FIXTURES "/bert_text 'a gorgeous film' 'dull and flat'", NULL);
    assert_int_equal(r->status, 0);
    assert_int_equal(count_lines(r->out), 2);
    json_t *o = json_loads(r->out, JSON_DISABLE_EOF_CHECK, NULL);
    assert_non_null(o);
    const char *label = json_string_value(json_object_get(o, "label"));
    assert_true(!strcmp(label, "negative") || !strcmp(label, "positive"));
    json_t *scores = json_object_get(o, "scores");
    double sum = json_number_value(json_object_get(scores, "negative")) +
                 json_number_value(json_object_get(scores, "positive"));
    assert_true(fabs(sum - 1.0) < 1e-5);
    assert_non_null(json_object_get(json_object_get(o, "stats"), "layers"));
    json_decref(o);
    run(r, "classify --model " FIXTURES "/bert_text", "one\ntwo\nthree\n");
    assert_int_equal(r->status, 0);
    assert_int_equal(count_lines(r->out), 3);
    char *one_thread = strdup(r->out); /* a pool of 3 threads: the same bytes */
    run(r, "classify --threads 3 --model " FIXTURES "/bert_text", "one\ntwo\nthree\n");
    assert_int_equal(r->status, 0);
    assert_string_equal(r->out, one_thread);
    free(one_thread);
    free(r);
}

static void test_errors(void **state) {
    (void)state;
    run_result *r = malloc(sizeof *r);
    run(r, "inspect --model /nonexistent", NULL);
    assert_int_equal(r->status, 1);
    assert_int_equal(count_lines(r->err), 1);
    assert_non_null(strstr(r->err, "config.json"));
    run(r, "logits --model " FIXTURES "/bert_text --ids 1,x,3", NULL);
    assert_int_equal(r->status, 2);
    run(r, "logits --model " FIXTURES "/bert_text --ids 99999999", NULL);
    assert_int_equal(r->status, 3);
    run(r, "classify --model " FIXTURES "/bert_text", "ok\n\xc3\x28 bad utf-8\n");
    assert_int_equal(r->status, 3);
    assert_int_equal(count_lines(r->err), 1);
    run(r, "classify --model " FIXTURES "/crammed_mlm text", NULL);
    assert_int_equal(r->status, 2);
    run(r, "frobnicate --model " FIXTURES "/bert_text", NULL);
    assert_int_equal(r->status, 2);
    free(r);
}

/* The benchmark runs every variant and checks each against its scalar reference (exit 0);
 * no timing is asserted, only the report's shape. */
static void test_bench_ffn_small(void **state) {
    (void)state;
    run_result *r = malloc(sizeof *r);
    run(r,
        "bench ffn --hidden 40 --depth 4 --trees 2 --layers 2 --batch 1,9 --threads 1,2 "
        "--runs 1 --json",
        NULL);
    assert_int_equal(r->status, 0);
    json_t *o = json_loads(r->out, 0, NULL);
    assert_non_null(o);
    json_t *sp = json_object_get(o, "speedup_vs_best_dense");
    assert_true(json_number_value(json_object_get(sp, "1")) > 0);
    assert_true(json_number_value(json_object_get(sp, "9")) > 0);
    assert_true(json_array_size(json_object_get(o, "results")) >= 2 * 2 * 5);
    assert_true(json_number_value(json_object_get(json_object_get(o, "check"), "cmm_scalar")) ==
                0.0);
    /* our GEMM's dense FF is checked too; the best dense of OpenBLAS alone is never faster
       than the best of all dense variants, so its ratio is never smaller */
    const double gemm_err =
        json_number_value(json_object_get(json_object_get(o, "check"), "dense_gemm"));
    assert_true(gemm_err > 0.0 && gemm_err < 1e-3);
    json_t *sp_blas = json_object_get(o, "speedup_vs_best_openblas_dense");
    assert_true(json_number_value(json_object_get(sp_blas, "1")) >=
                json_number_value(json_object_get(sp, "1")));
    assert_true(json_number_value(json_object_get(sp_blas, "9")) >=
                json_number_value(json_object_get(sp, "9")));
    json_decref(o);
    free(r);
}

/* End to end on two small fixtures (FFF and dense): one result per model and grid point, with
 * positive rates; usage and too-long sequences fail with their exit codes. */
static void test_bench_model_small(void **state) {
    (void)state;
    run_result *r = malloc(sizeof *r);
    run(r,
        "bench model --model " FIXTURES "/crammed_d3_t1_f32 --model " FIXTURES "/crammed_dense "
        "--seq 4,32 --batch 1,3 --threads 1,2 --runs 1 --min-time 0 --json",
        NULL);
    assert_int_equal(r->status, 0);
    json_t *o = json_loads(r->out, 0, NULL);
    assert_non_null(o);
    json_t *res = json_object_get(o, "results");
    assert_int_equal(json_array_size(res), 2 * 2 * 2 * 2);
    size_t i;
    json_t *pt;
    json_array_foreach(res, i, pt) {
        assert_true(json_number_value(json_object_get(pt, "seqs_per_s")) > 0);
        assert_true(json_number_value(json_object_get(pt, "p50_ms")) > 0);
    }
    assert_string_equal(json_string_value(json_object_get(json_array_get(res, 0), "engine")),
                        "ufb_fff");
    assert_string_equal(json_string_value(json_object_get(json_array_get(res, 1), "engine")),
                        "ufb_dense");
    json_decref(o);
    run(r, "bench model --seq 4", NULL);
    assert_int_equal(r->status, 2);
    run(r, "bench model --model " FIXTURES "/crammed_dense --seq 33 --batch 1 --runs 1", NULL);
    assert_int_equal(r->status, 3);
    free(r);
}

static void test_bench_triad_small(void **state) {
    (void)state;
    run_result *r = malloc(sizeof *r);
    run(r, "bench triad --mib 1 --runs 1 --threads 1,2 --json", NULL);
    assert_int_equal(r->status, 0);
    json_t *o = json_loads(r->out, 0, NULL);
    assert_non_null(o);
    json_t *res = json_object_get(o, "results");
    assert_int_equal(json_array_size(res), 2 * 2);
    assert_true(json_number_value(json_object_get(json_array_get(res, 0), "best_gbs")) > 0);
    json_decref(o);
    free(r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_inspect),
        cmocka_unit_test(test_logits_matches_golden),
        cmocka_unit_test(test_classify_args_and_stdin),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_bench_ffn_small),
        cmocka_unit_test(test_bench_model_small),
        cmocka_unit_test(test_bench_triad_small),
    };
    return cmocka_run_group_tests_name("cli", tests, setup, NULL);
}
