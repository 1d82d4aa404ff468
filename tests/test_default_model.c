/* test_default_model.c — the shipped default model (models/sst2-minilm-fff) loads and gives,
 * through the C engine, the labels and logits that the float64 PyTorch reference gives on
 * the same file for a few fixed sentences (models/.../golden.json, written by
 * `tools/eval.py --write-golden`). */
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define DEFAULT_MODEL "models/sst2-minilm-fff"

static void test_default_model_golden(void **state) {
    (void)state;
    struct stat sb;
    if (stat(DEFAULT_MODEL "/golden.json", &sb) != 0) {
        printf("  %s/golden.json not in the tree yet: nothing to check\n", DEFAULT_MODEL);
        skip();
    }
    char err[512];
    ufb_model *m = ufb_model_load(DEFAULT_MODEL, NULL, err, sizeof err);
    if (!m) fprintf(stderr, "%s\n", err);
    assert_non_null(m);
    const ufb_model_info *in = ufb_model_info_get(m);
    assert_int_equal(in->ff_kind, UFB_FF_FFF);
    json_t *g = json_load_file(DEFAULT_MODEL "/golden.json", 0, NULL);
    json_t *cases = json_object_get(g, "cases");
    assert_true(json_array_size(cases) >= 5);
    ufb_ctx *ctx = ufb_ctx_create(m, NULL);
    double max_diff = 0;
    for (size_t i = 0; i < json_array_size(cases); i++) {
        json_t *c = json_array_get(cases, i);
        const char *text = json_string_value(json_object_get(c, "text"));
        ufb_encoding enc = {0};
        assert_int_equal(ufb_tokenize(ufb_model_tokenizer(m), &enc, text, strlen(text), NULL, 0,
                                      in->max_positions, err, sizeof err),
                         0);
        float logits[UFB_MAX_LABELS];
        ufb_seq seq = {enc.ids, enc.type_ids, enc.n};
        assert_int_equal(ufb_forward(ctx, logits, NULL, &seq, 1), 0);
        int best = 0;
        for (int k = 0; k < in->n_labels; k++) {
            max_diff = fmax(max_diff, fabs(logits[k] - json_number_value(json_array_get(
                                                           json_object_get(c, "logits"), k))));
            best = logits[k] > logits[best] ? k : best;
        }
        assert_string_equal(in->labels[best], json_string_value(json_object_get(c, "label")));
        ufb_encoding_free(&enc);
    }
    printf("  default model: %zu sentences, labels as PyTorch, max|dlogit| %.2e\n",
           json_array_size(cases), max_diff);
    assert_true(max_diff <= 1e-4);
    ufb_ctx_free(ctx);
    json_decref(g);
    ufb_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_model_golden),
    };
    return cmocka_run_group_tests_name("default_model", tests, NULL, NULL);
}
