#!/usr/bin/env bash
# Installs densessm's build dependencies on Debian 12 (apt-get; as root, or through sudo) and
# configures + builds the project in build/ (or the folder given as $1; further arguments go to
# cmake's configure step). DSSM_BUILD_TARGETS="a b" builds only those targets.
# The CUDA backend is built when nvcc is found (/usr/local/cuda/bin/nvcc or on PATH).
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${1:-build}
shift || true

packages=(build-essential cmake ninja-build pkg-config libeigen3-dev libfmt-dev catch2
          libcli11-dev nlohmann-json3-dev libzstd-dev zstd libsentencepiece-dev sentencepiece ccache)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "==> installing: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi

echo "==> configuring $build_dir"
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
echo "==> building $build_dir ($(nproc) cores)"
# shellcheck disable=SC2086  # the targets are meant to split into words
cmake --build "$build_dir" -j "$(nproc)" ${DSSM_BUILD_TARGETS:+--target $DSSM_BUILD_TARGETS}
