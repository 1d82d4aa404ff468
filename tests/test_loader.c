/* test_loader.c — model files are untrusted: every corruption of a real fixture folder must
 * give NULL and a one-line reason naming the file, key or tensor, never a crash. Also the
 * F16/BF16 widening against values fixed by IEEE 754 / bfloat16. */
#include "test_util.h"

#include "engine_impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SRC_BERT    FIXTURES "/bert_fff_d4_t2_bf16"
#define SRC_CRAMMED FIXTURES "/crammed_d3_t1_f32"

static char tmpdir[256];

static int setup(void **state) {
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/ufb_test_loader_XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    void *buf = malloc(*n + 1);
    if (buf && fread(buf, 1, *n, f) != *n) *n = 0;
    fclose(f);
    return buf;
}

static void write_all(const char *path, const void *buf, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(buf, 1, n, f), n);
    fclose(f);
}

/* Fresh copy of a fixture folder at tmpdir/case; @return its path (static buffer). */
static const char *copy_fixture(const char *src) {
    static char dir[512];
    char cmd[1200];
    snprintf(dir, sizeof dir, "%s/case", tmpdir);
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -r '%s' '%s'", dir, src, dir);
    assert_int_equal(system(cmd), 0);
    return dir;
}

/* Load must fail with `status` and a one-line message containing `needle`. */
static void expect_fail(const char *dir, int status, const char *needle) {
    char err[512] = "";
    ufb_model *m = ufb_model_load(dir, NULL, err, sizeof err);
    if (m || !strstr(err, needle) || ufb_last_load_status() != status)
        fprintf(stderr, "  expected status %d with '%s'; got status %d: %s\n", status, needle,
                ufb_last_load_status(), err);
    assert_null(m);
    assert_int_equal(ufb_last_load_status(), status);
    assert_non_null(strstr(err, needle));
    assert_null(strchr(err, '\n'));
}

/* Rewrite model.safetensors of dir with its header passed through edit(header). */
typedef void (*header_edit)(json_t *header);

static void rewrite_header(const char *dir, header_edit edit) {
    char path[600];
    size_t n;
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    uint8_t *buf = read_all(path, &n);
    assert_non_null(buf);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = (hlen << 8) | buf[i];
    json_t *h = json_loadb((const char *)buf + 8, hlen, 0, NULL);
    assert_non_null(h);
    edit(h);
    char *text = json_dumps(h, JSON_COMPACT);
    size_t tlen = strlen(text), data = n - 8 - hlen;
    uint8_t *out = malloc(8 + tlen + data);
    for (int i = 0; i < 8; i++)
        out[i] = (uint8_t)((uint64_t)tlen >> (8 * i));
    memcpy(out + 8, text, tlen);
    memcpy(out + 8 + tlen, buf + 8 + hlen, data);
    write_all(path, out, 8 + tlen + data);
    free(out);
    free(text);
    json_decref(h);
    free(buf);
}

static const char *TNAME = "bert.encoder.layer.0.fff.linear_in.weight";

static void edit_dtype(json_t *h) {
    json_object_set_new(json_object_get(h, TNAME), "dtype", json_string("Q4_K"));
}

static void edit_overlap(json_t *h) { /* the pooler bias moves onto the pooler weight */
    json_t *src = json_object_get(json_object_get(h, "bert.pooler.dense.weight"), "data_offsets");
    json_t *b = json_object_get(json_object_get(h, "bert.pooler.dense.bias"), "data_offsets");
    json_int_t len =
        json_integer_value(json_array_get(b, 1)) - json_integer_value(json_array_get(b, 0));
    json_int_t start = json_integer_value(json_array_get(src, 0));
    json_array_set_new(b, 0, json_integer(start));
    json_array_set_new(b, 1, json_integer(start + len));
}

static void edit_out_of_range(json_t *h) {
    json_t *o = json_object_get(json_object_get(h, TNAME), "data_offsets");
    json_array_set_new(o, 1, json_integer(1LL << 40));
}

static void edit_swap_shape(json_t *h) { /* same byte count, wrong shape for the config */
    json_t *s = json_object_get(json_object_get(h, TNAME), "shape");
    json_t *d0 = json_incref(json_array_get(s, 0));
    json_array_set(s, 0, json_array_get(s, 1));
    json_array_set_new(s, 1, d0);
}

