#!/usr/bin/env bash
# Runs on the GPU host, from the project root, over a folder made by `cargo xtask gpu-kit`:
#   bash .gpu/check.sh [RESULTS_DIR]        (default: $OUT if set, else /tmp/gpu-results)
# Each step has its own time limit, so one stuck step cannot eat the others; progress lines go
# to the terminal and RESULTS_DIR/log.txt, each benchmark's JSON lines to their own file.
# The whole stays under ~9 minutes. Record what it prints in docs/benchmarks.md.
#
# Steps: the cold first training step (fresh kernel cache, up to 5 minutes), the warm first step
# (same cache), steady-state training tokens/s of s-dense and s-lowrank-r192 (bf16, 16 x 1024)
# beside the PyTorch eager peer, decoding on CUDA and on wgpu (Vulkan), the cross-backend tests.
set -u
R=${1:-${OUT:-/tmp/gpu-results}}; mkdir -p "$R"
exec > >(tee "$R/log.txt") 2>&1
cd "$(dirname "$0")"
t0=$(date +%s)
step() { echo; echo "=== [$(( $(date +%s) - t0 ))s] $*"; }
for f in *.xz; do
  python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" "$f" "${f%.xz}"
  chmod +x "${f%.xz}"
done
if ! ldconfig -p | grep -q libvulkan.so.1; then for f in gl/*.deb; do dpkg -x "$f" /; done; ldconfig; fi
[ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ] &&
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
(nvidia-smi dmon -s u -d 2 > "$R/dmon.txt" 2>&1 &)   # SM utilisation every 2 s
export RUST_BACKTRACE=1
# A fresh cache folder: the first step below is the cold start a new host sees.
export STRATA_CACHE_DIR=${STRATA_CACHE_DIR:-/tmp/strata-cache-$$}
export STRATA_COUNT_KERNELS=1
s_lowrank=(./strata bench train --backend cuda --model s-lowrank-r192 --precision bf16 --batch-size 16 --seq-len 1024)

# Wall time of a command, in seconds, on its own line after its output.
timed() { local s; s=$(date +%s.%N); "$@"; local rc=$?; echo "wall_s=$(python3 -c "print(round($(date +%s.%N)-$s,1))") rc=$rc"; }

step "cold first training step: s-lowrank-r192 bf16 16x1024, empty kernel cache (limit 300 s; target <= 120 s)"
timed timeout 300 "${s_lowrank[@]}" --steps 1 --warmup 0 | tee "$R/first-cold.jsonl"

step "warm first training step: the same, same cache folder (limit 60 s; target <= 10 s)"
timed timeout 60 "${s_lowrank[@]}" --steps 1 --warmup 0 | tee "$R/first-warm.jsonl"

step "steady state: strata vs PyTorch eager, Transformer-s, bf16, 16 x 1024 (target >= 0.5x PyTorch)"
timed timeout 150 ./strata bench train --backend cuda --model s-dense s-lowrank-r192 --batch-size 16 --seq-len 1024 \
  --precision bf16 --peak-tflops 989 --steps 8 --warmup 3 | tee "$R/train-strata.jsonl"
timed timeout 60 python3 torch_gpt_gpu.py --modes bf16 --steps 8 --warmup 3 \
  --flops s-dense="$(cat flops-s-dense)" s-lowrank-r192="$(cat flops-s-lowrank-r192)" | tee "$R/train-torch.jsonl"

step "decoding with and without pre-merge: CUDA, then wgpu on the same GPU"
timed timeout 45 ./strata bench decode --backend cuda --model s-lowrank-r192 --batch 1 16 256 | tee "$R/decode-cuda.jsonl"
timed timeout 45 ./strata bench decode --backend wgpu --model s-lowrank-r192 --batch 1 16 | tee "$R/decode-wgpu.jsonl"

step "cross-backend tests on CUDA (limit 90 s)"
timed timeout 90 ./backends --test-threads=1 2>&1 | tail -30
step "done"
