#!/usr/bin/env bash
# The README's test command: installs what the tests need, builds with
# warnings as errors and runs every test (unit and integration) with ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
export CI=${CI:-true}   # -Werror
EBATS_BUILD_DIR=${EBATS_BUILD_DIR:-build-test} scripts/build.sh
build_dir=${EBATS_BUILD_DIR:-build-test}
cd "$build_dir"
ctest --output-on-failure --timeout 600 -j2 "$@"
