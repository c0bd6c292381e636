#!/usr/bin/env bash
# Build and run the whole test suite, as CI does:
#   1. a normal build, all tests (unit, integration, PyTorch cross-checks);
#   2. an AddressSanitizer + UndefinedBehaviorSanitizer build, all tests again
#      but the learning-outcome test (label `learning`) and the deployment
#      tests (label `cluster`: namespaces, Slurm);
#   3. the envelope decoder's libFuzzer target for a bounded time (clang).
# Ends with the test runner's summary line; exit code 0 only if all passed.
set -uo pipefail
cd "$(dirname "$0")/.."
JOBS=$(nproc)
FUZZ_SECONDS=${GTRT_FUZZ_SECONDS:-30}
status=0

step() { printf '\n==== %s ====\n' "$*"; }

build() { # dir, cmake args...
  local dir=$1; shift
  cmake -S . -B "$dir" "$@" >/dev/null || return 1
  if ! cmake --build "$dir" -j"$JOBS" > "$dir/build.log" 2>&1; then
    grep -E 'error|Error' -A3 "$dir/build.log" | head -60
    return 1
  fi
}

step "normal build"
build build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGTRT_TESTS=ON -DGTRT_SANITIZE=OFF -DGTRT_FUZZ=OFF || status=1
step "tests (normal build)"
ctest --test-dir build --output-on-failure 2>&1 | tee build/ctest.log || status=1

step "ASan + UBSan build"
build build-asan -DCMAKE_BUILD_TYPE=Debug -DGTRT_TESTS=ON -DGTRT_SANITIZE=ON -DGTRT_FUZZ=OFF || status=1
step "tests (ASan + UBSan)"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-asan --output-on-failure --label-exclude "learning|cluster" 2>&1 | tee build-asan/ctest.log || status=1

step "fuzzing the envelope decoder for ${FUZZ_SECONDS}s"
if command -v clang >/dev/null; then
  CC=clang cmake -S . -B build-fuzz -DGTRT_FUZZ=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null &&
    cmake --build build-fuzz -j"$JOBS" --target fuzz_wire >/dev/null || status=1
  mkdir -p build-fuzz/corpus
  if ! build-fuzz/tests/fuzz_wire -max_total_time="$FUZZ_SECONDS" -max_len=4096 -seed=1 \
       -print_final_stats=1 build-fuzz/corpus > build-fuzz/fuzz.log 2>&1; then
    tail -n 40 build-fuzz/fuzz.log; status=1
  fi
  fuzz_runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' build-fuzz/fuzz.log | grep -oE '[0-9]+$')
  echo "fuzz_wire: ${fuzz_runs:-0} inputs, $( [ $status -eq 0 ] && echo 'no crash' || echo 'FAILED')"
else
  echo "clang not found: fuzzing skipped"; status=1
fi

step "summary"
echo "normal build:  $(grep -h 'tests passed' build/ctest.log 2>/dev/null || echo 'did not run')"
echo "fuzz_wire:     ${fuzz_runs:-0} inputs in ${FUZZ_SECONDS}s"
echo "ASan + UBSan:  (below)"
grep -h 'tests passed' build-asan/ctest.log 2>/dev/null || { echo "0% tests passed: the sanitizer run did not complete"; status=1; }
exit $status
