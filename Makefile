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
             -Iengine -I/usr/include/x86_64-linux-gnu/openblas-pthread
LDLIBS    ?= -lopenblas -ljansson -lm -lpthread
TEST_LIBS  = -lcmocka

ENGINE_SRC := $(wildcard engine/*.c)
ENGINE_OBJ := $(ENGINE_SRC:%.c=$(BUILD)/%.o)
TEST_SRC   := $(wildcard tests/test_*.c)
TEST_BIN   := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
CLI_SRC    := $(wildcard cli/*.c)
CLI_OBJ    := $(CLI_SRC:%.c=$(BUILD)/%.o)

# Per-file ISA for the SIMD kernels (run-time dispatch keeps the binary portable).
$(BUILD)/engine/%_avx2.o:   KFLAGS = -mavx2 -mfma -mf16c
$(BUILD)/engine/%_avx512.o: KFLAGS = -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma -mf16c

.PHONY: all help deps test check asan ubsan run clean format format-check lint fixtures bench

## all: release build of the engine library and the ufb CLI
all: $(BUILD)/ufb

help: ## print this list
	@grep -E '^## ' Makefile | sed 's/^## /  /'

$(BUILD)/%.o: %.c $(wildcard engine/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(KFLAGS) -MMD -c $< -o $@

$(BUILD)/libufb.a: $(ENGINE_OBJ)
	ar rcs $@ $^

$(BUILD)/ufb: $(CLI_OBJ) $(BUILD)/libufb.a
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/bench_ffn: bench/bench_ffn.c $(BUILD)/libufb.a
	$(CC) $(ALL_CFLAGS) -o $@ $< $(BUILD)/libufb.a $(LDLIBS)

$(BUILD)/tests/%: tests/%.c $(BUILD)/libufb.a $(wildcard tests/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Itests -o $@ $< $(BUILD)/libufb.a $(LDLIBS) $(TEST_LIBS)

## deps: install the Debian packages the build, tests and server need (no-op when present)
DEB_PKGS := build-essential pkg-config libmicrohttpd-dev libjansson-dev libopenblas-dev \
            libcmocka-dev curl python3
deps:
	@missing=$$(for p in $(DEB_PKGS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	else echo "deps: all present"; fi

## test: unit + integration tests (cmocka), release build
test: $(BUILD)/ufb $(TEST_BIN)
	@BUILD=$(BUILD) tests/run_tests.sh $(TEST_BIN)

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

## run: install what is missing, build, and serve the default model
run: deps all
	@if [ -x $(BUILD)/ufbd ]; then exec $(BUILD)/ufbd; \
	else echo "server not built yet (issue 4): the engine and CLI are built — try"; \
	     echo "  $(BUILD)/ufb inspect --model tests/fixtures/bert_text"; fi

## bench: rough single-thread timing of the FF layer, dense sgemm vs CMM (H=768, depth 11)
bench: $(BUILD)/bench_ffn
	$(BUILD)/bench_ffn 1
	$(BUILD)/bench_ffn 128

## fixtures: regenerate tests/fixtures with the PyTorch reference (needs tools/requirements.txt)
fixtures:
	$(PYTHON) tools/make_fixtures.py --out tests/fixtures

## format: clang-format all C sources in place; format-check fails on a difference
format:
	clang-format -i engine/*.[ch] cli/*.c tests/*.[ch] bench/*.c

format-check:
	clang-format --dry-run --Werror engine/*.[ch] cli/*.c tests/*.[ch] bench/*.c

## lint: module boundaries (engine includes nothing of ours but its own headers)
lint:
	@! grep -nE '#include "(\.\./)?(server|config|cli)/' engine/*.[ch] || \
	    (echo "engine/ must not include server/, config/ or cli/"; exit 1)

## clean: remove all build directories
clean:
	rm -rf build build-asan build-ubsan

-include $(ENGINE_OBJ:.o=.d) $(CLI_OBJ:.o=.d)
