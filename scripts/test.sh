#!/usr/bin/env bash
# The README's test command: installs what the tests need, builds with
# warnings as errors and runs every test (unit and integration) with ctest,
# then builds again with AddressSanitizer + UndefinedBehaviorSanitizer and
# runs the whole suite once more, and once more with ThreadSanitizer (the
# worker parent and the SQLite broker have threads); skip both sanitizer
# passes with EBATS_SKIP_SANITIZERS=1. Between the first pass and those, the
# fuzz targets run for $EBATS_FUZZ_SECONDS (30) each (scripts/fuzz.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
export CI=${CI:-true}   # -Werror

run_suite() {  # build dir, extra cmake args...
  local dir=$1
  shift
  EBATS_BUILD_DIR=$dir scripts/build.sh "$@"
  (cd "$dir" && ctest --output-on-failure --timeout 600 -j2)
}

echo "== tests (RelWithDebInfo, -Werror)"
run_suite build-test
echo "== fuzzing: each libFuzzer target for ${EBATS_FUZZ_SECONDS:-30}s (clang, ASan+UBSan; docs/FUZZING.md)"
scripts/fuzz.sh --seconds "${EBATS_FUZZ_SECONDS:-30}"
if [ "${EBATS_SKIP_SANITIZERS:-0}" != 1 ]; then
  echo "== tests under AddressSanitizer + UndefinedBehaviorSanitizer"
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  EBATS_BUILD_TYPE=Debug run_suite build-test-asan -DEBATS_SANITIZE=address,undefined
  echo "== tests under ThreadSanitizer"
  # handle_segv=0: the crash tests need a child to die of its SIGSEGV, not of TSan's report of it.
  export TSAN_OPTIONS=handle_segv=0:halt_on_error=1:second_deadlock_stack=1
  EBATS_BUILD_TYPE=Debug run_suite build-test-tsan -DEBATS_SANITIZE=thread
fi
