/* test_tokenizer.c — the WordPiece tokenizer against Hugging Face `tokenizers` golden files.
 *
 * Golden files come from tools/tokenizer_golden.py (tests/fixtures/tokenizer/). The dev-set
 * goldens hold ids / type_ids / byte offsets but not the sentences (data licence): the
 * sentences are read from ../shared/data (override with UFB_DATA_DIR) and those tests are
 * skipped with a message when the folder is absent. Run from the repository root.
 */
#include <setjmp.h> /* cmocka.h needs these first */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "engine.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FIX "tests/fixtures/tokenizer/"

typedef struct fixture {
    ufb_tokenizer *bert_json, *bert_txt, *crammed;
    ufb_tokenizer *misc_a, *misc_b; /* the remaining normalizers / pre-tokenizers / processors */
} fixture;

static const char *data_dir(void) {
    const char *d = getenv("UFB_DATA_DIR");
    return d ? d : "../shared/data";
}

static int group_setup(void **state) {
    static fixture fx;
    char err[256], path[512];
    snprintf(path, sizeof path, "%s/bert-base-uncased/tokenizer.json", data_dir());
    fx.bert_json = ufb_tokenizer_load(path, err, sizeof err);
    snprintf(path, sizeof path, "%s/bert-base-uncased/vocab.txt", data_dir());
    fx.bert_txt = ufb_tokenizer_load(path, err, sizeof err);
    if (!fx.bert_json || !fx.bert_txt)
        printf("tokenizer: bert-base-uncased not found under %s: BERT tests will skip\n",
               data_dir());
    static const char *const own[3] = {FIX "crammed_tokenizer.json", FIX "misc_a_tokenizer.json",
                                       FIX "misc_b_tokenizer.json"};
    ufb_tokenizer **dst[3] = {&fx.crammed, &fx.misc_a, &fx.misc_b};
    for (int i = 0; i < 3; i++) {
        *dst[i] = ufb_tokenizer_load(own[i], err, sizeof err);
        if (!*dst[i]) {
            fprintf(stderr, "%s\n", err);
            return -1;
        }
    }
    *state = &fx;
    return 0;
}

static int group_teardown(void **state) {
    fixture *fx = *state;
    ufb_tokenizer_free(fx->bert_json);
    ufb_tokenizer_free(fx->bert_txt);
    ufb_tokenizer_free(fx->crammed);
    ufb_tokenizer_free(fx->misc_a);
    ufb_tokenizer_free(fx->misc_b);
    return 0;
}

/* ---- Golden comparison ---- */

static json_t *load_golden(const char *name) {
    char path[512];
    json_error_t jerr;
    snprintf(path, sizeof path, FIX "%s", name);
    json_t *j = json_load_file(path, JSON_ALLOW_NUL, &jerr);
    if (!j)
        fail_msg("%s: %s (line %d) — regenerate with tools/tokenizer_golden.py", path, jerr.text,
                 jerr.line);
    return j;
}

/* @return 1 when enc equals the golden case; prints the first difference otherwise. */
static int same_as_golden(const ufb_encoding *enc, json_t *c, const char *what) {
    json_t *ids = json_object_get(c, "ids"), *types = json_object_get(c, "type_ids");
    json_t *offs = json_object_get(c, "offsets");
    if ((size_t)enc->n != json_array_size(ids)) {
        fprintf(stderr, "%s: %d tokens, HF %zu\n", what, enc->n, json_array_size(ids));
        return 0;
    }
    for (int i = 0; i < enc->n; i++) {
        int32_t id = (int32_t)json_integer_value(json_array_get(ids, (size_t)i));
        int32_t ty = (int32_t)json_integer_value(json_array_get(types, (size_t)i));
        int32_t s = (int32_t)json_integer_value(json_array_get(offs, 2 * (size_t)i));
        int32_t e = (int32_t)json_integer_value(json_array_get(offs, 2 * (size_t)i + 1));
        if (enc->ids[i] != id || enc->type_ids[i] != ty || enc->offsets[2 * i] != s ||
            enc->offsets[2 * i + 1] != e) {
            fprintf(stderr, "%s: token %d is id %d type %d (%d,%d), HF id %d type %d (%d,%d)\n",
                    what, i, enc->ids[i], enc->type_ids[i], enc->offsets[2 * i],
                    enc->offsets[2 * i + 1], id, ty, s, e);
            return 0;
        }
    }
    return 1;
}

