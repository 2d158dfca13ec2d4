#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/, docs/FUZZING.md) with clang into
# ./build-fuzz (or $EBATS_FUZZ_BUILD_DIR) and runs each for --seconds (30 by
# default) over its seed corpus, tests/fuzz/corpus/<target>/. New inputs go to
# build-fuzz/corpus/<target>/ (kept between runs), crashes to
# build-fuzz/fuzz-artifacts/. Fails if any target crashes or breaks an invariant.
#
#   scripts/fuzz.sh [--seconds N] [--build-only | --no-build] [TARGET...]
#
# TARGET is envelope, duration, config or frame (all four when none is given).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,10s/^# \{0,1\}//p' "$0"; }
all_targets=(envelope duration config frame)
seconds=30
build=1
run=1
targets=()
while [ $# -gt 0 ]; do
  case $1 in
    --seconds) seconds=${2:?--seconds needs a number}; shift 2 ;;
    --seconds=*) seconds=${1#--seconds=}; shift ;;
    --build-only) run=0; shift ;;
    --no-build) build=0; shift ;;
    -h|--help) usage; exit 0 ;;
    envelope|duration|config|frame) targets+=("$1"); shift ;;
    *) echo "fuzz.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
case $seconds in ''|*[!0-9]*|0) echo "fuzz.sh: --seconds takes a whole number of seconds, at least 1" >&2; exit 2 ;; esac
[ ${#targets[@]} -gt 0 ] || targets=("${all_targets[@]}")
build_dir=${EBATS_FUZZ_BUILD_DIR:-build-fuzz}

# The longest input each target is given: enough for every seed and for
# what the parser treats specially (nesting limits, history, piece sizes).
max_len_of() {
  case $1 in
    envelope) echo 16384 ;;
    duration) echo 64 ;;
    config) echo 16384 ;;
    frame) echo 4096 ;;
  esac
}

if [ $build = 1 ]; then
  # Warnings do not fail this build: GCC's -Werror build (scripts/test.sh) is the
  # warnings gate, and clang warns about things GCC does not (CI=true would turn on -Werror).
  unset CI
  echo "== fuzz: building the fuzz targets with clang into $build_dir"
  CC=clang CXX=clang++ cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEBATS_FUZZ=ON \
    -DEBATS_BUILD_TESTS=OFF >/dev/null
  cmake --build "$build_dir" -j"${EBATS_JOBS:-2}" --target ebats_fuzz_targets
fi
[ $run = 1 ] || exit 0

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
mkdir -p "$build_dir/fuzz-artifacts"
failed=()
for t in "${targets[@]}"; do
  corpus="$build_dir/corpus/$t"
  log="$build_dir/fuzz-$t.log"
  mkdir -p "$corpus"
  args=(-max_total_time="$seconds" -max_len="$(max_len_of "$t")" -timeout=10 -rss_limit_mb=2048
        -print_final_stats=1 -artifact_prefix="$build_dir/fuzz-artifacts/$t-")
  [ -f "tests/fuzz/$t.dict" ] && args+=(-dict="tests/fuzz/$t.dict")
  echo "== fuzz: $t for ${seconds}s (log: $log)"
  # The first folder receives new inputs; the seeds are only read.
  if "$build_dir/bin/fuzz_$t" "${args[@]}" "$corpus" "tests/fuzz/corpus/$t" >"$log" 2>&1; then
    grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added)' "$log" | tr '\n' ' '
    echo
  else
    echo "fuzz.sh: fuzz_$t failed; the end of its log:" >&2
    tail -n 60 "$log" >&2
    failed+=("$t")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz.sh: crashes in: ${failed[*]} (inputs in $build_dir/fuzz-artifacts/; add each to" \
       "tests/fuzz/corpus/<target>/ and a test to tests/regression/)" >&2
  exit 1
fi
echo "fuzz: all ${#targets[@]} targets ran ${seconds}s each without a crash"
