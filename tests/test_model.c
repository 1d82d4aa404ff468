/* test_model.c — parity of the engine with the independent PyTorch reference.
 *
 * Every folder under tests/fixtures/ with a golden.json is a real model folder written by
 * tools/make_fixtures.py (random weights, both families, several depths, tree counts, head
 * counts, poolers and dtypes), with logits and FFF leaves from tools/reference.py (float64),
 * or, for hf_bert_transformers, from the `transformers` library itself. For each fixture and
 * each CMM kernel this CPU runs: max |Δlogit| <= 1e-4, identical leaves, identical results
 * when all cases run as one batch, and neuron statistics consistent with the leaves.
 */
#include "test_util.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOL       1e-4
#define MAX_CASES 64

typedef struct fixture {
    char dir[512];
    json_t *golden;
    ufb_model *m;
} fixture;

static fixture fixtures[32];
static int n_fixtures;

static int cmp_names(const void *a, const void *b) {
    return strcmp(((const fixture *)a)->dir, ((const fixture *)b)->dir);
}

static int setup(void **state) {
    (void)state;
    DIR *d = opendir(FIXTURES);
    struct dirent *e;
    while (d && (e = readdir(d)) && n_fixtures < 32) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s/golden.json", FIXTURES, e->d_name);
        json_t *g = json_load_file(path, 0, NULL);
        if (!g) continue;
        fixture *f = &fixtures[n_fixtures++];
        snprintf(f->dir, sizeof f->dir, "%s/%s", FIXTURES, e->d_name);
        f->golden = g;
    }
    if (d) closedir(d);
    qsort(fixtures, (size_t)n_fixtures, sizeof *fixtures, cmp_names);
    for (int i = 0; i < n_fixtures; i++) {
        char err[512];
        fixtures[i].m = ufb_model_load(fixtures[i].dir, NULL, err, sizeof err);
        if (!fixtures[i].m) fprintf(stderr, "%s: %s\n", fixtures[i].dir, err);
    }
    return 0;
}

static int teardown(void **state) {
    (void)state;
    for (int i = 0; i < n_fixtures; i++) {
        ufb_model_free(fixtures[i].m);
        json_decref(fixtures[i].golden);
    }
    return 0;
}

/* One golden case as engine input. */
typedef struct gcase {
    int32_t ids[1024], types[1024];
    int n;
    bool has_types;
    json_t *logits, *leaves;
    double min_abs_a;
} gcase;

static void read_case(gcase *c, json_t *j) {
    c->n = json_int_array(c->ids, 1024, json_object_get(j, "ids"));
    c->has_types = json_object_get(j, "type_ids") != NULL;
    if (c->has_types) json_int_array(c->types, 1024, json_object_get(j, "type_ids"));
    c->logits = json_object_get(j, "logits");
    c->leaves = json_object_get(j, "leaves");
    json_t *a = json_object_get(j, "min_abs_a");
    c->min_abs_a = a ? json_number_value(a) : 1.0;
}

/* @return max |logits - golden|; asserts the count. */
static double logit_diff(const float *logits, json_t *golden, size_t n) {
    assert_int_equal(json_array_size(golden), n);
    double max = 0;
    for (size_t i = 0; i < n; i++)
        max = fmax(max, fabs(logits[i] - json_number_value(json_array_get(golden, i))));
    return max;
}

/* @return number of (layer, token, tree) leaves that differ from golden [layer][token][tree]. */
static int leaf_mismatches(const ufb_model_info *in, const int32_t *leaves, json_t *golden, int n) {
    int bad = 0;
    assert_int_equal(json_array_size(golden), in->n_layers);
    for (int l = 0; l < in->n_layers; l++)
        for (int t = 0; t < n; t++)
            for (int k = 0; k < in->fff_trees; k++) {
                json_t *v = json_array_get(json_array_get(json_array_get(golden, l), t), k);
                bad += leaves[((size_t)l * n + t) * in->fff_trees + k] != json_integer_value(v);
            }
    return bad;
}

/* distinct nodes on the root paths of the leaves, computed by brute force */
static int distinct_nodes(const ufb_model_info *in, const int32_t *leaves, int n) {
    char *seen = calloc((size_t)in->intermediate, 1);
    int count = 0;
    for (int i = 0; i < n * in->fff_trees; i++) {
        int tree = i % in->fff_trees;
        for (int k = leaves[i];; k = (k - 1) / 2) {
            count += !seen[tree * in->fff_nodes + k];
            seen[tree * in->fff_nodes + k] = 1;
            if (k == 0) break;
        }
    }
    free(seen);
    return count;
}

