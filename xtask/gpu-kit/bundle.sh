#!/usr/bin/env bash
# Builds what a GPU host needs to measure strata, on THIS machine (the GPU host has no network,
# no crates and maybe no Rust), and packs it into one folder small enough to send along (a
# 64 MiB budget is typical): release `strata` with the CUDA and wgpu backends, the cross-backend
# test binary built for CUDA, the prepared default corpus, the PyTorch peer scripts, and the
# Vulkan loader packages a headless NVIDIA host may lack (for wgpu).
#
# Run through `cargo xtask gpu-kit [OUT_DIR]` (default: .gpu, git-ignored); then on the GPU host,
# from the project root: `bash .gpu/check.sh`. A cold release build with CUDA takes ~15-25
# minutes on 2 cores: it has its own target folder (GPU_TARGET, default target-gpu, git-ignored)
# so the everyday debug build is not invalidated.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-.gpu}
export CARGO_TARGET_DIR=${GPU_TARGET:-target-gpu}
# The test binary gets the same GPU backends as strata below, so burn compiles once for both
# (with both, the tests' `Gpu` backend is CUDA).
cargo test --release --no-run -p trainer --test backends --features test-cuda,test-wgpu 2>&1 | tail -2
cargo build --release -p cli --features cli/cuda,cli/wgpu 2>&1 | tail -2
rm -rf "$out"; mkdir -p "$out"
test_bin=$(ls -t "$CARGO_TARGET_DIR"/release/deps/backends-* | grep -v '\.d$' | head -1)
cp "$CARGO_TARGET_DIR/release/strata" "$out/strata"
cp "$test_bin" "$out/backends"
strip "$out/strata" "$out/backends"
xz -T0 -6 "$out/strata" "$out/backends"
# The default corpus, prepared here (tokenizer training needs no GPU).
if [ ! -f data/sotu/prepared/manifest.json ]; then cargo xtask data sotu; fi
cp -r data/sotu/prepared "$out/sotu"
cp "$here/check.sh" "$here/torch_gpt_gpu.py" "$here/torch_ffn_gpu.py" "$here/torch_ffn_bench.py" "$out/"
# Forward FLOPs per token of the models the peer times (the same ledger as strata's MFU).
for m in s-dense s-lowrank-r192; do
  "$CARGO_TARGET_DIR/release/strata" zoo show "$m" --json |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["flops"]["forward_per_token"])' >"$out/flops-$m"
done
# Vulkan/EGL loaders (Debian amd64 packages; unpacked on the host only if it lacks them).
mkdir -p "$out/gl" /tmp/amd64-lists/partial
o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64-lists'
apt-get $o update -qq >/dev/null 2>&1 || true
(cd "$out/gl" && apt-get $o download libvulkan1 libegl1 libglvnd0 >/dev/null 2>&1) || echo "note: no Vulkan loader packages fetched"
du -sh "$out"
