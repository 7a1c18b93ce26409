"""Compile every Triton kernel for Hopper (sm_90) on a machine WITHOUT a GPU and read its resources.

    python benchmarks/triton_compile_check.py [--quick] [--json FILE]

Triton compiles ahead of time for a named target (``GPUTarget("cuda", 90, 32)``) with the ptxas
its wheel bundles, no driver needed. The launchers of ``kernels/`` are run on meta tensors (shapes
and dtypes only, nothing is computed); each ``kernel[grid](...)`` call they make is caught before
it launches, and the kernel is compiled for sm_90 with exactly the launcher's block sizes, warps and
stages. Reported per compiled variant: shared memory (Triton's metadata), registers and spill bytes
(``ptxas -v`` on the PTX, as for sm_90a) and whether the PTX holds wgmma (Hopper tensor-core) or
only mma.sync instructions. Checks: shared memory <= 227 KiB, registers <= 255, no spills in the
16-bit paths. Cases: appended_attention forward and backward at head dims 64 / 80 / 128 / 256 in
bf16 and fp32 (Qwen3 GQA: 32 heads, 8 KV heads, K = 10), and the other four ops at Qwen3-8B shapes.
``--quick`` compiles d = 128 only (CI). Exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

os.environ.pop("TRITON_INTERPRET", None)  # compiled kernels: must precede the kernels' import

import torch  # noqa: E402
import triton  # noqa: E402
from llm2vec_gen.kernels import (  # noqa: E402
    appended_attention,
    distill_loss,
    encode_tail,
    fused_linear_cross_entropy,
    special_token_embedding,
)
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

TARGET = GPUTarget("cuda", 90, 32)
HOPPER_SHARED = 227 * 1024  # bytes one block may use on an H100 / H200 (opt-in maximum)
MAX_REGS = 255
MODULES = (appended_attention, fused_linear_cross_entropy, distill_loss, encode_tail, special_token_embedding)
_PTR = {
    torch.float32: "*fp32", torch.bfloat16: "*bf16", torch.float16: "*fp16", torch.uint8: "*u8",
    torch.int32: "*i32", torch.int64: "*i64",
}  # fmt: skip


def _arg_type(value) -> str:
    if isinstance(value, torch.Tensor):
        return _PTR[value.dtype]
    if isinstance(value, bool):
        return "i1"
    if isinstance(value, int):
        return "i32" if -(2**31) <= value < 2**31 else "i64"
    if isinstance(value, float):
        return "fp32"
    raise TypeError(f"no Triton type for {type(value).__name__}")


class _Capture:
    """Stands in for ``kernel[grid]``: records the call instead of launching it."""

    def __init__(self, fn, calls: list):
        self.fn, self.calls = fn, calls

    def __getitem__(self, grid):
        def record(*args, **kwargs):
            self.calls.append((self.fn, args, kwargs))

        return record


@contextmanager
def captured_launches():
    """Within the block, every ``_..._kernel[grid](...)`` of the kernel modules is recorded, not run."""
    calls: list = []
    saved = []
    for module in MODULES:
        for name in dir(module):
            fn = getattr(module, name)
            if isinstance(fn, triton.runtime.JITFunction):
                saved.append((module, name, fn))
                setattr(module, name, _Capture(fn, calls))
    try:
        yield calls
    finally:
        for module, name, fn in saved:
            setattr(module, name, fn)


def _compile(fn, args, kwargs):
    """The kernel compiled for sm_90 from a captured call: (compiled kernel, options)."""
    options = {k: kwargs.pop(k) for k in ("num_warps", "num_stages") if k in kwargs}
    names = fn.arg_names
    values = dict(zip(names, args, strict=False)) | kwargs
    constexprs = {names[i] for i in fn.constexprs}
    signature = {n: "constexpr" if n in constexprs else _arg_type(values[n]) for n in names}
    source = ASTSource(fn, signature, constexprs={n: values[n] for n in constexprs})
    return triton.compile(source, target=TARGET, options=options), options


def _ptxas(ptx: str) -> dict:
    """Registers and spill bytes from ``ptxas -v`` for sm_90a."""
    from triton.backends.nvidia.compiler import get_ptxas  # the ptxas Triton itself uses for sm_90

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "k.ptx"
        path.write_text(ptx)
        out = subprocess.run(
            [get_ptxas(90).path, "-arch=sm_90a", "-v", str(path), "-o", str(Path(tmp) / "k.cubin")],
            capture_output=True, text=True, check=True,
        ).stderr  # fmt: skip
    regs = re.search(r"Used (\d+) registers", out)
    spills = [int(n) for n in re.findall(r"(\d+) bytes spill (?:stores|loads)", out)]
    return {"n_regs": int(regs.group(1)) if regs else None, "spill_bytes": sum(spills)}


def _meta(*shape, dtype=torch.bfloat16):
    return torch.empty(*shape, dtype=dtype, device="meta")


def _cases(quick: bool):
    """(label, dtype, launcher, its arguments) per op, on meta tensors: nothing is allocated."""
    dims = (128,) if quick else (64, 80, 128, 256)
    dtypes = (torch.bfloat16,) if quick else (torch.bfloat16, torch.float32)
    b, k, length = 8, 10, 512
    # (heads, kv heads, head dims): Qwen3 (G*K = 40 rows per group) at every head dim, Qwen2.5-7B
    # (28 / 4 heads: G*K = 70, the 128-row tiles) at d = 128
    shapes = [(32, 8, dim) for dim in dims] + [(28, 4, 128)]
    for h, hkv, dim in shapes:
        for dt in dtypes:
            q, kv = _meta(b, h, k, dim, dtype=dt), _meta(b, hkv, k, dim, dtype=dt)
            cache, mask = _meta(b, hkv, length, dim, dtype=dt), _meta(b, length, dtype=torch.bool)
            lse = _meta(b, h, k, dtype=torch.float32)
            attn = appended_attention
            yield (
                f"appended_attention fwd G*K={h // hkv * k} d={dim}",
                dt,
                attn.appended_attention_forward,
                (q, kv, kv, cache, cache, mask, 0.1),
            )
            yield (
                f"appended_attention bwd G*K={h // hkv * k} d={dim}",
                dt,
                attn.appended_attention_backward,
                (q, kv, kv, cache, cache, mask, q, lse, q, 0.1),
            )
    for dt in dtypes:
        labels = _meta(256, dtype=torch.int64)
        yield (
            "fused_linear_cross_entropy V=151669",
            dt,
            fused_linear_cross_entropy.fused_linear_cross_entropy_forward,
            (
                _meta(256, 4096, dtype=dt),
                _meta(151_669, 4096, dtype=dt),
                labels,
                None,
                1.0,
                256,
                True,
                True,
                False,
            ),
        )
        yield (
            "distill_loss K=10 D=4096",
            dt,
            distill_loss.distill_loss_forward,
            (_meta(32, 10, 4096, dtype=dt), _meta(32, 4096, dtype=torch.float32), None, True, 1e-8, True),
        )
        yield (
            "encode_tail H=D=4096",
            dt,
            encode_tail.encode_tail_forward,
            (
                _meta(256, 10, 4096, dtype=dt),
                _meta(4096, 4096, dtype=torch.float32),
                _meta(4096, dtype=torch.float32),
                True,
                1e-12,
            ),
        )
        sids = _meta(10, dtype=torch.int64)
        yield (
            "special_token_embedding fwd H=4096",
            dt,
            special_token_embedding.special_token_embedding_forward,
            (
                _meta(8, 512, dtype=torch.int64),
                _meta(151_669, 4096, dtype=dt),
                sids,
                _meta(10, 4096, dtype=dt),
            ),
        )
        yield (
            "special_token_embedding bwd H=4096",
            dt,
            special_token_embedding.special_token_embedding_backward,
            (_meta(8, 512, 4096, dtype=dt), _meta(8, 512, dtype=torch.int32), 10),
        )


def run(quick: bool) -> list[dict]:
    rows = []
    for label, dtype, launcher, launcher_args in _cases(quick):
        with captured_launches() as calls:
            launcher(*launcher_args)
        for fn, args, kwargs in calls:
            compiled, options = _compile(fn, args, dict(kwargs))
            ptx = compiled.asm["ptx"]
            row = {
                "case": label, "dtype": str(dtype).removeprefix("torch."), "kernel": fn.__name__,
                **options, "shared_bytes": compiled.metadata.shared, **_ptxas(ptx),
                "wgmma": ptx.count("wgmma.mma_async"), "mma_sync": ptx.count("mma.sync"),
            }  # fmt: skip
            sixteen_bit = dtype != torch.float32
            row["ok"] = (
                row["shared_bytes"] <= HOPPER_SHARED
                and (row["n_regs"] or 0) <= MAX_REGS
                and (row["spill_bytes"] == 0 or not sixteen_bit)
            )
            rows.append(row)
            print(" | ".join(str(v) for v in row.values()), flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="head dim 128 and bf16 only")
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args(argv)
    rows = run(args.quick)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    bad = [r for r in rows if not r["ok"]]
    print(f"{len(rows)} kernels compiled for sm_90, {len(bad)} over a limit")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
