/* bench.h — benchmark drivers linked into the `ufb` tool (`ufb bench ...`). */
#ifndef UFB_BENCH_H
#define UFB_BENCH_H

/* `ufb bench ffn [options]`; argv holds the options only. @return exit code. */
int ufb_bench_ffn_main(int argc, char **argv);

/* `ufb bench model --model DIR [...]`: end-to-end sequences/s and p50 latency through the
 * public engine API. @return exit code. */
int ufb_bench_model_main(int argc, char **argv);

/* `ufb bench triad [...]`: STREAM-style memory bandwidth (triad, read-only sum). @return exit
 * code. */
int ufb_bench_triad_main(int argc, char **argv);

#endif
