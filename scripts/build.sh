#!/usr/bin/env bash
# Configures and builds ebats into ./build (or $EBATS_BUILD_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${EBATS_BUILD_DIR:-build}
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=${EBATS_BUILD_TYPE:-RelWithDebInfo} "$@" >/dev/null
cmake --build "$build_dir" -j"${EBATS_JOBS:-2}"