static void edit_grow_shape(json_t *h) {
    json_t *s = json_object_get(json_object_get(h, TNAME), "shape");
    json_array_set_new(s, 0, json_integer(json_integer_value(json_array_get(s, 0)) + 1));
}

static void edit_rename(json_t *h) {
    json_object_set(h, "renamed.weight", json_object_get(h, TNAME));
    json_object_del(h, TNAME);
}

static void edit_negative(json_t *h) {
    json_array_set_new(json_object_get(json_object_get(h, TNAME), "shape"), 0, json_integer(-3));
}

static void test_safetensors_corruptions(void **state) {
    (void)state;

    struct {
        header_edit edit;
        int status;
        const char *needle;
    } cases[] = {
        {edit_dtype, UFB_ERR_FORMAT, "unknown dtype 'Q4_K'"},
        {edit_overlap, UFB_ERR_FORMAT, "overlap"},
        {edit_out_of_range, UFB_ERR_FORMAT, TNAME},
        {edit_swap_shape, UFB_ERR_CONFIG, TNAME},
        {edit_grow_shape, UFB_ERR_FORMAT, TNAME},
        {edit_rename, UFB_ERR_CONFIG, "is missing"},
        {edit_negative, UFB_ERR_FORMAT, "invalid shape"},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *dir = copy_fixture(SRC_BERT);
        rewrite_header(dir, cases[i].edit);
        expect_fail(dir, cases[i].status, cases[i].needle);
    }
}

/* Byte-level damage: truncation at many points, a huge header length, a non-JSON header. */
static void test_truncated_and_garbage(void **state) {
    (void)state;
    char path[600];
    size_t n;
    const char *dir = copy_fixture(SRC_CRAMMED);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    uint8_t *buf = read_all(path, &n);
    assert_non_null(buf);
    size_t cuts[] = {0, 4, 8, 9, 100, n / 3, n / 2, n - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        write_all(path, buf, cuts[i]);
        expect_fail(dir, UFB_ERR_FORMAT, "model.safetensors");
    }
    uint8_t *bad = malloc(n);
    memcpy(bad, buf, n);
    memset(bad, 0xff, 8); /* header length 2^64-1 */
    write_all(path, bad, n);
    expect_fail(dir, UFB_ERR_FORMAT, "header length");
    memcpy(bad, buf, n);
    memset(bad + 8, '!', 16); /* header no longer JSON */
    write_all(path, bad, n);
    expect_fail(dir, UFB_ERR_FORMAT, "not a JSON object");
    free(bad);
    free(buf);
}

static void write_text(const char *dir, const char *file, const char *text) {
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    write_all(path, text, strlen(text));
}

/* Edit one key of config.json: set it to a JSON value given as text (NULL deletes it). */
static void set_config(const char *dir, const char *key, const char *json_value) {
    char path[600];
    snprintf(path, sizeof path, "%s/config.json", dir);
    json_t *cfg = json_load_file(path, 0, NULL), *obj = cfg;
    assert_non_null(cfg);
    char k[128];
    const char *dot;
    while ((dot = strchr(key, '.'))) { /* nested "arch.embedding.x" */
        snprintf(k, sizeof k, "%.*s", (int)(dot - key), key);
        obj = json_object_get(obj, k);
        key = dot + 1;
    }
    if (json_value)
        json_object_set_new(obj, key, json_loads(json_value, JSON_DECODE_ANY, NULL));
    else
        json_object_del(obj, key);
    assert_int_equal(json_dump_file(cfg, path, 0), 0);
    json_decref(cfg);
}