static int check_case(const ufb_tokenizer *tok, json_t *c, const char *text, size_t len,
                      const char *pair, size_t pair_len, int max_len, const char *what) {
    ufb_encoding enc;
    char err[256];
    int rc = ufb_tokenize(tok, &enc, text, len, pair, pair_len, max_len, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "%s: tokenize failed: %s\n", what, err);
        return 0;
    }
    int ok = same_as_golden(&enc, c, what);
    ufb_encoding_free(&enc);
    return ok;
}

/* ---- Dev sets (sentences from ../shared/data) ---- */

typedef struct lines {
    char **s;
    size_t n;
} lines;

static void lines_free(lines *l) {
    for (size_t i = 0; i < l->n; i++)
        free(l->s[i]);
    free(l->s);
}

/* SST-2: header, "sentence<TAB>label"; CoLA: "source<TAB>label<TAB><TAB>sentence". */
static int read_sentences(const char *set, lines *out) {
    char path[512], *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int is_sst2 = strcmp(set, "sst2") == 0;
    snprintf(path, sizeof path, "%s/%s/dev.tsv", data_dir(), is_sst2 ? "SST-2" : "CoLA");
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    memset(out, 0, sizeof *out);
    for (int ln = 0; (len = getline(&line, &cap, f)) >= 0; ln++) {
        if (is_sst2 && ln == 0) continue;
        if (len > 0 && line[len - 1] == '\n') line[--len] = 0;
        char *s = line;
        if (is_sst2) {
            char *tab = strrchr(line, '\t');
            if (tab) *tab = 0;
        } else {
            for (int k = 0; k < 3 && s; k++)
                s = strchr(s, '\t') ? strchr(s, '\t') + 1 : NULL;
            if (!s) s = line + len;
        }
        out->s = realloc(out->s, (out->n + 1) * sizeof *out->s);
        assert_non_null(out->s);
        out->s[out->n++] = strdup(s);
    }
    free(line);
    fclose(f);
    return 0;
}

/* @return the number of cases compared (all must match). */
static size_t run_dev_set(const ufb_tokenizer *tok, const char *golden, const char *set,
                          const lines *sents) {
    json_t *g = load_golden(golden), *c;
    json_t *cases = json_object_get(g, "cases");
    int pairs = json_is_true(json_object_get(g, "pairs"));
    int max_len = (int)json_integer_value(json_object_get(g, "max_len"));
    size_t i, n_bad = 0;
    char what[128];
    json_array_foreach(cases, i, c) {
        size_t a = pairs ? 2 * i : i;
        assert_true(a + (size_t)pairs < sents->n);
        const char *t = sents->s[a], *p = pairs ? sents->s[a + 1] : NULL;
        assert_int_equal(strlen(t), json_integer_value(json_object_get(c, "n_bytes")));
        snprintf(what, sizeof what, "%s %s line %zu", golden, set, a);
        n_bad += !check_case(tok, c, t, strlen(t), p, p ? strlen(p) : 0, max_len, what);
    }
    json_decref(g);
    assert_int_equal(n_bad, 0);
    return i;
}

static void dev_sets(const ufb_tokenizer *tok, const char *name, const char *label) {
    static const char *const sets[2] = {"sst2", "cola"};
    size_t counts[4];
    char golden[128];
    lines sents[2];
    memset(sents, 0, sizeof sents);
    if (read_sentences("sst2", &sents[0]) < 0 || read_sentences("cola", &sents[1]) < 0) {
        lines_free(&sents[0]);
        printf(
            "tokenizer: SKIP %s dev sets: %s/{SST-2,CoLA}/dev.tsv not found (set UFB_DATA_DIR)\n",
            label, data_dir());
        skip();
    }
    for (int k = 0; k < 2; k++) {
        snprintf(golden, sizeof golden, "%s_%s.json", name, sets[k]);
        counts[k] = run_dev_set(tok, golden, sets[k], &sents[k]);
        snprintf(golden, sizeof golden, "%s_%s_pairs.json", name, sets[k]);
        counts[2 + k] = run_dev_set(tok, golden, sets[k], &sents[k]);
        lines_free(&sents[k]);
    }
    printf("tokenizer (%s): %zu SST-2 dev + %zu CoLA dev sentences identical to HF tokenizers; "
           "%zu + %zu pairs at max_len 16 (longest_first) identical\n",
           label, counts[0], counts[1], counts[2], counts[3]);
}