static void check_stats(const ufb_model_info *in, const ufb_seq_stats *st, int n) {
    bool fff = in->ff_kind == UFB_FF_FFF;
    int per_tok = fff ? in->fff_trees * (in->fff_depth + 1) : in->intermediate;
    assert_int_equal(st->n_tokens, n);
    assert_int_equal(st->neurons_used, (int64_t)per_tok * n * in->n_layers);
    assert_int_equal(st->neurons_total, (int64_t)in->intermediate * n * in->n_layers);
    assert_int_equal(st->ff_flops, 4LL * in->hidden * st->neurons_used);
    for (int l = 0; l < in->n_layers; l++) {
        assert_int_equal(st->nodes_per_token[l], per_tok);
        assert_int_equal(st->nodes_total[l], in->intermediate);
        if (fff)
            assert_int_equal(st->nodes_distinct[l],
                             distinct_nodes(in, st->leaves + (size_t)l * n * in->fff_trees, n));
    }
}

/* Run every case alone, then all as one batch; compare with golden and with each other. */
static void check_fixture_kernel(fixture *f, enum ufb_kernel kernel, double *max_diff) {
    const ufb_model_info *in = ufb_model_info_get(f->m);
    json_t *cases = json_object_get(f->golden, "cases");
    int n_cases = (int)json_array_size(cases);
    assert_true(n_cases > 0 && n_cases <= MAX_CASES);
    gcase *gc = calloc((size_t)n_cases, sizeof *gc);
    ufb_seq seqs[MAX_CASES];
    size_t out_per_case[MAX_CASES], total_out = 0;
    for (int i = 0; i < n_cases; i++) {
        read_case(&gc[i], json_array_get(cases, i));
        seqs[i] = (ufb_seq){gc[i].ids, gc[i].has_types ? gc[i].types : NULL, gc[i].n};
        out_per_case[i] = (size_t)in->n_outputs * (in->head_kind == UFB_HEAD_MLM ? gc[i].n : 1);
        total_out += out_per_case[i];
    }
    ufb_ctx_params cp = {.max_tokens = MAX_CASES * in->max_positions, .kernel = kernel};
    ufb_ctx *ctx = ufb_ctx_create(f->m, &cp);
    assert_non_null(ctx);
    float *alone = calloc(total_out, sizeof(float)), *batch = calloc(total_out, sizeof(float));
    ufb_seq_stats st[MAX_CASES];
    size_t off = 0;
    for (int i = 0; i < n_cases; off += out_per_case[i], i++) {
        st[i] = (ufb_seq_stats){.leaves = calloc(ufb_leaves_len(f->m, gc[i].n) + 1, 4)};
        assert_int_equal(ufb_forward(ctx, alone + off, &st[i], &seqs[i], 1), 0);
        *max_diff = fmax(*max_diff, logit_diff(alone + off, gc[i].logits, out_per_case[i]));
        if (in->ff_kind == UFB_FF_FFF && gc[i].min_abs_a >= 1e-6)
            assert_int_equal(leaf_mismatches(in, st[i].leaves, gc[i].leaves, gc[i].n), 0);
        check_stats(in, &st[i], gc[i].n);
        free(st[i].leaves);
    }
    assert_true(*max_diff <= TOL);
    assert_int_equal(ufb_forward(ctx, batch, NULL, seqs, n_cases), 0);
    assert_memory_equal(alone, batch, total_out * sizeof(float)); /* batch-independent */
    free(alone);
    free(batch);
    free(gc);
    ufb_ctx_free(ctx);
}

static void test_parity_all_fixtures(void **state) {
    (void)state;

    static const enum ufb_kernel kernels[] = {UFB_KERNEL_SCALAR, UFB_KERNEL_AVX2,
                                              UFB_KERNEL_AVX512};

    assert_true(n_fixtures >= 12);
    for (int i = 0; i < n_fixtures; i++) {
        fixture *f = &fixtures[i];
        assert_non_null(f->m);
        for (size_t k = 0; k < sizeof kernels / sizeof kernels[0]; k++) {
            if (!ufb_kernel_supported(kernels[k])) {
                printf("  (kernel %s not supported on this CPU: skipped)\n",
                       ufb_kernel_name(kernels[k]));
                continue;
            }
            double diff = 0;
            check_fixture_kernel(f, kernels[k], &diff);
            printf("  %-28s %-7s max|dlogit| = %.2e\n", strrchr(f->dir, '/') + 1,
                   ufb_kernel_name(kernels[k]), diff);
        }
    }
}

