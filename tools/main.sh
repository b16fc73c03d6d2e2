#!/usr/bin/env bash
# The first command: on a fresh Debian 12 machine, from nothing to a pretrained small model.
#   1. tools/setup.sh           install the build dependencies (apt-get) and build build/
#   2. tools/prepare_corpus.sh  the default corpus (linux-doc-6.1 prose), its tokenizer, shards
#   3. build/dssm train         a small DenseRetNet (configs/densretnet-small.json, 4.2M
#                               parameters, sequences of 256) for a few minutes: on the GPU when
#                               there is one, else on the CPU; the loss falls from ~9 (ln 8192)
#   4. build/dssm eval          validation loss and perplexity of the last checkpoint
#   5. build/dssm generate      a sample from it
#
# usage: bash tools/main.sh [--arch densretnet|densemamba] [--device cpu|cuda] [extra train flags]
#   --arch densemamba trains configs/densemamba-small.json instead (2.6M parameters; 60 steps,
#   as its scans are slower on the CPU: about 1.2k tokens/s on 2 cores); extra flags go to
#   `dssm train` (e.g. --set steps=400, --dtype bf16). The run is runs/small-<arch>/ (restarted
#   afresh each time: metrics.jsonl, loss.svg, checkpoints/, latest).
set -euo pipefail
cd "$(dirname "$0")/.."

arch=densretnet
device=
extra=()
while [ $# -gt 0 ]; do
  case $1 in
    --arch) arch=$2; shift 2 ;;
    --device) device=$2; shift 2 ;;
    *) extra+=("$1"); shift ;;
  esac
done
case $arch in
  densretnet | densemamba) ;;
  *) echo "tools/main.sh: --arch must be densretnet or densemamba, got '$arch'" >&2; exit 2 ;;
esac
if [ -z "$device" ]; then
  device=cpu
  # A GPU, and nvcc to build the CUDA backend with (tools/setup.sh uses it when present).
  if nvidia-smi -L >/dev/null 2>&1 &&
     { [ -x /usr/local/cuda/bin/nvcc ] || command -v nvcc >/dev/null 2>&1; }; then
    device=cuda
  fi
fi

say() { printf '\033[1m[main]\033[0m %s\n' "$*" >&2; }

say "1/5 dependencies and build"
bash tools/setup.sh build

say "2/5 the default corpus"
bash tools/prepare_corpus.sh
corpus=data/linux-doc

run=runs/small-$arch
say "3/5 pretraining $arch on $device -> $run (progress: step, loss, lr, grad norm, tokens/s, ETA)"
build/dssm train --config "configs/$arch-small.json" --data "$corpus/shards" --out "$run" \
  --tokenizer "$corpus/tokenizer.model" --device "$device" --force "${extra[@]}"

say "4/5 evaluation of $run/latest on the held-out documents"
build/dssm eval --checkpoint "$run/latest" --data "$corpus/shards" --device "$device"

say "5/5 a sample"
build/dssm generate --checkpoint "$run/latest" --tokenizer "$corpus/tokenizer.model" \
  --prompt "The kernel" --max-new-tokens 64 --temperature 0.8 --top-k 50 --device "$device"

say "done: loss curve $run/loss.svg, metrics $run/metrics.jsonl, model $run/latest/"