static void test_dev_bert_json(void **state) {
    fixture *fx = *state;
    if (!fx->bert_json) skip();
    dev_sets(fx->bert_json, "bert", "bert-base-uncased tokenizer.json");
}

static void test_dev_bert_vocab_txt(void **state) {
    fixture *fx = *state;
    if (!fx->bert_txt) skip();
    dev_sets(fx->bert_txt, "bert", "bert-base-uncased vocab.txt");
}

static void test_dev_crammed(void **state) {
    dev_sets(((fixture *)*state)->crammed, "crammed", "crammed vocab 2000");
}

/* ---- Hard cases (text stored in the golden file) ---- */

static void hard_cases(const ufb_tokenizer *tok, const char *golden, const char *label) {
    assert_non_null(tok);
    json_t *g = load_golden(golden), *c;
    size_t i, n_bad = 0;
    char what[160];
    json_array_foreach(json_object_get(g, "cases"), i, c) {
        json_t *t = json_object_get(c, "text"), *p = json_object_get(c, "pair");
        snprintf(what, sizeof what, "%s case %zu \"%.40s\"", golden, i, json_string_value(t));
        n_bad += !check_case(tok, c, json_string_value(t), json_string_length(t),
                             json_is_string(p) ? json_string_value(p) : NULL, json_string_length(p),
                             (int)json_integer_value(json_object_get(c, "max_len")), what);
    }
    json_decref(g);
    printf("tokenizer (%s): %zu hard cases, %zu differ from HF\n", label, i, n_bad);
    assert_int_equal(n_bad, 0);
}

static void test_hard_bert_json(void **state) {
    fixture *fx = *state;
    if (!fx->bert_json) skip();
    hard_cases(fx->bert_json, "bert_hard.json", "bert tokenizer.json");
}

static void test_hard_bert_vocab_txt(void **state) {
    fixture *fx = *state;
    if (!fx->bert_txt) skip();
    hard_cases(fx->bert_txt, "bert_hard.json", "bert vocab.txt");
}

static void test_hard_crammed(void **state) {
    hard_cases(((fixture *)*state)->crammed, "crammed_hard.json", "crammed");
}

/* Strip, NFD, Lowercase, Replace(\\s+), WhitespaceSplit + BertPreTokenizer, BertProcessing,
 * added tokens with lstrip / rstrip / single_word. */
static void test_hard_misc_a(void **state) {
    hard_cases(((fixture *)*state)->misc_a, "misc_a_hard.json", "misc_a");
}

/* BertNormalizer without accent stripping or CJK, Whitespace, no post-processor. */
static void test_hard_misc_b(void **state) {
    hard_cases(((fixture *)*state)->misc_b, "misc_b_hard.json", "misc_b");
}

/* ---- Invalid input ---- */

static void test_invalid_utf8(void **state) {
    static const struct {
        const char *bytes;
        size_t len;
        size_t at;
    } bad[] = {
        {"ab\xC0\xAF", 4, 2},       /* overlong '/' */
        {"\xE0\x80\xAF", 3, 0},     /* overlong, 3 bytes */
        {"\xF0\x80\x80\xAF", 4, 0}, /* overlong, 4 bytes */
        {"x\x80y", 3, 1},           /* lone continuation byte */
        {"abc\xBF", 4, 3},          /* lone continuation at the end */
        {"\xED\xA0\x80", 3, 0},     /* surrogate U+D800 */
        {"ok \xED\xBF\xBF", 6, 3},  /* surrogate U+DFFF */
        {"\xE4\xB8", 2, 0},         /* truncated 3-byte sequence */
        {"caf\xC3", 4, 3},          /* truncated 2-byte sequence */
        {"\xF0\x9F\x91", 3, 0},     /* truncated 4-byte sequence */
        {"\xF4\x90\x80\x80", 4, 0}, /* U+110000 */
        {"\xF5\x80\x80\x80", 4, 0}, /* lead byte F5 */
        {"\xFF", 1, 0},
        {"\xC3\x28", 2, 0}, /* bad continuation */
    };

    fixture *fx = *state;
    char err[256], want[64];
    ufb_encoding enc;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc =
            ufb_tokenize(fx->crammed, &enc, bad[i].bytes, bad[i].len, NULL, 0, 0, err, sizeof err);
        assert_int_equal(rc, UFB_ERR_INVALID);
        assert_null(enc.ids);
        snprintf(want, sizeof want, "at byte %zu", bad[i].at);
        assert_non_null(strstr(err, want));
        rc = ufb_tokenize(fx->crammed, &enc, "fine", 4, bad[i].bytes, bad[i].len, 0, err,
                          sizeof err);
        assert_int_equal(rc, UFB_ERR_INVALID);
        assert_non_null(strstr(err, "pair"));
    }
}