/* The same batch on 1 thread and on a pool of 3: bit-identical logits and leaves. */
static void test_pool_bit_identical(void **state) {
    (void)state;
    ufb_pool *pool = ufb_pool_create(3, NULL);
    assert_non_null(pool);
    assert_int_equal(ufb_pool_size(pool), 3);
    for (int i = 0; i < n_fixtures; i++) {
        const ufb_model_info *in = ufb_model_info_get(fixtures[i].m);
        json_t *cases = json_object_get(fixtures[i].golden, "cases");
        int n = (int)json_array_size(cases), total = 0;
        gcase *gc = calloc((size_t)n, sizeof *gc);
        ufb_seq seqs[MAX_CASES];
        ufb_seq_stats st1[MAX_CASES], st3[MAX_CASES];
        for (int c = 0; c < n; c++) {
            read_case(&gc[c], json_array_get(cases, (size_t)c));
            seqs[c] = (ufb_seq){gc[c].ids, gc[c].has_types ? gc[c].types : NULL, gc[c].n};
            total += gc[c].n;
            st1[c] =
                (ufb_seq_stats){.leaves = calloc(ufb_leaves_len(fixtures[i].m, gc[c].n) + 1, 4)};
            st3[c] =
                (ufb_seq_stats){.leaves = calloc(ufb_leaves_len(fixtures[i].m, gc[c].n) + 1, 4)};
        }
        size_t n_out = (size_t)in->n_outputs * (in->head_kind == UFB_HEAD_MLM ? total : n);
        float *l1 = calloc(n_out, sizeof(float)), *l3 = calloc(n_out, sizeof(float));
        ufb_ctx_params cp = {.max_tokens = total};
        ufb_ctx *c1 = ufb_ctx_create(fixtures[i].m, &cp);
        cp.pool = pool;
        ufb_ctx *c3 = ufb_ctx_create(fixtures[i].m, &cp);
        assert_int_equal(ufb_forward(c1, l1, st1, seqs, n), 0);
        assert_int_equal(ufb_forward(c3, l3, st3, seqs, n), 0);
        assert_memory_equal(l1, l3, n_out * sizeof(float));
        for (int c = 0; c < n; c++) {
            assert_memory_equal(st1[c].leaves, st3[c].leaves,
                                ufb_leaves_len(fixtures[i].m, gc[c].n) * sizeof(int32_t));
            assert_memory_equal(st1[c].nodes_distinct, st3[c].nodes_distinct,
                                sizeof st1[c].nodes_distinct);
            free(st1[c].leaves);
            free(st3[c].leaves);
        }
        ufb_ctx_free(c1);
        ufb_ctx_free(c3);
        free(l1);
        free(l3);
        free(gc);
    }
    ufb_pool_free(pool);
}

/* Text cases: the model's own tokenizer must give the golden ids, then the golden logits. */
static void test_text_cases(void **state) {
    (void)state;
    int n_checked = 0;
    for (int i = 0; i < n_fixtures; i++) {
        json_t *tc = json_object_get(fixtures[i].golden, "text_cases");
        const ufb_model_info *in = ufb_model_info_get(fixtures[i].m);
        for (size_t j = 0; j < json_array_size(tc); j++, n_checked++) {
            json_t *c = json_array_get(tc, j);
            const char *text = json_string_value(json_object_get(c, "text"));
            const char *pair = json_string_value(json_object_get(c, "pair"));
            ufb_encoding enc = {0};
            char err[256];
            assert_int_equal(ufb_tokenize(ufb_model_tokenizer(fixtures[i].m), &enc, text,
                                          strlen(text), pair, pair ? strlen(pair) : 0,
                                          in->max_positions, err, sizeof err),
                             0);
            int32_t ids[1024];
            int n = json_int_array(ids, 1024, json_object_get(c, "ids"));
            assert_int_equal(enc.n, n);
            assert_memory_equal(enc.ids, ids, sizeof(int32_t) * (size_t)n);
            ufb_ctx *ctx = ufb_ctx_create(fixtures[i].m, NULL);
            float logits[UFB_MAX_LABELS];
            ufb_seq seq = {enc.ids, enc.type_ids, enc.n};
            assert_int_equal(ufb_forward(ctx, logits, NULL, &seq, 1), 0);
            assert_true(logit_diff(logits, json_object_get(c, "logits"), (size_t)in->n_outputs) <=
                        TOL);
            ufb_ctx_free(ctx);
            ufb_encoding_free(&enc);
        }
    }
    printf("  %d text cases: tokenizer ids and logits match\n", n_checked);
    assert_true(n_checked >= 8);
}

