#!/usr/bin/env bash
# Stages the header-only dependencies into .deps/ so that they can travel to the GPU machine
# (carry [".deps"]), which has CUDA and CMake but no Eigen, fmt, Catch2, CLI11 or nlohmann-json.
# Eigen, fmt and Catch2 come from the shared script; CLI11 and nlohmann-json are added here with
# their CMake package files, so that `cmake -DDSSM_DEPS_DIR=$PWD/.deps` finds them all.
# Usage (from anywhere in the repository):  tools/stage-deps.sh
set -euo pipefail
root=$(git rev-parse --show-toplevel)
cd "$root"
../shared/device/stage-deps.sh
dst="$root/.deps"
for pkg in libcli11-dev nlohmann-json3-dev; do
  dpkg -s "$pkg" >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq "$pkg"; }
done
cp -r /usr/include/CLI /usr/include/nlohmann "$dst/include/"
# The package files locate the headers three folders up from themselves: .deps/include.
mkdir -p "$dst/share/cmake"
cp -r /usr/share/cmake/CLI11 /usr/share/cmake/nlohmann_json "$dst/share/cmake/"
# Catch2's package file checks that its main library exists (we do not link it).
[ -f /usr/lib/libCatch2WithMain.a ] && cp /usr/lib/libCatch2WithMain.a "$dst/lib/"
du -sh "$dst"
