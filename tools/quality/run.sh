#!/usr/bin/env bash
# The DIP-DKP quality study (BENCHMARKS.md, "Quality"): Set5 official inputs, centre crops to
# CROPxCROP HR (default 48: LR 24 at x2, 12 at x4), the paper network and schedule (128 channels, 1000 steps),
# seeds 0 and 1. Runs dkp (one run gives both the default averaged output and the last step,
# which is what --faithful writes; the trajectory is the same) with USRNet refinement, and the
# PyTorch rebuild tools/reference/dipdkp_torch.py on the same crops. Resumable: finished runs
# are skipped. Then `python3 tools/quality/summarize.py OUT` prints the tables.
#   tools/quality/run.sh [OUT=quality-study] [SEEDS="0 1"] [SCALES="2 4"]
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${1:-quality-study}"; seeds="${SEEDS:-0 1}"; scales="${SCALES:-2 4}"; crop="${CROP:-48}"
S=tests/fixtures/spec/set5_official_inputs
bin="${CARGO_TARGET_DIR:-target}/release/dkp"
[ -x "$bin" ] || cargo build --release -q
for sf in $scales; do
  c=$((crop / sf))
  [ -d "$out/crops/x$sf" ] || python3 tools/quality/make_crops.py "$S" "$out/crops/x$sf" "$sf" "$c"
done
for seed in $seeds; do for sf in $scales; do
  d="$out/dkp/x${sf}_s$seed"
  [ -f "$d/.done" ] && continue
  mkdir -p "$out/dkp"
  "$bin" dip "$out/crops/x$sf/lr" --sf "$sf" --preset paper --seed "$seed" --log-every 10 \
    --hr "$out/crops/x$sf/hr" --kernel-gt "$out/crops/x$sf/gt_k" --refine usrnet \
    --out "$d" --force > "$d.log" 2>&1
  touch "$d/.done"
done; done
if [ -z "${NO_TORCH:-}" ]; then
for seed in $seeds; do for sf in $scales; do
  d="$out/torch/x${sf}_s$seed"; mkdir -p "$d"
  for f in "$out/crops/x$sf/lr/"*.png; do
    n=$(basename "$f" .png)
    [ -s "$d/$n.json" ] && continue
    python3 tools/reference/dipdkp_torch.py --lr "$f" --sf "$sf" --seed "$seed" --quiet \
      --hr "$out/crops/x$sf/hr/$n.png" --kernel-gt "$out/crops/x$sf/gt_k/$n.txt" --out "$d" \
      > "$d/$n.json.tmp" && mv "$d/$n.json.tmp" "$d/$n.json"
  done
done; done
fi
echo "done: python3 tools/quality/summarize.py $out"