/* The transformers fixture holds the library's own float32 logits and our reference's. */
static void test_transformers_client(void **state) {
    (void)state;
    fixture *f = NULL;
    for (int i = 0; i < n_fixtures; i++)
        if (strstr(fixtures[i].dir, "hf_bert_transformers")) f = &fixtures[i];
    assert_non_null(f);
    assert_non_null(f->m);
    const ufb_model_info *in = ufb_model_info_get(f->m);
    assert_int_equal(in->family, UFB_FAMILY_BERT);
    json_t *cases = json_object_get(f->golden, "cases");
    ufb_ctx *ctx = ufb_ctx_create(f->m, NULL);
    double max_ref = 0, max_hf = 0;
    for (size_t i = 0; i < json_array_size(cases); i++) {
        gcase c;
        read_case(&c, json_array_get(cases, i));
        ufb_seq seq = {c.ids, c.has_types ? c.types : NULL, c.n};
        float logits[UFB_MAX_LABELS];
        assert_int_equal(ufb_forward(ctx, logits, NULL, &seq, 1), 0);
        max_hf = fmax(max_hf, logit_diff(logits, c.logits, (size_t)in->n_outputs));
        max_ref =
            fmax(max_ref,
                 logit_diff(logits, json_object_get(json_array_get(cases, i), "reference_logits"),
                            (size_t)in->n_outputs));
    }
    printf("  transformers BertForSequenceClassification: max|dlogit| vs transformers %.2e, "
           "vs reference %.2e\n",
           max_hf, max_ref);
    assert_true(max_hf <= TOL && max_ref <= TOL);
    ufb_ctx_free(ctx);
}

static void test_bad_inputs(void **state) {
    (void)state;
    ufb_model *m = fixtures[0].m;
    const ufb_model_info *in = ufb_model_info_get(m);
    ufb_ctx_params cp = {.max_tokens = in->max_positions + 1, .kernel = UFB_KERNEL_AUTO};
    ufb_ctx *ctx = ufb_ctx_create(m, &cp);
    float logits[4096];
    int32_t ids[2048] = {0};
    ufb_seq seq = {ids, NULL, 1};
    ids[0] = in->vocab_size;
    assert_int_equal(ufb_forward(ctx, logits, NULL, &seq, 1), UFB_ERR_INVALID);
    ids[0] = -1;
    assert_int_equal(ufb_forward(ctx, logits, NULL, &seq, 1), UFB_ERR_INVALID);
    ids[0] = 0;
    seq.n = 0;
    assert_int_equal(ufb_forward(ctx, logits, NULL, &seq, 1), UFB_ERR_INVALID);
    seq.n = in->max_positions + 1;
    assert_int_equal(ufb_forward(ctx, logits, NULL, &seq, 1), UFB_ERR_TOO_LONG);
    ufb_seq two[2] = {{ids, NULL, in->max_positions}, {ids, NULL, 2}}; /* over max_tokens */
    assert_int_equal(ufb_forward(ctx, logits, NULL, two, 2), UFB_ERR_TOO_LONG);
    int32_t types[1] = {in->type_vocab_size > 0 ? in->type_vocab_size : 1};
    ufb_seq typed = {ids, types, 1};
    assert_int_equal(ufb_forward(ctx, logits, NULL, &typed, 1), UFB_ERR_INVALID);
    ufb_ctx_free(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parity_all_fixtures), cmocka_unit_test(test_pool_bit_identical),
        cmocka_unit_test(test_text_cases),          cmocka_unit_test(test_transformers_client),
        cmocka_unit_test(test_bad_inputs),
    };
    return cmocka_run_group_tests_name("model", tests, setup, teardown);
}
