/* fuzz_tokenizer.c — the tokenizer on arbitrary bytes (invalid UTF-8 included), with the BERT
 * and the crammed tokenizer, single texts and pairs (split at the first 0xff byte). */
#include "engine.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static ufb_tokenizer *tok[2];
    char err[256];
    if (!tok[0]) {
        tok[0] = ufb_tokenizer_load("tests/fixtures/bert_text/tokenizer.json", err, sizeof err);
        tok[1] =
            ufb_tokenizer_load("tests/fixtures/tokenizer/crammed_tokenizer.json", err, sizeof err);
        if (!tok[0] || !tok[1]) abort();
    }
    const uint8_t *cut = memchr(data, 0xff, size);
    size_t a = cut ? (size_t)(cut - data) : size;
    for (int k = 0; k < 2; k++) {
        ufb_encoding enc = {0};
        ufb_tokenize(tok[k], &enc, (const char *)data, size, NULL, 0, 0, err, sizeof err);
        ufb_encoding_free(&enc);
        if (!cut) continue;
        ufb_tokenize(tok[k], &enc, (const char *)data, a, (const char *)cut + 1, size - a - 1, 16,
                     err, sizeof err);
        ufb_encoding_free(&enc);
    }
    return 0;
}
