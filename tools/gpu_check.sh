#!/usr/bin/env bash
# One prepared check on a machine with a real GPU and nothing else: no Rust toolchain, no
# network. It runs a release binary built elsewhere and carried along, with the Vulkan loader
# packages carried as .debs, and writes at most 8 files into one folder:
#
#   tools/gpu_check.sh [--bin PATH] [--out DIR] [--quick]
#
#   --bin   the dkp release binary (default: target/release/dkp, else ./dkp)
#   --out   result folder (default: $OUT when set, else gpu-check-out/)
#   --quick skip the Diff-DKP UNet and the PyTorch step (about 3 minutes instead of 8)
#
# Prepare it on the build machine (see the device tool's README for the .deb download):
#   cargo build --release && mkdir -p .gpu && cp target/release/dkp .gpu/
#   (cd .gl && apt-get download libvulkan1)          # once, into .gl/
# and on the GPU machine: tools/gpu_check.sh --bin .gpu/dkp
#
# Files written: info.json, bench_ops.txt, bench_dip.json (+ its log in bench_dip.txt),
# dip_profile.txt (a paper-preset `dkp dip` of the embedded Set5 image with --profile),
# dip_report.json, torch_step.txt (the PyTorch reference step on CUDA, when torch imports),
# bench_unet.txt. Every section has its own time limit so the whole stays within 8 minutes;
# a section that runs out is cut and says so in its file.
set -uo pipefail
cd "$(dirname "$0")/.."
bin=""; out="${OUT:-gpu-check-out}"; quick=0
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin="$2"; shift ;;
    --out) out="$2"; shift ;;
    --quick) quick=1 ;;
    *) echo "gpu_check: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
if [ -z "$bin" ]; then
  for c in target/release/dkp .gpu/dkp ./dkp; do [ -x "$c" ] && { bin="$c"; break; }; done
fi
[ -n "$bin" ] && [ -x "$bin" ] || { echo "gpu_check: no dkp binary (pass --bin PATH)" >&2; exit 2; }
mkdir -p "$out"
t_start=$(date +%s)

# The Vulkan loader: carried .debs unpacked into / (only the loader: other packages can
# break the system there).
if ! ldconfig -p 2>/dev/null | grep -q libvulkan.so.1; then
  if ls .gl/*.deb >/dev/null 2>&1; then
    for f in .gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
  fi
fi
if [ -z "${VK_DRIVER_FILES:-}" ] && [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
fi
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
export RUST_LOG="${RUST_LOG:-warn,dkp=info}"

# section NAME LIMIT_S FILE CMD...: run CMD with a time limit, stdout+stderr into FILE.
section() {
  local name="$1" limit="$2" file="$3"; shift 3
  local t0; t0=$(date +%s)
  echo "== $name (limit ${limit}s)" >&2
  timeout --kill-after=10 "$limit" "$@" >"$out/$file" 2>&1
  local rc=$?
  local dt=$(( $(date +%s) - t0 ))
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    echo "[gpu_check: $name cut after ${limit}s]" >>"$out/$file"
  fi
  echo "   $name: exit $rc after ${dt}s" >&2
  return 0
}

# 1. The adapters. Refuse to go on without a real GPU: numbers from a CPU adapter would be
# mistaken for GPU numbers.
if ! timeout 60 "$bin" info --json >"$out/info.json" 2>"$out/info.err"; then
  echo "gpu_check: dkp info failed:" >&2; cat "$out/info.err" >&2; exit 1
fi
rm -f "$out/info.err"
# (GPU_CHECK_ALLOW_CPU=1 lets the script itself be tried out on a CPU-only machine.)
if ! grep -q '"software": false' "$out/info.json" && [ "${GPU_CHECK_ALLOW_CPU:-0}" != 1 ]; then
  echo "gpu_check: only CPU (software) adapters are visible; refusing to benchmark. Is the Vulkan loader installed and VK_DRIVER_FILES set?" >&2
  cat "$out/info.json" >&2
  exit 1
fi

# 2. Kernels. 3. Whole DIP-DKP steps at the issue's two sizes. 4. A paper-preset run with
# per-shader timings (the embedded Set5 butterfly at x2).
section "bench ops" 80 bench_ops.txt "$bin" bench ops --iters 5 --warmup 2
section "bench dip" 100 bench_dip.txt "$bin" bench dip --case 96x4 --case 256x2 --steps 20 --json "$out/bench_dip.json"
dipdir=$(mktemp -d)
section "dip --preset paper --profile" 120 dip_profile.txt "$bin" dip --preset paper --profile --out "$dipdir"
cp "$dipdir"/*_report.json "$out/dip_report.json" 2>/dev/null || true

if [ "$quick" = 0 ]; then
  # 5. The PyTorch reference step on the same GPU, when torch is there.
  if python3 -c "import torch; assert torch.cuda.is_available()" 2>/dev/null; then
    section "torch step (cuda)" 80 torch_step.txt python3 tools/reference/dipdkp_torch.py --bench --device cuda --case 96x4 --case 256x2 --steps 20
  else
    echo "torch with CUDA is not importable here: no PyTorch reference step" >"$out/torch_step.txt"
  fi
  # 6. The Diff-DKP UNet (random weights), f16 where the adapter has it.
  section "bench unet" 60 bench_unet.txt "$bin" bench unet --classifier --iters 2 --warmup 1
fi
echo "gpu_check: done in $(( $(date +%s) - t_start ))s; results in $out/" >&2
ls -l "$out" >&2
