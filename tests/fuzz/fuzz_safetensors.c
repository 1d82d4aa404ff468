/* fuzz_safetensors.c — safetensors header parsing on arbitrary bytes, then the same bytes as
 * the model.safetensors of a real model folder (config.json of a fixture) through the loader,
 * which binds tensors by name and shape. */
#include "engine_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char dir[64];
    char err[512], path[256];
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/dev/shm/ufb_fuzz_st_%d", (int)getpid());
        snprintf(path, sizeof path,
                 "mkdir -p %s && cp tests/fixtures/crammed_d3_t1_f32/config.json "
                 "%s/",
                 dir, dir);
        if (system(path) != 0) abort();
    }
    ufb_st_file f = {0};
    ufb_st_parse(&f, data, size, err, sizeof err);
    ufb_st_close(&f);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    FILE *out = fopen(path, "wb");
    if (!out) abort();
    fwrite(data, 1, size, out);
    fclose(out);
    ufb_model_free(ufb_model_load(dir, NULL, err, sizeof err));
    return 0;
}
