# Shared by bench/run.sh and bench/run_rabbitmq.sh (sourced, not run).

# bench_build_and_check BUILD LIMIT_EXE: with BUILD=1, builds the Release tree
# ($build_dir) the benchmark runs from; then checks that the daemons, ebatsctl,
# the physical-limit program LIMIT_EXE and the noop plugin are there, exiting 1
# with a hint when one is missing. Sets $plugins to the plugin folder.
bench_build_and_check() {
  local build=$1 limit_exe=$2 exe
  if [ "$build" = 1 ]; then
    echo "== building (Release, tests off) into build-bench/"
    cmake -S "$repo" -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DEBATS_BUILD_TESTS=OFF >/dev/null
    cmake --build "$build_dir" -j"${EBATS_JOBS:-$(nproc)}" --target ebats_bench >/dev/null
  fi
  for exe in ebats-scheduler ebats-ntask-worker ebats-dtask-worker ebatsctl "$limit_exe"; do
    [ -x "$build_dir/bin/$exe" ] || { echo "bench/run.sh: $build_dir/bin/$exe missing; run without --no-build" >&2; exit 1; }
  done
  plugins=$build_dir/bench/plugins
  [ -f "$plugins/bench_noop.so" ] || { echo "bench/run.sh: $plugins/bench_noop.so missing; run without --no-build" >&2; exit 1; }
}
