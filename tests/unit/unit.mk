# tests/unit/: unit tests of the cb.h core, one executable per area. Each test_<area>.c
# holds the implementation (CB_IMPLEMENTATION) and is linked with tests/t_other.c.
# Steps, in order:
#   test-unit      build with $(CC) and run every test, plus the C++ test (g++, clang++)
#   test-asan      the same C tests with AddressSanitizer + UBSan, in $(BUILD)/asan
#   test-promtool  a real exposition from prom_dump.c through `promtool check metrics`

TESTS_AREAS := config transitions windows half_open manual stats_history export init \
               bulkhead threads_smoke tickets group
TESTS_BIN   := $(TESTS_AREAS:%=$(BUILD)/tests/test_%)
TESTS_ASAN  := $(TESTS_AREAS:%=$(BUILD)/asan/tests/test_%)
TESTS_CXX   := $(BUILD)/tests/test_cpp_g++ $(BUILD)/tests/test_cpp_clang++
# <stdatomic.h> works in C++ only from C++23 (g++ 12: c++23; clang++ 14: c++2b).
TESTS_CXXFLAGS := -Wall -Wextra -Wpedantic -Werror -O2 -g
# Per-area link flags: cJSON parses the JSON export; test_init routes every allocator
# call made from its own objects (cb.h included) to counting wrappers that can fail.
TESTS_LD_export := -lcjson
TESTS_LD_init   := $(foreach f,malloc calloc realloc aligned_alloc posix_memalign strdup mmap free,-Wl,--wrap=$(f))

ALL        += $(TESTS_BIN) $(BUILD)/tests/prom_dump
TEST_STEPS += test-unit test-asan test-promtool
TEST_DEPS  += libcjson-dev prometheus

.PHONY: test-unit test-asan test-promtool tests-deps

tests-deps:
	@$(NEED) libcjson-dev

$(BUILD)/tests/test_%: tests/unit/test_%.c $(TESTS_SRC) | tests-deps
	@mkdir -p $(@D)
	$(CC) $(WARN) $(CFLAGS) -I. -o $@ $< tests/t_other.c $(TESTS_LD_$*) $(TESTS_LIBS)

$(BUILD)/asan/tests/test_%: tests/unit/test_%.c $(TESTS_SRC) | tests-deps
	@mkdir -p $(@D)
	$(CC) $(WARN) $(TESTS_SAN) -I. -o $@ $< tests/t_other.c $(TESTS_LD_$*) $(TESTS_LIBS)

$(BUILD)/tests/cb_impl.o: tests/unit/cb_impl.c cb.h
	@mkdir -p $(@D)
	$(CC) $(WARN) $(CFLAGS) -I. -c -o $@ $<

$(BUILD)/tests/test_cpp_g++: tests/unit/test_cpp_compile.cpp $(BUILD)/tests/cb_impl.o cb.h
	g++ -std=c++23 $(TESTS_CXXFLAGS) -I. -o $@ $< $(BUILD)/tests/cb_impl.o $(TESTS_LIBS)

$(BUILD)/tests/test_cpp_clang++: tests/unit/test_cpp_compile.cpp $(BUILD)/tests/cb_impl.o cb.h
	clang++ -std=c++2b $(TESTS_CXXFLAGS) -I. -o $@ $< $(BUILD)/tests/cb_impl.o $(TESTS_LIBS)

$(BUILD)/tests/prom_dump: tests/unit/prom_dump.c cb.h
	@mkdir -p $(@D)
	$(CC) $(WARN) $(CFLAGS) -I. -o $@ $< $(TESTS_LIBS)

# Compile-time options: CB_STATIC exports no symbol; CB_MALLOC without CB_FREE is an error.
tests_options = echo "-- compile-time options"; \
    if $(CC) $(WARN) $(CFLAGS) -I. -DCB_STATIC -c -o $(BUILD)/tests/cb_static.o tests/unit/cb_impl.c && \
       ! nm -g --defined-only $(BUILD)/tests/cb_static.o | grep .; then echo "CB_STATIC: ok"; \
    else echo "CB_STATIC: build failed or symbols exported"; fail=1; fi; \
    if $(CC) -std=c11 -I. -DCB_MALLOC=malloc -fsyntax-only tests/unit/cb_impl.c 2>/dev/null; then \
       echo "CB_MALLOC without CB_FREE compiled"; fail=1; else echo "CB_MALLOC alone: refused, ok"; fi

test-unit: $(TESTS_BIN)
	-@$(MAKE) -k --no-print-directory $(TESTS_CXX)
	@fail=0; $(call tests_run,$(TESTS_BIN) $(TESTS_CXX)); $(tests_options); exit $$fail

test-asan: $(TESTS_ASAN)
	@fail=0; $(call tests_run,$(TESTS_ASAN)); exit $$fail

test-promtool: $(BUILD)/tests/prom_dump
	@$(NEED) prometheus
	$(BUILD)/tests/prom_dump > $(BUILD)/tests/metrics.prom
	promtool check metrics < $(BUILD)/tests/metrics.prom
	@echo "promtool: $(BUILD)/tests/metrics.prom is clean"
