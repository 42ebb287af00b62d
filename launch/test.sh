#!/usr/bin/env bash
# The whole test suite on a fresh Debian machine: install dependencies, build, run every test with
# CTest (unit, multi-rank and end-to-end). Environment: BUILD (build dir, default build).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}

./launch/install-deps.sh
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release
cmake --build "$BUILD" -j"$(nproc)"
cd "$BUILD"
ctest --output-on-failure --timeout 900