/* Embedded NUL is an ordinary code point U+0000 (as in a Python str): BertNormalizer's
 * clean_text drops it; the crammed pipeline keeps it as a punctuation-like piece -> <unk>. */
static void test_embedded_nul(void **state) {
    fixture *fx = *state;
    ufb_encoding enc;
    char err[256];
    assert_int_equal(ufb_tokenize(fx->crammed, &enc, "a\0b", 3, NULL, 0, 0, err, sizeof err), 0);
    assert_int_equal(enc.n, 4); /* a, \0 (unk), b, <sep> */
    assert_int_equal(enc.ids[1], ufb_tokenizer_token_to_id(fx->crammed, "<unk>"));
    assert_int_equal(enc.offsets[2], 1);
    assert_int_equal(enc.offsets[3], 2);
    ufb_encoding_free(&enc);
    if (!fx->bert_json) return;
    assert_int_equal(ufb_tokenize(fx->bert_json, &enc, "a\0b", 3, NULL, 0, 0, err, sizeof err), 0);
    assert_int_equal(enc.n, 3); /* [CLS] ab [SEP]: the NUL vanishes and joins the word */
    assert_int_equal(enc.offsets[2], 0);
    assert_int_equal(enc.offsets[3], 3);
    ufb_encoding_free(&enc);
}

static void test_api(void **state) {
    fixture *fx = *state;
    const ufb_tokenizer *t = fx->crammed;
    ufb_encoding enc;
    char err[256];
    ufb_tokenizer_free(NULL);
    ufb_encoding_free(NULL);
    assert_int_equal(ufb_tokenizer_vocab_size(t), 2000);
    assert_string_equal(ufb_tokenizer_id_to_token(t, ufb_tokenizer_token_to_id(t, "<mask>")),
                        "<mask>");
    assert_null(ufb_tokenizer_id_to_token(t, -1));
    assert_null(ufb_tokenizer_id_to_token(t, 2000));
    assert_int_equal(ufb_tokenizer_token_to_id(t, "no-such-token"), -1);
    /* max_len below the template's special tokens cannot be honoured */
    assert_int_equal(ufb_tokenize(t, &enc, "a b", 3, "c", 1, 2, err, sizeof err), UFB_ERR_INVALID);
    assert_int_equal(ufb_tokenize(t, &enc, NULL, 0, NULL, 0, 0, err, sizeof err), 0);
    assert_int_equal(enc.n, 1); /* "$A <sep>" on an empty text */
    ufb_encoding_free(&enc);
    assert_int_equal(ufb_tokenize(t, &enc, "a b c d e", 9, NULL, 0, 3, err, sizeof err), 0);
    assert_int_equal(enc.n, 3);
    assert_int_equal(enc.n_truncated, 3);
    ufb_encoding_free(&enc);
    if (fx->bert_json) {
        assert_int_equal(ufb_tokenizer_vocab_size(fx->bert_json), 30522);
        assert_int_equal(ufb_tokenizer_token_to_id(fx->bert_json, "[MASK]"), 103);
        assert_int_equal(ufb_tokenizer_vocab_size(fx->bert_txt), 30522);
    }
}

/* ---- Load errors: NULL + a message, never a crash ---- */

static char tmp_dir[64];

