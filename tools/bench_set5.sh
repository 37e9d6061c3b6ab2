#!/usr/bin/env bash
# Set5 DIP-DKP benchmark: ours (dkp dip) and the PyTorch reference (tools/reference/dipdkp_torch.py)
# on the same inputs, settings and machine. Prints a markdown table (per image + mean) per scale.
#   tools/bench_set5.sh [--crop N] [--iters N] [--channels C] [--scales "2 4"] [--no-torch] [--refine] [--out DIR]
# --refine also runs USRNet-tiny on each DIP-DKP kernel estimate (dkp dip --refine usrnet).
# Defaults are the paper setting (whole images, 1000 steps, 128 channels): use them on a GPU.
# On a CPU-only machine pass e.g. --crop 32 --iters 200 --channels 64 and say so.
set -euo pipefail
cd "$(dirname "$0")/.."
crop=""; iters=""; channels=""; scales="2 4"; torch=1; refine=0; out=bench-set5
while [ $# -gt 0 ]; do
  case "$1" in
    --crop) crop="$2"; shift 2 ;;
    --iters) iters="$2"; shift 2 ;;
    --channels) channels="$2"; shift 2 ;;
    --scales) scales="$2"; shift 2 ;;
    --no-torch) torch=0; shift ;;
    --refine) refine=1; shift ;;
    --out) out="$2"; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
S=tests/fixtures/spec/set5_official_inputs
[ -d "$S" ] || { echo "Set5 inputs not found at $S" >&2; exit 1; }
cargo build --release -q
bin="${CARGO_TARGET_DIR:-target}/release/dkp"
mkdir -p "$out"
ours_args=(--preset paper --force)
ref_args=()
[ -n "$crop" ] && ours_args+=(--crop "$crop") && ref_args+=(--crop "$crop")
[ -n "$iters" ] && ours_args+=(--steps "$iters") && ref_args+=(--steps "$iters")
[ "$refine" = 1 ] && ours_args+=(--refine usrnet)
[ -n "$channels" ] && ours_args+=(--channels "$channels") && ref_args+=(--channels "$channels" --skip $(( channels / 8 > 0 ? channels / 8 : 1 )))
for sf in $scales; do
  for img in baby bird butterfly head woman; do
    lr=$S/x$sf/lr/$img.png; hr=$S/HR/$img.png; k=$S/x$sf/gt_k/$img.txt
    "$bin" dip "$lr" --sf "$sf" --hr "$hr" --kernel-gt "$k" --out "$out/ours_x$sf" "${ours_args[@]}" >/dev/null
    if [ "$torch" = 1 ]; then
      mkdir -p "$out/torch_x$sf"
      python3 tools/reference/dipdkp_torch.py --lr "$lr" --hr "$hr" --kernel-gt "$k" --sf "$sf" --out "$out/torch_x$sf" "${ref_args[@]}" \
        | tail -n 1 > "$out/torch_x$sf/$img.json"
    fi
  done
done
python3 - "$out" "$scales" <<'PY'
import json, sys, os, glob
out, scales = sys.argv[1], sys.argv[2].split()
for sf in scales:
    print(f"\n### x{sf}\n")
    print("| image | LR size | ours PSNR | ours SSIM | ours kPSNR | ours s | ours peak MiB | +USRNet PSNR | +USRNet SSIM | torch PSNR | torch SSIM | torch kPSNR | torch s | torch peak RSS MiB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for img in ["baby", "bird", "butterfly", "head", "woman"]:
        o = json.load(open(f"{out}/ours_x{sf}/{img}_report.json"))
        tp = f"{out}/torch_x{sf}/{img}.json"
        t = json.load(open(tp)) if os.path.exists(tp) and os.path.getsize(tp) else {}
        rf = o.get("refined") or {}
        r = [o["psnr"], o["ssim"], o["kernel_psnr"], o["seconds"], o["peak_gpu_memory_mib"],
             t.get("psnr"), t.get("ssim"), t.get("kernel_psnr"), t.get("seconds"), t.get("peak_rss_mib"),
             rf.get("psnr"), rf.get("ssim")]
        rows.append(r)
        f = lambda v, d=2: "–" if v is None else f"{v:.{d}f}"
        print(f"| {img} | {o['lr_size'][1]}x{o['lr_size'][0]} | {f(r[0])} | {f(r[1],4)} | {f(r[2])} | {f(r[3],1)} | {f(r[4],0)} | {f(r[10])} | {f(r[11],4)} | {f(r[5])} | {f(r[6],4)} | {f(r[7])} | {f(r[8],1)} | {f(r[9],0)} |")
    def mean(i):
        v = [r[i] for r in rows if r[i] is not None]
        return sum(v) / len(v) if v else None
    f = lambda v, d=2: "–" if v is None else f"{v:.{d}f}"
    print(f"| **mean** | | {f(mean(0))} | {f(mean(1),4)} | {f(mean(2))} | {f(mean(3),1)} | {f(mean(4),0)} | {f(mean(10))} | {f(mean(11),4)} | {f(mean(5))} | {f(mean(6),4)} | {f(mean(7))} | {f(mean(8),1)} | {f(mean(9),0)} |")
PY
