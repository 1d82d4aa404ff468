# ufbd — build, test and run. `make help` lists the targets.
#
# Release objects go to build/, sanitizer builds to build-asan/ and build-ubsan/.
# The base ISA is x86-64-v2 so the binaries run on any recent x86-64; the CMM kernels for
# AVX2 and AVX-512 are compiled with their own target flags and chosen at run time.

CC        ?= cc
PYTHON    ?= python3
BUILD     ?= build
ARCHFLAGS ?= -march=x86-64-v2 -mtune=generic
OPT       ?= -O3
WARN      := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wvla -Wformat=2 \
             -Wundef -Wpointer-arith -Wcast-align -Wswitch-enum -Werror
CFLAGS    ?= $(OPT) -g
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE $(ARCHFLAGS) $(WARN) $(CFLAGS) $(EXTRA_CFLAGS) \
             -Iengine -Iconfig -I/usr/include/x86_64-linux-gnu/openblas-pthread
LDLIBS    ?= -lopenblas -ljansson -lm -lpthread
SRV_LIBS   = -lmicrohttpd
TEST_LIBS  = -lcmocka

ENGINE_SRC := $(wildcard engine/*.c)
ENGINE_OBJ := $(ENGINE_SRC:%.c=$(BUILD)/%.o)
TEST_SRC   := $(wildcard tests/test_*.c)
FUZZ_TARGETS := request tokenizer safetensors config
FUZZ_REPLAY  := $(FUZZ_TARGETS:%=$(BUILD)/fuzz/replay_%)
TEST_BIN   := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
CLI_SRC    := $(wildcard cli/*.c) $(wildcard bench/*.c)
CLI_OBJ    := $(CLI_SRC:%.c=$(BUILD)/%.o)
CFG_OBJ    := $(patsubst %.c,$(BUILD)/%.o,$(wildcard config/*.c))
SRV_SRC    := $(filter-out server/srv_main.c,$(wildcard server/*.c))
SRV_OBJ    := $(SRV_SRC:%.c=$(BUILD)/%.o) $(BUILD)/gen/srv_assets.o
LIBS_ALL   := $(BUILD)/libsrv.a $(BUILD)/libcfg.a $(BUILD)/libufb.a

# Per-file ISA for the SIMD kernels (run-time dispatch keeps the binary portable).
$(BUILD)/engine/%_avx2.o:   KFLAGS = -mavx2 -mfma -mf16c
$(BUILD)/engine/%_avx512.o: KFLAGS = -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma -mf16c

.PHONY: all help deps test check asan ubsan tsan fuzz soak run clean format format-check lint \
        fixtures bench

## all: release build of the engine, the ufb CLI and the ufbd server
all: $(BUILD)/ufb $(BUILD)/ufbd

help: ## print this list
	@grep -E '^## ' Makefile | sed 's/^## /  /'

$(BUILD)/%.o: %.c $(wildcard engine/*.h config/*.h server/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(KFLAGS) -MMD -c $< -o $@

# The web page and the OpenAPI document are compiled into the server binary.
$(BUILD)/gen/srv_assets.c: server/page.html server/openapi.json
	@mkdir -p $(dir $@)
	{ echo '/* generated from server/page.html and server/openapi.json */'; \
	  xxd -i -n srv_page_html server/page.html; xxd -i -n srv_openapi_json server/openapi.json; } \
	  | sed 's/^unsigned/const unsigned/' > $@

$(BUILD)/gen/srv_assets.o: $(BUILD)/gen/srv_assets.c
	$(CC) $(ALL_CFLAGS) -Wno-missing-variable-declarations -c $< -o $@

$(BUILD)/libsrv.a: $(SRV_OBJ)
	ar rcs $@ $^

$(BUILD)/libcfg.a: $(CFG_OBJ)
	ar rcs $@ $^

$(BUILD)/ufbd: $(BUILD)/server/srv_main.o $(BUILD)/libsrv.a $(BUILD)/libcfg.a $(BUILD)/libufb.a
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(SRV_LIBS) $(LDLIBS)

# A test build of the server with the fault-injection hook of srv_batch.c (tests/test_faults.c);
# the production ufbd has no hook.
$(BUILD)/server/srv_batch_fault.o: server/srv_batch.c $(wildcard engine/*.h config/*.h server/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -DUFBD_FAULT_INJECTION -MMD -c $< -o $@

$(BUILD)/ufbd-fault: $(BUILD)/server/srv_main.o $(BUILD)/server/srv_batch_fault.o \
                     $(filter-out $(BUILD)/server/srv_batch.o,$(SRV_OBJ)) $(BUILD)/libcfg.a \
                     $(BUILD)/libufb.a
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(SRV_LIBS) $(LDLIBS)

$(BUILD)/libufb.a: $(ENGINE_OBJ)
	ar rcs $@ $^

$(BUILD)/ufb: $(CLI_OBJ) $(BUILD)/libufb.a
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: tests/%.c $(LIBS_ALL) $(wildcard tests/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Itests -Iserver -o $@ $< $(LIBS_ALL) $(SRV_LIBS) $(LDLIBS) $(TEST_LIBS)

# The fuzz targets built with gcc and a replay main: make test replays the committed corpus.
$(BUILD)/fuzz/replay_%: tests/fuzz/fuzz_%.c tests/fuzz/replay.c $(LIBS_ALL)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Iserver -o $@ $< tests/fuzz/replay.c $(LIBS_ALL) $(SRV_LIBS) $(LDLIBS)

## fuzz: libFuzzer (clang, ASan+UBSan) on each target for FUZZ_SECONDS (default 60) each
FUZZ_SECONDS ?= 60
FUZZ_FLAGS = -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all -g
fuzz:
	$(MAKE) BUILD=build-fuzz CC=clang OPT=-O1 EXTRA_CFLAGS="$(FUZZ_FLAGS)" \
	    build-fuzz/libufb.a build-fuzz/libsrv.a build-fuzz/libcfg.a
	@for t in $(FUZZ_TARGETS); do \
	    clang $(ALL_CFLAGS) -O1 -g -fsanitize=fuzzer,address,undefined -Iserver \
	        -o build-fuzz/fuzz_$$t tests/fuzz/fuzz_$$t.c build-fuzz/libsrv.a build-fuzz/libcfg.a \
	        build-fuzz/libufb.a $(SRV_LIBS) $(LDLIBS) || exit 1; \
	    mkdir -p build-fuzz/corpus/$$t; \
	    echo "=== fuzz $$t ($(FUZZ_SECONDS) s)"; \
	    build-fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	        -max_len=65536 build-fuzz/corpus/$$t tests/fuzz/corpus/$$t 2>&1 \
	        | grep -E "stat::number_of_executed_units|ERROR|SUMMARY|crash-|Done" || exit 1; \
	    ! ls crash-* leak-* timeout-* 2>/dev/null | grep . || exit 1; \
	done

## deps: install the Debian packages the build, tests and server need (no-op when present)
DEB_PKGS := build-essential pkg-config libmicrohttpd-dev libjansson-dev libopenblas-dev \
            libcmocka-dev curl python3 xxd chromium clang libclang-rt-14-dev wrk
deps:
	@missing=$$(for p in $(DEB_PKGS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	else echo "deps: all present"; fi

## test: unit + integration tests (cmocka), release build
test: $(BUILD)/ufb $(BUILD)/ufbd $(BUILD)/ufbd-fault $(TEST_BIN) $(FUZZ_REPLAY)
	@BUILD=$(BUILD) tests/run_tests.sh $(TEST_BIN) \
	    $(foreach t,$(FUZZ_TARGETS),"$(BUILD)/fuzz/replay_$(t) tests/fuzz/corpus/$(t)") \
	    "$(PYTHON) tools/check_openapi.py server/openapi.json" \
	    "tests/test_page.sh $(BUILD) tests/fixtures/bert_text"

check: test

## asan: the whole test suite under AddressSanitizer + UBSan
asan:
	$(MAKE) test BUILD=build-asan OPT=-O1 \
	    EXTRA_CFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer" \
	    LDLIBS="-fsanitize=address,undefined -lopenblas -ljansson -lm -lpthread"

## ubsan: the whole test suite under UndefinedBehaviorSanitizer alone
ubsan:
	$(MAKE) test BUILD=build-ubsan OPT=-O1 \
	    EXTRA_CFLAGS="-fsanitize=undefined -fno-sanitize-recover=all -fno-omit-frame-pointer" \
	    LDLIBS="-fsanitize=undefined -lopenblas -ljansson -lm -lpthread"

## tsan: ThreadSanitizer build of the engine pool and server tests (batcher, workers, drain)
tsan:
	$(MAKE) BUILD=build-tsan OPT=-O1 \
	    EXTRA_CFLAGS="-fsanitize=thread -fno-omit-frame-pointer" \
	    LDLIBS="-fsanitize=thread -lopenblas -ljansson -lm -lpthread" \
	    build-tsan/ufbd build-tsan/ufbd-fault build-tsan/tests/test_server \
	    build-tsan/tests/test_model build-tsan/tests/test_bad_input build-tsan/tests/test_kernels \
	    build-tsan/tests/test_faults
	OPENBLAS_NUM_THREADS=1 TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
	    BUILD=build-tsan tests/run_tests.sh build-tsan/tests/test_kernels build-tsan/tests/test_model \
	    build-tsan/tests/test_server build-tsan/tests/test_bad_input build-tsan/tests/test_faults

## soak: SOAK_SECONDS (default 600) of wrk at saturation plus bursts beyond the queue (tests/soak/)
SOAK_SECONDS ?= 600
soak: $(BUILD)/ufbd
	tests/soak/soak.sh --build $(BUILD) --duration $(SOAK_SECONDS)

## run: install what is missing, build, and serve the default model on port 8080
MODEL ?= models/sst2-minilm-fff
run: deps all
	@model=$(MODEL); if [ ! -f $$model/config.json ]; then \
	    echo "note: $$model is not in the tree yet; serving the test fixture tests/fixtures/bert_text (random weights)"; \
	    model=tests/fixtures/bert_text; fi; \
	exec $(BUILD)/ufbd --model $$model --port 8080

## bench: memory bandwidth, FF layer (dense vs FFF), end to end (FFF/dense engine, ONNX Runtime,
##        PyTorch): JSON, summary.md and PNGs in BENCH_OUT (default bench/results)
# Random-weight UltraFastBERT-1x11 / crammedBERT folders (~1.2 GB) live outside the repository.
# OpenBLAS runs with its own best kernels here (perf-notes.md: the environment's
# OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE would hold the dense baselines to AVX2); the core used is
# printed in every JSON.
BENCH_MODELS  ?= /work/scratch/ufbd-bench
BENCH_OUT     ?= bench/results
BENCH_THREADS ?= $(shell nproc)
BENCH_ENV     ?= env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE
bench: $(BUILD)/ufb
	@mkdir -p $(BENCH_OUT)
	$(PYTHON) -m pip install -q -r bench/requirements.txt || \
	    echo "bench: pip install failed; peers or plots may be skipped"
	$(BENCH_ENV) $(BUILD)/ufb bench triad --json > $(BENCH_OUT)/triad.json
	$(BENCH_ENV) $(BUILD)/ufb bench ffn --hidden 768 --depth 11 --trees 1 --layers 16 \
	    --batch 1,8,32,128,1024 --threads 1,2 --json > $(BENCH_OUT)/ffn.json
	$(PYTHON) bench/make_bench_models.py --out $(BENCH_MODELS)
	$(BENCH_ENV) $(BUILD)/ufb bench model --model $(BENCH_MODELS)/fff-1x11 \
	    --model $(BENCH_MODELS)/dense-3072 --threads $(BENCH_THREADS) --json > $(BENCH_OUT)/model.json
	@if $(PYTHON) -c 'import onnx, onnxruntime' 2>/dev/null; then \
	    echo "$(PYTHON) bench/e2e_peers.py --model $(BENCH_MODELS)/dense-3072 ..."; \
	    $(BENCH_ENV) $(PYTHON) bench/e2e_peers.py --model $(BENCH_MODELS)/dense-3072 \
	        --threads $(BENCH_THREADS) --json > $(BENCH_OUT)/peers.json || exit 1; \
	else echo "bench: onnxruntime not installed, skipping the ONNX Runtime / PyTorch peers"; \
	    rm -f $(BENCH_OUT)/peers.json; fi
	$(PYTHON) bench/plot.py --out $(BENCH_OUT) $(BENCH_OUT)/*.json

## fixtures: regenerate tests/fixtures with the PyTorch reference (needs tools/requirements.txt)
fixtures:
	$(PYTHON) tools/make_fixtures.py --out tests/fixtures

## format: clang-format all C sources in place; format-check fails on a difference
FMT_SRC = engine/*.[ch] cli/*.c tests/*.[ch] tests/fuzz/*.c bench/*.[ch] server/*.[ch] config/*.[ch]
format:
	clang-format -i $(FMT_SRC)

format-check:
	clang-format --dry-run --Werror $(FMT_SRC)

## lint: module boundaries (engine includes nothing of ours but its own headers)
lint:
	@! grep -nE '#include "(\.\./)?(server|config|cli)/|#include "(srv|cfg)_' engine/*.[ch] || \
	    (echo "engine/ must not include server/, config/ or cli/"; exit 1)
	@! grep -nE '#include "[^"]*(engine|srv|server|cli)[^"]*"' config/*.[ch] || \
	    (echo "config/ must include nothing of ours"; exit 1)
	@! grep -nE '#include "[^"]*_impl\.h"' server/*.[ch] | grep -vE '"(srv_impl|srv_http_impl)\.h"' || \
	    (echo "server/ may use engine/ and config/ only through engine.h and config.h"; exit 1)

## clean: remove all build directories
clean:
	rm -rf build build-asan build-ubsan build-tsan build-fuzz

-include $(ENGINE_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(CFG_OBJ:.o=.d) $(SRV_OBJ:.o=.d) \
         $(BUILD)/server/srv_batch_fault.d
