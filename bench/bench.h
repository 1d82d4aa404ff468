/* bench.h — benchmark drivers linked into the `ufb` tool (`ufb bench ...`). */
#ifndef UFB_BENCH_H
#define UFB_BENCH_H

/* `ufb bench ffn [options]`; argv holds the options only. @return exit code. */
int ufb_bench_ffn_main(int argc, char **argv);

#endif
