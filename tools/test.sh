#!/usr/bin/env bash
# Sets everything up and runs the whole test suite:
#   1. the release build (CUDA backend compiled when nvcc exists; its tests skip without a GPU),
#      all ctest tests and `dssm gradcheck` over every registered op;
#   2. the CPU tests again under AddressSanitizer + UndefinedBehaviorSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)

bash tools/setup.sh build
echo "==> gradcheck over the op registry"
build/dssm gradcheck --device cpu | tail -n 1
echo "==> tests"
# ctest runs test files side by side: one OpenMP thread each, or their spinning threads fight
# over the cores (a 20x slowdown on 2 cores). Set per command: nproc itself reads OMP_NUM_THREADS.
OMP_NUM_THREADS=1 ctest --test-dir build -j "$jobs" --output-on-failure

echo "==> sanitizer build (ASan + UBSan) of the CPU tests"
# Only the test program: the command-line tool and the examples are not run under the sanitizers.
DSSM_BUILD_TARGETS=dssm_tests bash tools/setup.sh build-asan -DDSSM_SANITIZE=ON -DDSSM_BENCH=OFF \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo
OMP_NUM_THREADS=1 ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan -j "$jobs" -L cpu --output-on-failure
