#!/usr/bin/env bash
# The GPU machine's one call: build densessm with CUDA, run the CUDA tests, gradcheck every op on
# the GPU, and run the core benchmark (bench/gpu_core.cpp), printing its tables last.
# Here first: tools/stage-deps.sh; then on the GPU machine, with carry [".deps"]:
#   bash bench/gpu.sh            (logs go to $OUT when set, else build-gpu/logs)
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
logs=${OUT:-$root/build-gpu/logs}
mkdir -p "$logs"
status=0

step() {  # step NAME COMMAND...: runs COMMAND with its output in $logs/NAME.log
  local name=$1
  shift
  local start=$SECONDS
  if "$@" >"$logs/$name.log" 2>&1; then
    echo "== $name: ok ($((SECONDS - start)) s)"
  else
    echo "== $name: FAILED ($((SECONDS - start)) s), last lines of $name.log:"
    tail -40 "$logs/$name.log"
    status=1
    return 1
  fi
}

{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; date -u; } |
  tee "$logs/machine.txt"
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
step configure cmake -S . -B build-gpu "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CUDA_ARCHITECTURES=90 -DDSSM_CUDA=ON -DDSSM_DEPS_DIR="$root/.deps" || exit 1
step build cmake --build build-gpu -j "$(nproc)" --target dssm_cuda_tests dssm_cli gpu_core ||
  { grep -B2 -A12 -m 5 "error" "$logs/build.log" | head -80; exit 1; }
step ctest-cuda ctest --test-dir build-gpu -L cuda -j 8 --output-on-failure --timeout 300
grep -E "tests passed|tests failed|\*\*\*Failed|Not Run|Skipped" "$logs/ctest-cuda.log" | head -40
step gradcheck-cuda build-gpu/dssm gradcheck --device cuda
grep -E "FAIL|ops checked" "$logs/gradcheck-cuda.log"
step bench build-gpu/gpu_core
cat "$logs/bench.log"
exit $status
