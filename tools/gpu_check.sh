#!/usr/bin/env bash
# One-shot check on a machine with a real GPU: make sure a Vulkan loader and driver are
# visible, build, run the test suite on the GPU adapter, then print `dkp bench ops` (last).
#   tools/gpu_check.sh [--no-tests] [--torch] [--set5] [--unet]
# --torch also runs tools/bench_torch.py; --set5 also runs the full Set5 x2/x4 DIP-DKP benchmark
# (paper setting: whole images, 1000 steps, 128 channels; with --torch the PyTorch reference
# too) and prints its table before the kernel table; --unet times the full 256² guided-diffusion
# UNet sampling step (random weights) in f16 and f32 with `dkp bench unet --classifier`
# (with --torch also tools/reference/guided_unet_torch.py on cuda, f32 and f16).
# Loader: if `ldconfig -p` shows no libvulkan, the script unpacks any .deb files found in
# ./.gl (download them beforehand with `apt-get download libvulkan1`), or installs libvulkan1
# with apt-get when the network allows. NVIDIA's ICD is picked up from the usual places or
# from /usr/local/nvidia/share/vulkan/icd.d.
set -uo pipefail
cd "$(dirname "$0")/.."
run_tests=1; torch=0; set5=0; unet=0
for a in "$@"; do
  case "$a" in
    --no-tests) run_tests=0 ;;
    --torch) torch=1 ;;
    --set5) set5=1 ;;
    --unet) unet=1 ;;
  esac
done

if ! ldconfig -p | grep -q libvulkan.so.1; then
  if ls .gl/*.deb >/dev/null 2>&1; then
    for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
  else
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libvulkan1) || true
  fi
fi
if [ -z "${VK_DRIVER_FILES:-}" ] && [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
fi
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"

cargo build --release || exit 1
./target/release/dkp info || exit 1
if [ "$run_tests" = 1 ]; then
  cargo test --release 2>&1 | grep -E "^test result|FAILED|panicked" || true
fi
if [ "$torch" = 1 ] && python3 -c "import torch" 2>/dev/null; then
  python3 tools/bench_torch.py
fi
if [ "$set5" = 1 ]; then
  if [ "$torch" = 1 ]; then tools/bench_set5.sh --out bench-set5; else tools/bench_set5.sh --no-torch --out bench-set5; fi
fi
if [ "$unet" = 1 ]; then
  ./target/release/dkp bench unet --classifier --iters 3 --warmup 1
  ./target/release/dkp bench unet --classifier --iters 3 --warmup 1 --f32
  if [ "$torch" = 1 ] && python3 -c "import torch; assert torch.cuda.is_available()" 2>/dev/null; then
    python3 tools/reference/guided_unet_torch.py --bench --device cuda --iters 3
    python3 tools/reference/guided_unet_torch.py --bench --device cuda --iters 3 --dtype float16
  fi
fi
./target/release/dkp bench ops --iters 5 --warmup 2