static void test_config_errors(void **state) {
    (void)state;
    expect_fail("/nonexistent/model", UFB_ERR_IO, "config.json");
    const char *dir = copy_fixture(SRC_BERT);
    write_text(dir, "config.json", "{\"hidden_size\": 16,");
    expect_fail(dir, UFB_ERR_CONFIG, "config.json");
    write_text(dir, "config.json", "[1, 2]");
    expect_fail(dir, UFB_ERR_CONFIG, "not a JSON object");

    struct {
        const char *src, *key, *value;
        int status;
        const char *needle;
    } cases[] = {
        {SRC_BERT, "num_hidden_layers", NULL, UFB_ERR_CONFIG, "num_hidden_layers"},
        {SRC_BERT, "num_hidden_layers", "\"two\"", UFB_ERR_CONFIG, "num_hidden_layers"},
        {SRC_BERT, "num_hidden_layers", "3", UFB_ERR_CONFIG, "layer.2."},
        {SRC_BERT, "hidden_size", "-4", UFB_ERR_CONFIG, "hidden_size"},
        {SRC_BERT, "num_attention_heads", "7", UFB_ERR_CONFIG, "heads"},
        {SRC_BERT, "hidden_act", "\"swish\"", UFB_ERR_UNSUPPORTED, "swish"},
        {SRC_BERT, "fff_depth", "5", UFB_ERR_CONFIG, "fff.linear_in.weight"},
        {SRC_BERT, "fff_depth", "99", UFB_ERR_CONFIG, "fff_depth"},
        {SRC_BERT, "ffn_type", "\"moe\"", UFB_ERR_UNSUPPORTED, "moe"},
        {SRC_BERT, "layer_norm_eps", "0", UFB_ERR_CONFIG, "layer_norm_eps"},
        {SRC_BERT, "id2label", "{\"0\": \"a\"}", UFB_ERR_CONFIG, "id2label"},
        {SRC_BERT, "problem_type", "\"ranking\"", UFB_ERR_UNSUPPORTED, "ranking"},
        {SRC_CRAMMED, "arch.classification_head.pooler", "\"median\"", UFB_ERR_UNSUPPORTED,
         "median"},
        {SRC_CRAMMED, "arch.norm_scheme", "\"post\"", UFB_ERR_UNSUPPORTED, "norm_scheme"},
        {SRC_CRAMMED, "arch.intermed_size", "2", UFB_ERR_CONFIG, "ffn.linear_in.weight"},
        {SRC_CRAMMED, "arch.embedding.vocab_size", "100000", UFB_ERR_CONFIG, "word_embedding"},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        dir = copy_fixture(cases[i].src);
        set_config(dir, cases[i].key, cases[i].value);
        expect_fail(dir, cases[i].status, cases[i].needle);
    }
}

static void test_bad_tokenizer_in_folder(void **state) {
    (void)state;
    const char *dir = copy_fixture(FIXTURES "/bert_text");
    write_text(dir, "tokenizer.json", "{\"model\": {\"type\": \"WordPiece\"");
    expect_fail(dir, UFB_ERR_CONFIG, "tokenizer.json");
}

static void test_loads_and_inspects(void **state) {
    (void)state;
    char err[512];
    ufb_model *m = ufb_model_load(SRC_BERT, NULL, err, sizeof err);
    assert_non_null(m);
    const ufb_model_info *in = ufb_model_info_get(m);
    assert_int_equal(in->family, UFB_FAMILY_BERT);
    assert_int_equal(in->ff_kind, UFB_FF_FFF);
    assert_int_equal(in->dtype, UFB_DTYPE_BF16);
    assert_int_equal(in->fff_depth, 4);
    assert_int_equal(in->fff_trees, 2);
    assert_int_equal(in->fff_nodes, 31);
    assert_int_equal(in->intermediate, 62);
    ufb_model_free(m);
    ufb_model_free(NULL);
}

static void test_half_floats(void **state) {
    (void)state;
    assert_true(ufb_f16_to_f32(0x3c00) == 1.0f);
    assert_true(ufb_f16_to_f32(0xc000) == -2.0f);
    assert_true(ufb_f16_to_f32(0x7bff) == 65504.0f);
    assert_true(ufb_f16_to_f32(0x0001) == ldexpf(1.0f, -24)); /* smallest subnormal */
    assert_true(ufb_f16_to_f32(0x03ff) == ldexpf(1023.0f, -24));
    assert_true(isinf(ufb_f16_to_f32(0x7c00)));
    assert_true(isnan(ufb_f16_to_f32(0x7e00)));
    assert_true(signbit(ufb_f16_to_f32(0x8000)));
    assert_true(ufb_bf16_to_f32(0x3f80) == 1.0f);
    assert_true(ufb_bf16_to_f32(0xc2f7) == -123.5f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loads_and_inspects),
        cmocka_unit_test(test_safetensors_corruptions),
        cmocka_unit_test(test_truncated_and_garbage),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_bad_tokenizer_in_folder),
        cmocka_unit_test(test_half_floats),
    };
    return cmocka_run_group_tests_name("loader", tests, setup, teardown);
}
