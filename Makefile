# blkmig build.  `make` builds build/blkmigd; `make check` runs every test;
# `make demo` runs a verified live migration.  BUILD=build-asan with
# `./configure --builddir=build-asan --enable-sanitizers` gives an ASan build.

BUILD ?= build
-include $(BUILD)/config.mak

LIB_DIRS := util block jobs copy migration migration/block migration/qemu qapi nbd
LIB_SRCS := $(sort $(foreach d,$(LIB_DIRS),$(wildcard $(d)/*.c)))
SYS_SRCS := $(sort $(wildcard system/*.c))
TOOL_SRCS := $(sort $(wildcard tools/*.c))
LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/%.o)
SYS_OBJS := $(SYS_SRCS:%.c=$(BUILD)/%.o)
TOOL_OBJS := $(TOOL_SRCS:%.c=$(BUILD)/%.o)
LIBBLKMIG := $(BUILD)/libblkmig.a

# Test programs: tests/<kind>/test-*.c; each kind's other .c files are
# shared helpers linked into every test of that kind (qtest helpers are
# also linked into interop and fuzz tests, tests/lib into all).
TEST_KINDS := unit qtest interop fuzz faults
QTEST_HELPERS := $(filter-out tests/qtest/test-%.c,$(wildcard tests/qtest/*.c))
# tests/lib: helpers and fixtures every kind of test links (drives, files,
# hand-built stream bytes, the block-migration fixtures; each file says why).
TEST_LIB_SRCS := $(wildcard tests/lib/*.c)
define test_rules
$(1)_TESTS := $$(patsubst tests/$(1)/%.c,$(BUILD)/tests/$(1)/%,$$(sort $$(wildcard tests/$(1)/test-*.c)))
$(1)_HELPERS := $$(filter-out tests/$(1)/test-%.c,$$(wildcard tests/$(1)/*.c))
$(1)_HELPER_OBJS := $$(sort $$(patsubst %.c,$(BUILD)/%.o,$$($(1)_HELPERS) $(TEST_LIB_SRCS) $$(if $$(filter unit,$(1)),,$(QTEST_HELPERS))))
$(BUILD)/tests/$(1)/test-%: $(BUILD)/tests/$(1)/test-%.o $$($(1)_HELPER_OBJS) $(LIBBLKMIG)
	$$(CC) $$(LDFLAGS) -o $$@ $$^ $$(LIBS)
endef
$(foreach k,$(TEST_KINDS),$(eval $(call test_rules,$(k))))
ALL_TESTS := $(foreach k,$(TEST_KINDS),$($(k)_TESTS))
# test-raw counts the block layer's lseek calls through a wrapper;
# test-qcow2-concurrent and test-block-stream crash children right before
# a chosen pwrite.
%/tests/unit/test-raw: LDFLAGS += -Wl,--wrap=lseek
%/tests/unit/test-qcow2-concurrent: LDFLAGS += -Wl,--wrap=pwrite
%/tests/unit/test-block-stream: LDFLAGS += -Wl,--wrap=pwrite

CPPFLAGS += -Iinclude -MMD -MP

# libFuzzer targets: tests/fuzz/libfuzzer/fuzz-*.c, one per parser (the
# stream loader, QMP, NBD, qcow2), with seed corpora in
# tests/fuzz/corpus/<target>.  clang builds the library, system/ (without
# main.c) and the test helpers again, with coverage instrumentation,
# ASan and UBSan, under $(FUZZ_BUILD); the targets themselves link
# libFuzzer's main.  `make fuzz FUZZ_SECONDS=N` fuzzes each target N
# seconds (new inputs go to $(FUZZ_BUILD)/corpus/<target>, crashes to
# $(FUZZ_BUILD)/crashes/); `make check` runs each target once over its
# corpus (tests/fuzz/libfuzzer/corpus.sh, a TAP test).
FUZZ_CC ?= clang
FUZZ_BUILD := $(BUILD)/fuzz
FUZZ_SECONDS ?= 60
FUZZ_CFLAGS = $(filter-out -O2,$(CFLAGS)) -O1 -fno-omit-frame-pointer \
              -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_SRCS := $(sort $(wildcard tests/fuzz/libfuzzer/fuzz-*.c))
FUZZ_TARGETS := $(patsubst tests/fuzz/libfuzzer/%.c,$(FUZZ_BUILD)/%,$(FUZZ_SRCS))
FUZZ_LIB_SRCS := $(LIB_SRCS) $(filter-out system/main.c,$(SYS_SRCS)) $(TEST_LIB_SRCS) \
                 $(filter-out tests/fuzz/libfuzzer/fuzz-%.c,$(wildcard tests/fuzz/libfuzzer/*.c)) \
                 tests/fuzz/stream-fuzz-env.c tests/fuzz/stream-fuzz-load.c \
                 tests/fuzz/stream-fuzz-map.c
FUZZ_LIB := $(FUZZ_BUILD)/libfuzzlib.a
FUZZ_CORPUS_TEST := tests/fuzz/libfuzzer/corpus.sh
export FUZZ_BIN := $(abspath $(FUZZ_BUILD))

.PHONY: all tests check check-unit check-qtest check-interop demo deps clean install bench asan \
        bench-tls bench-converge bench-stream bench-copy fuzz fuzz-targets faults
all: $(BUILD)/config.mak $(BUILD)/blkmigd $(if $(TOOL_SRCS),$(BUILD)/blkmig)

$(BUILD)/config.mak: configure
	./configure --builddir=$(BUILD) $(if $(filter build-asan,$(BUILD)),--enable-sanitizers)

$(BUILD)/%.o: %.c $(BUILD)/config.mak
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(LIBBLKMIG): $(LIB_OBJS)
	rm -f $@
	ar rcs $@ $^

$(BUILD)/blkmigd: $(SYS_OBJS) $(LIBBLKMIG)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/blkmig: $(TOOL_OBJS) $(LIBBLKMIG)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

tests: all $(ALL_TESTS) $(FUZZ_TARGETS)

PROVE := prove --exec '' --timer
export BLKMIGD := $(abspath $(BUILD)/blkmigd)

check: deps
	$(MAKE) tests
	$(PROVE) $(unit_TESTS) $(qtest_TESTS) $(interop_TESTS) $(fuzz_TESTS) $(FUZZ_CORPUS_TEST) \
	    $(faults_TESTS)

check-unit: all $(unit_TESTS)
	$(PROVE) $(unit_TESTS)
check-qtest: all $(qtest_TESTS)
	$(PROVE) $(qtest_TESTS)
check-interop: all $(interop_TESTS)
	$(PROVE) $(interop_TESTS)

# Unit and whole-daemon tests with every program under AddressSanitizer
# and UBSan (the daemons too, through BLKMIGD).
ASAN_TESTS = $(subst $(BUILD)/,build-asan/,$(unit_TESTS) $(qtest_TESTS) $(fuzz_TESTS))
asan: deps
	$(MAKE) BUILD=build-asan all $(ASAN_TESTS)
	BLKMIGD=$(abspath build-asan/blkmigd) $(PROVE) $(ASAN_TESTS)

$(FUZZ_BUILD)/%.o: %.c $(BUILD)/config.mak
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

$(FUZZ_LIB): $(FUZZ_LIB_SRCS:%.c=$(FUZZ_BUILD)/%.o)
	rm -f $@
	ar rcs $@ $^

.SECONDARY: $(FUZZ_SRCS:%.c=$(FUZZ_BUILD)/%.o)
$(FUZZ_BUILD)/fuzz-%: $(FUZZ_BUILD)/tests/fuzz/libfuzzer/fuzz-%.o $(FUZZ_LIB)
	$(FUZZ_CC) $(LDFLAGS) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $^ $(LIBS)

fuzz-targets: all $(FUZZ_TARGETS)

fuzz: deps
	$(MAKE) fuzz-targets
	tests/fuzz/libfuzzer/run.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# Fault injection (tests/faults, as root): `make check` runs its quick
# subset; this runs rounds of every scenario until 200 faults have hit
# running migrations, and prints the table of outcomes.
faults: deps
	$(MAKE) all $(faults_TESTS)
	$(faults_TESTS) -m slow

demo: deps
	$(MAKE) all
	scripts/demo.sh $(DEMO_ARGS)

# Every benchmark in one go: the migration table (run.sh), then streaming,
# a write-heavy guest's migration and disk copies, each against QEMU's
# tools in the same run.  Each also has a target of its own below.  A
# failing one does not stop the others; bench fails if any did.
BENCH_SCRIPTS = tests/bench/run.sh "tests/bench/stream.sh $(STREAM_BENCH_ARGS)" \
                tests/bench/converge.sh tests/bench/copy.sh
bench: deps
	$(MAKE) all
	@rc=0; for b in $(BENCH_SCRIPTS); do $$b || rc=1; done; exit $$rc

# A write-heavy guest (fio through NBD) during a migration, per copy mode,
# against QEMU's write-blocking drive-mirror (tests/bench/converge.sh).
bench-converge: deps
	$(MAKE) all
	tests/bench/converge.sh

# blkmig copy against cp, qemu-img convert and nbdcopy (tests/bench/copy.sh).
bench-copy: deps
	$(MAKE) all
	tests/bench/copy.sh

# What TLS costs on loopback (plain vs x509 vs PSK sessions, 1 MiB writes).
# Unlike the helpers run.sh builds on its own, it links libblkmig.
TLS_BENCH := $(BUILD)/tests/bench/tls-throughput
$(TLS_BENCH): $(BUILD)/tests/bench/tls-throughput.o $(BUILD)/tests/lib/tls-certs.o $(LIBBLKMIG)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

bench-tls: deps
	$(MAKE) $(TLS_BENCH)
	$(TLS_BENCH) $(TLS_BENCH_ARGS)

# Streaming a 4 GiB template over NBD: blkmig's block-stream against
# QEMU 7.2's (STREAM_BENCH_ARGS: repetitions, default 3).
bench-stream: deps
	$(MAKE) all
	tests/bench/stream.sh $(STREAM_BENCH_ARGS)

deps:
	scripts/deps.sh

install: all
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 755 $(BUILD)/blkmigd $(DESTDIR)$(PREFIX)/bin/
	$(if $(TOOL_SRCS),install -m 755 $(BUILD)/blkmig $(DESTDIR)$(PREFIX)/bin/)

clean:
	rm -rf build build-asan

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
