#!/usr/bin/env python3
"""PyTorch GPU peer for `cargo xtask bench ffn --backend cuda cuda-bf16`.

Reuses the layer classes and configuration rules of torch_ffn_bench.py (beside this file)
(same ranks, block counts, GELU), moves them to CUDA in fp32 or bf16, and times forward and
forward+backward with CUDA events (median of repeats, each the mean of `inner` calls).
Prints one JSON object per configuration. Eager PyTorch, optionally torch.compile.
"""
import argparse, json, os, statistics, sys, types

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_ffn_bench as ref  # noqa: E402


def time_ms(fn, inner, repeats):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    out = []
    for _ in range(repeats):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for _ in range(inner):
            fn()
        b.record()
        torch.cuda.synchronize()
        out.append(a.elapsed_time(b) / inner)
    return statistics.median(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--width", type=int, nargs="+", default=[1024, 2048, 3072, 4096, 5120])
    ap.add_argument("--tokens", type=int, default=30720)
    ap.add_argument("--dtype", nargs="+", default=["bf16", "f32"])
    ap.add_argument("--ratio", type=float, nargs="+", default=[0.63, 0.32])
    ap.add_argument("--gelu", default="erf")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--inner", type=int, default=10)
    a = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    cfg = types.SimpleNamespace(bias=True, align=32, nblocks=4, shuffle_nblocks=0, gelu=a.gelu)
    dev = torch.device("cuda")
    for dt_name in a.dtype:
        dt = {"bf16": torch.bfloat16, "f32": torch.float32, "tf32": torch.float32}[dt_name]
        torch.backends.cuda.matmul.allow_tf32 = dt_name == "tf32"
        for d in a.width:
            configs = [("dense", None)] + [(l, r) for r in a.ratio for l in ("lowrank", "blockdense", "blockshuffle")]
            base = None
            for layer, ratio in configs:
                torch.manual_seed(0)
                ffn, info = ref.build(layer, d, ratio, cfg)
                ffn = ffn.to(dev, dt)
                f = torch.compile(ffn) if a.compile else ffn
                x = torch.randn(a.tokens, d, device=dev, dtype=dt)
                xg = x.clone().requires_grad_(True)
                dy = torch.randn(a.tokens, d, device=dev, dtype=dt)
                params = list(ffn.parameters())

                def fwd():
                    with torch.no_grad():
                        f(x)

                def fwdbwd():
                    for p in params:
                        p.grad = None
                    xg.grad = None
                    f(xg).backward(dy)

                tf, tb = time_ms(fwd, a.inner, a.repeats), time_ms(fwdbwd, a.inner, a.repeats)
                if base is None:
                    base = (tf, tb, info["matmul_flops_per_token"])
                row = dict(peer="torch" + ("-compile" if a.compile else ""), dtype=dt_name, layer=layer,
                           ratio=ratio, width=d, tokens=a.tokens, rank=info.get("rank"),
                           nblocks=info.get("nblocks"), fwd_ms=round(tf, 4), fwdbwd_ms=round(tb, 4),
                           speedup_fwd=round(base[0] / tf, 3), speedup_fwdbwd=round(base[1] / tb, 3),
                           ideal=round(base[2] / info["matmul_flops_per_token"], 3),
                           fwdbwd_tflops=round(3 * info["matmul_flops_per_token"] * a.tokens / tb / 1e9, 1))
                print(json.dumps(row), flush=True)
                del ffn, f, x, xg, dy, params
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
