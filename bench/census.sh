#!/usr/bin/env bash
# Kernel census of a training step: where the GPU time of one `train_bench` step goes, per kernel.
# Nsight Compute times every kernel launch (gpu__time_duration, clocks left alone) of a cut-down
# copy of a model config (fewer layers, so that the replayed launches fit in minutes); the table
# gives, per kernel name, launches and milliseconds per step and the share of the step.
# On the GPU machine, after building build-gpu/train_bench:
#   bash bench/census.sh configs/mamba-360m.json 4 [out-dir]
set -euo pipefail
config=$1
layers=$2
out=${3:-${OUT:-build-gpu/census}}
mkdir -p "$out"
name=$(basename "$config" .json)-$layers
python3 - "$config" "$layers" "$out/$name.json" <<'EOF'
import json, sys
config = json.load(open(sys.argv[1]))
config["n_layers"] = int(sys.argv[2])
json.dump(config, open(sys.argv[3], "w"))
EOF
# Two steps run (one of warm-up, one timed); the census halves the totals.
ncu --clock-control none --metrics gpu__time_duration.sum --csv --print-units base \
  build-gpu/train_bench --device cuda --configs "$out/$name.json" --steps 1 --warmup 1 \
  >"$out/$name.csv" 2>"$out/$name.log"
python3 - "$out/$name.csv" <<'EOF'
import collections, csv, sys
rows = [line for line in open(sys.argv[1]) if line.startswith('"')]
time = collections.Counter()
count = collections.Counter()
for r in csv.DictReader(rows):
    if r.get("Metric Name") != "gpu__time_duration.sum":
        continue
    # "void dssm::<unnamed>::map_dense<8, __nv_bfloat16, 1, ...>(...)": the name and the first
    # template argument (the map's lanes, the copy's piece, a scan's build) tell kernels apart.
    kernel = r["Kernel Name"].replace("void ", "").split("(")[0]
    base, _, args = kernel.partition("<")
    kernel = base.split("::")[-1] + (f"<{args.split(',')[0]}>" if args else "")
    time[kernel] += float(r["Metric Value"].replace(",", "")) / 2e6  # ns over 2 steps -> ms
    count[kernel] += 0.5
total = sum(time.values())
print(f"{sys.argv[1]}: {total:.2f} ms of kernel time per step, {int(sum(count.values()))} launches")
print(f"{'kernel':60s} {'launches':>8s} {'ms':>8s} {'ms/launch':>10s} {'share':>6s}")
for kernel, ms in time.most_common(40):
    print(f"{kernel[:60]:60s} {count[kernel]:8.0f} {ms:8.3f} {ms / count[kernel]:10.4f} "
          f"{100 * ms / total:5.1f}%")
EOF
