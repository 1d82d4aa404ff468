/* fuzz_config.c — the ufbd config file parser (config/config.c) on arbitrary bytes. */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char path[64];
    if (!path[0]) snprintf(path, sizeof path, "/dev/shm/ufb_fuzz_cfg_%d.json", (int)getpid());
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    fwrite(data, 1, size, f);
    fclose(f);
    char *argv[] = {"ufbd", "--config", path, NULL};
    char *envp[] = {NULL};
    cfg_settings s;
    char err[256];
    cfg_load(&s, 3, argv, envp, err, sizeof err);
    return 0;
}
