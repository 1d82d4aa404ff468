/* fuzz_request.c — request JSON parsing, validation and tokenization (server/srv_api.c) on
 * arbitrary bodies: /classify, /predict (TEI) and /tokenize, against a real small model. */
#include "srv_impl.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static ufb_model *m;
    static const srv_limits lim = {64, 64};
    if (!m) {
        char err[256];
        m = ufb_model_load("tests/fixtures/bert_text", NULL, err, sizeof err);
        if (!m) abort();
    }
    srv_error e;
    for (int tei = 0; tei < 2; tei++) {
        srv_job *job = srv_parse_classify(m, &lim, (const char *)data, size, tei, &e);
        srv_job_free(job);
    }
    int status;
    free(srv_handle_tokenize(m, &lim, (const char *)data, size, &status, &e));
    return 0;
}
