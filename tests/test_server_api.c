/* test_server_api.c — the request/response formats (server/srv_api.c) as pure functions:
 * parsing, validation and item-level errors without HTTP or threads. */
#include "test_util.h"

#include "srv_impl.h"

#include <stdlib.h>
#include <string.h>

static ufb_model *model;
static const srv_limits lim = {4, 12};

static int setup(void **state) {
    (void)state;
    char err[256];
    model = ufb_model_load(FIXTURES "/bert_text", NULL, err, sizeof err);
    return model ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    ufb_model_free(model);
    return 0;
}

static srv_job *parse(const char *body, bool tei, srv_error *e) {
    memset(e, 0, sizeof *e);
    return srv_parse_classify(model, &lim, body, strlen(body), tei, e);
}

static void expect_reject(const char *body, bool tei, int status) {
    srv_error e;
    srv_job *job = parse(body, tei, &e);
    if (job) fprintf(stderr, "  accepted: %s\n", body);
    assert_null(job);
    assert_int_equal(e.status, status);
    assert_true(strlen(e.msg) > 0);
}

static void test_request_level_errors(void **state) {
    (void)state;
    expect_reject("", false, 400);
    expect_reject("{\"inputs\": ", false, 400);
    expect_reject("[\"a\"]", false, 422);
    expect_reject("{}", false, 422);
    expect_reject("{\"inputs\": []}", false, 400);
    expect_reject("{\"inputs\": 3}", false, 422);
    expect_reject("{\"inputs\": [[\"a\", \"b\", \"c\"]]}", false, 422);
    expect_reject("{\"inputs\": [\"a\", 1]}", false, 422);
    expect_reject("{\"inputs\": [\"a\", \"b\", \"c\", \"d\", \"e\"]}", false, 422); /* > 4 */
    expect_reject("{\"inputs\": \"a\", \"truncate\": \"yes\"}", false, 422);
    expect_reject("{\"inputs\": \"a\", \"top_k\": 65}", false, 422);
    expect_reject("{\"inputs\": \"a\", \"return_paths\": true}", true, 422); /* not TEI */
    expect_reject("{\"inputs\": \"a\", \"inputs\": \"b\"}", false, 400);     /* duplicate */
    expect_reject("{\"inputs\": \"\xff\"}", false, 422);                     /* bad UTF-8 */
}

static void test_shapes_ours_and_tei(void **state) {
    (void)state;
    srv_error e;
    srv_job *j = parse("{\"inputs\": [\"a b\", \"c\"]}", false, &e); /* ours: two texts */
    assert_non_null(j);
    assert_int_equal(j->n_items, 2);
    assert_false(j->single);
    srv_job_free(j);
    j = parse("{\"inputs\": [\"a b\", \"c\"]}", true, &e); /* TEI: one pair */
    assert_non_null(j);
    assert_int_equal(j->n_items, 1);
    assert_true(j->single);
    assert_int_equal(j->items[0].enc.type_ids[j->items[0].enc.n - 1], 1);
    srv_job_free(j);
    j = parse("{\"inputs\": [[\"q\", \"a\"], [\"only\"]], \"top_k\": 1}", false, &e);
    assert_non_null(j);
    assert_int_equal(j->n_items, 2);
    assert_int_equal(j->top_k, 1);
    srv_job_free(j);
}

static void test_item_level_errors_and_truncation(void **state) {
    (void)state;
    srv_error e;
    const char *long_text = "one two three four five six seven eight nine ten eleven";
    char body[512];
    snprintf(body, sizeof body, "{\"inputs\": [\"fine\", \"%s\", \"\"]}", long_text);
    srv_job *j = parse(body, false, &e);
    assert_non_null(j);
    assert_int_equal(j->items[0].err.status, 0);
    assert_int_equal(j->items[1].err.status, 422); /* 13 tokens > 12, truncate off */
    assert_int_equal(j->items[2].err.status, 422); /* empty */
    srv_job_free(j);
    snprintf(body, sizeof body, "{\"inputs\": \"%s\", \"truncate\": true}", long_text);
    j = parse(body, false, &e);
    assert_non_null(j);
    assert_int_equal(j->items[0].err.status, 0);
    assert_int_equal(j->items[0].enc.n, 12);
    assert_int_equal(j->items[0].enc.n_truncated, 1);
    srv_job_free(j);
}

/* A job whose every item failed answers with the first item's status and error. */
static void test_format_all_failed(void **state) {
    (void)state;
    srv_error e;
    srv_job *j = parse("{\"inputs\": \"\"}", false, &e);
    assert_non_null(j);
    int status = 0;
    char *body = srv_format_classify(model, j, "rid", 1.0, &status);
    assert_int_equal(status, 422);
    json_t *o = json_loads(body, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(o, "request_id")), "rid");
    assert_string_equal(json_string_value(json_object_get(o, "error_type")), "Validation");
    json_decref(o);
    free(body);
    srv_job_free(j);
}

static void test_tokenize_format(void **state) {
    (void)state;
    srv_error e = {0};
    int status = 0;
    const char *b = "{\"inputs\": [\"Hi there\"], \"add_special_tokens\": false}";
    char *out = srv_handle_tokenize(model, &lim, b, strlen(b), &status, &e);
    assert_non_null(out);
    assert_int_equal(status, 200);
    json_t *o = json_loads(out, 0, NULL), *toks = json_array_get(o, 0);
    assert_int_equal(json_array_size(toks), 2); /* hi, there: no [CLS]/[SEP] */
    assert_string_equal(json_string_value(json_object_get(json_array_get(toks, 1), "text")),
                        "there");
    assert_int_equal(json_integer_value(json_object_get(json_array_get(toks, 1), "start")), 3);
    json_decref(o);
    free(out);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_level_errors),
        cmocka_unit_test(test_shapes_ours_and_tei),
        cmocka_unit_test(test_item_level_errors_and_truncation),
        cmocka_unit_test(test_format_all_failed),
        cmocka_unit_test(test_tokenize_format),
    };
    return cmocka_run_group_tests_name("server_api", tests, setup, teardown);
}
