# cport - the commands a newcomer types. See README.md.
#   make            build (build/bin/)
#   make run        install what is missing, build, run the server with dummy clients
#   make test       install what is missing, build plain and with sanitizers, run every test,
#                   fuzz each target 60 s, soak 60 s
#   make bench      benchmarks against the peers (bench/results/)
#   make fuzz       SECONDS=60   the libFuzzer targets (tests/fuzz/), each for SECONDS
#   make soak       MINUTES=10   cport-server under cport-dummy with churn, RSS and fds sampled
#   make install    PREFIX=/usr/local

PREFIX     ?= /usr/local
JOBS       ?= $(shell nproc)
CTEST_ARGS ?=
CMAKE_FLAGS ?=
SECONDS    ?= 60
MINUTES    ?= 10

SAN_ENV = ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1 \
          UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
          TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1

.PHONY: all build run test test-asan test-tsan test-plain setup install bench bench-quick \
        fuzz soak format format-check clean windows test-windows

all: build

build:
	cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCPORT_WERROR=ON $(CMAKE_FLAGS) >/dev/null
	cmake --build build -j$(JOBS)

setup:
	scripts/setup

run: setup build
	scripts/run-demo

# Every test, on both Linux backends: plain (optimized, as shipped), under ASan+UBSan, and under
# TSan; the Windows build (mingw-w64) and its IOCP tests under Wine; then each fuzz target for a minute, and a one-minute soak. See docs/reliability.md.
# Each phase is timed (its build included); the times are printed at the end and kept in
# build/test-times.txt. The budget for the whole is 30 minutes on the 2-core machine.
TEST_TIMES = build/test-times.txt
define timed_phase
	@t0=$$(date +%s); rc=0; $(MAKE) $(1) || rc=$$?; \
	  printf '%-20s %5d s%s\n' '$(1)' $$(( $$(date +%s) - t0 )) "$$([ $$rc -eq 0 ] || echo ' FAILED')" \
	    >>$(TEST_TIMES); exit $$rc
endef

test: setup
	@mkdir -p build && : >$(TEST_TIMES) && date +%s >$(TEST_TIMES).start
	$(call timed_phase,test-plain)
	$(call timed_phase,test-asan)
	$(call timed_phase,test-tsan)
	$(call timed_phase,test-windows)
	$(call timed_phase,fuzz SECONDS=60)
	$(call timed_phase,soak MINUTES=1)
	@printf 'make test: time per phase (each with its build)\n'; cat $(TEST_TIMES); \
	  printf '%-20s %5d s\n' total $$(( $$(date +%s) - $$(cat $(TEST_TIMES).start) ))

# libFuzzer targets (clang), built apart in build-fuzz/; crashes kept in build-fuzz/artifacts/.
fuzz: setup
	scripts/fuzz $(SECONDS)

# cport-server (plain build) under cport-dummy: chat, churn, RSS and fds sampled every second.
soak: setup build
	scripts/soak $(MINUTES)

test-asan:
	cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_FLAGS_DEBUG="-O1 -g" \
	  -DCPORT_SANITIZE=address -DCPORT_WERROR=ON -DCPORT_BUILD_BENCH=OFF $(CMAKE_FLAGS) >/dev/null
	cmake --build build-asan -j$(JOBS)
	cd build-asan && $(SAN_ENV) ctest --output-on-failure -j2 $(CTEST_ARGS)

test-tsan:
	cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_FLAGS_DEBUG="-O1 -g" \
	  -DCPORT_SANITIZE=thread -DCPORT_WERROR=ON -DCPORT_BUILD_BENCH=OFF $(CMAKE_FLAGS) >/dev/null
	cmake --build build-tsan -j$(JOBS)
	cd build-tsan && $(SAN_ENV) ctest --output-on-failure -j2 $(CTEST_ARGS)

test-plain: build
	cd build && ctest --output-on-failure -j2 $(CTEST_ARGS)

install: build
	cmake --install build --prefix $(PREFIX)

bench: setup build
	bench/run

bench-quick: setup build
	QUICK=1 bench/run

# Windows: cross-built with mingw-w64 into build-win/, its tests run under Wine. See docs/windows.md.
windows:
	scripts/win-deps
	cmake -S . -B build-win -DCMAKE_TOOLCHAIN_FILE=cmake/toolchain-mingw-w64.cmake \
	  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCPORT_WERROR=ON $(CMAKE_FLAGS) >/dev/null
	cmake --build build-win -j$(JOBS)

test-windows: windows build
	cd build-win && ctest --output-on-failure -j2 $(CTEST_ARGS)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

format-check:
	clang-format --dry-run -Werror $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build build-asan build-tsan build-fuzz build-win