static const char *write_tmp(const char *name, const char *content) {
    static char path[128];
    snprintf(path, sizeof path, "%s/%s", tmp_dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(content, f);
    fclose(f);
    return path;
}

static void expect_load_error(const char *path, const char *needle) {
    char err[256] = "";
    ufb_tokenizer *t = ufb_tokenizer_load(path, err, sizeof err);
    if (t || !strstr(err, needle))
        fail_msg("load of %s: got %p, message \"%s\", want \"%s\"", path, (void *)t, err, needle);
}

#define MODEL \
    "\"model\":{\"type\":\"WordPiece\",\"unk_token\":\"[UNK]\",\"vocab\":{\"[UNK]\":0,\"a\":1}}"

static void test_load_errors(void **state) {
    (void)state;
    strcpy(tmp_dir, "/tmp/ufb_tok_XXXXXX");
    assert_non_null(mkdtemp(tmp_dir));
    expect_load_error("/nonexistent/tokenizer.json", "cannot open");
    expect_load_error(write_tmp("t1.json", "{\"model\": {\"type\": \"WordPiece\", \"voc"),
                      "invalid JSON");
    expect_load_error(write_tmp("t2.json", "{" MODEL ",\"normalizer\":{\"type\":\"NFKC\"}}"),
                      "unsupported normalizer type 'NFKC'");
    expect_load_error(
        write_tmp("t3.json", "{" MODEL ",\"pre_tokenizer\":{\"type\":\"ByteLevel\"}}"),
        "unsupported pre_tokenizer type 'ByteLevel'");
    expect_load_error(write_tmp("t4.json", "{\"model\":{\"type\":\"BPE\",\"vocab\":{}}}"),
                      "unsupported model type 'BPE'");
    expect_load_error(
        write_tmp("t5.json", "{" MODEL ",\"post_processor\":{\"type\":\"RobertaProcessing\"}}"),
        "unsupported post_processor type");
    expect_load_error(write_tmp("t6.json", "{\"model\":{\"type\":\"WordPiece\",\"vocab\":{}}}"),
                      "empty vocabulary");
    expect_load_error(write_tmp("empty.txt", ""), "empty vocabulary");
    expect_load_error(write_tmp("t7.json", "{" MODEL ",\"normalizer\":{\"type\":\"Replace\","
                                           "\"pattern\":{\"Regex\":\"a|b\"},\"content\":\"\"}}"),
                      "unsupported regex");
    expect_load_error(write_tmp("t8.json",
                                "{\"model\":{\"type\":\"WordPiece\",\"unk_token\":\"<u>\","
                                "\"vocab\":{\"a\":1}}}"),
                      "unk_token '<u>'");
    expect_load_error(
        write_tmp("t9.json", "{\"model\":{\"type\":\"WordPiece\",\"vocab\":{\"a\":-4}}}"),
        "out of range");
    expect_load_error(write_tmp("t10.json", "[1, 2]"), "top level is not an object");
    expect_load_error(write_tmp("vocab_no_unk.txt", "a\nb\n"), "unk_token '[UNK]'");
    expect_load_error(write_tmp("t11.json", "{\"model\": 3}"), "missing model");
    expect_load_error(write_tmp("t12.json", "{" MODEL ",\"normalizer\":{\"type\":\"Sequence\","
                                            "\"normalizers\":[{\"type\":\"Lowercase\"},7]}}"),
                      "normalizer without a type");
    expect_load_error(write_tmp("t13.json",
                                "{" MODEL ",\"post_processor\":{\"type\":\"TemplateProcessing\","
                                "\"single\":[{\"SpecialToken\":{\"id\":\"[X]\",\"type_id\":0}}],"
                                "\"pair\":[],\"special_tokens\":{}}}"),
                      "has no ids");
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp_dir);
    if (system(cmd) != 0) /* best effort */
        fprintf(stderr, "could not remove %s\n", tmp_dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dev_bert_json),
        cmocka_unit_test(test_dev_bert_vocab_txt),
        cmocka_unit_test(test_dev_crammed),
        cmocka_unit_test(test_hard_bert_json),
        cmocka_unit_test(test_hard_bert_vocab_txt),
        cmocka_unit_test(test_hard_crammed),
        cmocka_unit_test(test_hard_misc_a),
        cmocka_unit_test(test_hard_misc_b),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_embedded_nul),
        cmocka_unit_test(test_api),
        cmocka_unit_test(test_load_errors),
    };
    return cmocka_run_group_tests_name("tokenizer", tests, group_setup, group_teardown);
}
