"""The GPU check's Python driver (``bash benchmarks/gpu_check.sh`` runs it; see that script).

    python benchmarks/gpu_check.py [--dry-run] [--sections accuracy,resources,timing,model] [--out DIR]
    python benchmarks/gpu_check.py --sections sanitize      # small ragged shapes, under compute-sanitizer

Sections, each in its own try (a failure is recorded with its traceback and the rest still run):

- ``accuracy``: every op, fp32 and bf16, at Qwen3-4B/8B shapes, forward and gradients: relative
  error ||x - ref|| / ||ref|| against the fp64 reference, beside the same error of the torch
  reference run in the inputs' dtype (the tests' rule: ours <= 2x that + a small floor).
- ``resources``: every compiled Triton kernel's registers, spills and shared memory (Triton's own
  cache after the launches), with appended_attention compiled for head dims 64, 80, 128, 256 in bf16
  and fp32; each checked against the device's limits (shared memory, 255 registers); spills are
  listed (the CUDA tests fail on any in bf16; fp32 attention has some, see RESULTS.md).
- ``timing``: each op against its torch reference (``triton.testing.do_bench``, median ms) and against
  its roofline: max(bytes / HBM bandwidth, FLOPs / dense bf16 tensor-core peak), from the published
  specs picked by device name (H100 SXM 3.35 TB/s, H200 4.8 TB/s, ~989 TFLOP/s).
- ``model``: a bf16 training step and an encode of a Qwen3-0.6B-shaped random model (a Qwen3Config,
  no hub) with this library against a reference-style step (the llm2vec-gen 0.1.3 recipe: PEFT-style
  table rebuild, the whole query under gradient, fp32 logits over every decoder position).

``--dry-run`` runs every section on CPU tensors under the Triton interpreter at tiny shapes (timing by
the host clock, no roofline): it checks that the script runs, not the numbers. Writes
``gpu_check.json`` (everything) and ``gpu_check.md`` (tables for RESULTS.md) into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch

CUDA = torch.cuda.is_available()
if not CUDA:  # before any kernel module is imported: the dry run interprets the Triton kernels
    os.environ.setdefault("TRITON_INTERPRET", "1")

import torch.nn.functional as F  # noqa: E402

from llm2vec_gen import _dispatch, ops  # noqa: E402
from llm2vec_gen.ops.encode_tail import NORM_EPS  # noqa: E402

# Published specs: (HBM bytes/s, dense bf16 tensor-core FLOP/s); first name contained in the device's.
SPECS = [
    ("H200", 4.8e12, 989e12),
    ("H100 PCIe", 2.0e12, 756e12),
    ("H100 NVL", 3.9e12, 835e12),
    ("H100", 3.35e12, 989e12),
]
HEAD_DIMS = (64, 80, 128, 256)
# Accuracy passes when the relative error is within twice the torch reference's in the same dtype,
# or under these floors (fp32 arithmetic; bf16 operands land between 1e-3 and 1e-2).
ERR_FLOOR = {torch.float32: 1e-5, torch.bfloat16: 1e-2}
MAX_REGS = 255


# ---------------------------------------------------------------------------------------- cases


def _rand(*shape, dtype, device, scale=1.0):
    return (torch.randn(*shape, device=device) * scale).to(dtype)


def _attention_case(dtype, device, tiny, dim=128):
    b, h, hkv, k, length = (2, 4, 2, 3, 37) if tiny else (8, 32, 8, 10, 512)
    mask = torch.arange(length, device=device)[None, :] >= torch.arange(b, device=device)[:, None] * 7
    args = [_rand(b, h, k, dim, dtype=dtype, device=device)]
    args += [_rand(b, hkv, k, dim, dtype=dtype, device=device) for _ in range(2)]
    args += [_rand(b, hkv, length, dim, dtype=dtype, device=device) for _ in range(2)] + [mask]
    e = args[0].element_size()
    fwd = 4 * b * h * k * (length + k) * dim
    return {
        "name": f"appended_attention B={b} h={h} hkv={hkv} K={k} d={dim} L={length}",
        "fn": ops.appended_attention,
        "ref": ops.appended_attention_reference,
        "args": args,
        "kwargs": {},
        "diff": (0, 1, 2),
        # forward and backward each read the cache once; the [B, h, K, d] tensors are small beside it
        "bytes": 2 * e * (2 * b * h * k * dim + 4 * b * hkv * k * dim + 2 * b * hkv * length * dim),
        "flops": fwd * 3.5,  # forward + backward (S recomputed, dP, dQ; dK, dV on the K keys)
    }


def _flce_case(dtype, device, tiny):
    n, dim, vocab = (37, 16, 1000) if tiny else (4096, 2560, 151_669)
    labels = torch.randint(0, vocab, (n,), device=device)
    labels[::5] = -100
    args = [
        _rand(n, dim, dtype=dtype, device=device),
        _rand(vocab, dim, dtype=dtype, device=device, scale=0.02),
    ]
    e = args[0].element_size()
    return {
        "name": f"fused_linear_cross_entropy N={n} H={dim} V={vocab} (weight trains)",
        "fn": ops.fused_linear_cross_entropy,
        "ref": ops.fused_linear_cross_entropy_reference,
        "args": [*args, labels],
        "kwargs": {},
        "diff": (0, 1),
        "bytes": e * (2 * n * dim + 2 * vocab * dim) + 4 * vocab * dim,
        "flops": 3 * 2 * n * dim * vocab,  # logits, grad_hidden, grad_weight
    }


def _distill_case(dtype, device, tiny):
    b, k, dim = (5, 3, 100) if tiny else (32, 10, 4096)
    args = [_rand(b, k, dim, dtype=dtype, device=device), torch.randn(b, dim, device=device)]
    e = args[0].element_size()
    return {
        "name": f"distill_loss cosine B={b} K={k} D={dim}",
        "fn": lambda *a, **kw: ops.distill_loss(*a, **kw, check_finite=False),  # no host sync
        "ref": ops.distill_loss_reference,
        "args": args,
        "kwargs": {"kind": "cosine"},
        "diff": (0,),
        "bytes": e * b * k * dim + 4 * b * dim + e * b * dim,
        "flops": 8 * b * k * dim,
    }


def _encode_tail_exact(h, weight, bias, normalize):
    """encode_tail in the inputs' precision (fp64 for the oracle)."""
    out = torch.addmm(bias, h.mean(1), weight.t())
    return F.normalize(out, dim=-1, eps=NORM_EPS) if normalize else out


def _encode_tail_case(dtype, device, tiny):
    b, k, hidden, dim = (7, 3, 40, 24) if tiny else (256, 10, 4096, 4096)
    args = [_rand(b, k, hidden, dtype=dtype, device=device), torch.randn(dim, hidden, device=device) / 64]
    args.append(torch.randn(dim, device=device))
    e = args[0].element_size()
    return {
        "name": f"encode_tail B={b} K={k} H={hidden} D={dim} (inference)",
        "fn": ops.encode_tail,
        "ref": ops.encode_tail_reference,
        "oracle": _encode_tail_exact,  # the reference computes in fp32 whatever its inputs
        "args": args,
        "kwargs": {"normalize": True},
        "diff": (),
        "bytes": e * b * k * hidden + 4 * (dim * hidden + b * dim),
        "flops": 2 * b * hidden * dim,
    }


def _embedding_case(dtype, device, tiny):
    b, t, vocab, hidden, k = (2, 9, 50, 24, 3) if tiny else (8, 512, 151_669, 4096, 10)
    special = torch.arange(vocab, vocab + k, device=device)
    ids = torch.randint(0, vocab, (b, t), device=device)
    ids[:, -k:] = special
    args = [
        ids,
        _rand(vocab, hidden, dtype=dtype, device=device),
        special,
        torch.randn(k, hidden, device=device),
    ]
    e = args[1].element_size()
    return {
        "name": f"special_token_embedding B={b} T={t} V={vocab} H={hidden} K={k}",
        "fn": ops.special_token_embedding,
        "ref": ops.special_token_embedding_reference,
        "args": args,
        "kwargs": {},
        "diff": (3,),
        "bytes": 3 * e * b * t * hidden,
        "flops": b * t * hidden,
    }


CASES = [_attention_case, _flce_case, _distill_case, _encode_tail_case, _embedding_case]


def _leaves(case, cast: torch.dtype | None = None) -> list:
    """The case's arguments as fresh leaves (``case["diff"]`` ones require grad), floats cast to ``cast``."""
    out = []
    for i, a in enumerate(case["args"]):
        if isinstance(a, torch.Tensor) and a.is_floating_point():
            a = a.detach().to(cast or a.dtype).requires_grad_(i in case["diff"])
        out.append(a)
    return out


def _run(fn: Callable, case, leaves: list, grad_seed: int = 1) -> list[torch.Tensor]:
    """Output and the gradients of the ``diff`` arguments for a fixed random output gradient."""
    out = fn(*leaves, **case["kwargs"])
    if not case["diff"]:
        return [out.detach()]
    gen = torch.Generator(device=out.device).manual_seed(grad_seed)
    grad_out = torch.randn(out.shape, generator=gen, device=out.device).to(out.dtype)
    grads = torch.autograd.grad(out, [leaves[i] for i in case["diff"]], grad_out)
    return [out.detach(), *grads]


def _rel(x: torch.Tensor, ref: torch.Tensor) -> float:
    ref = ref.double()
    return ((x.double() - ref).norm() / ref.norm().clamp_min(1e-300)).item()


# ------------------------------------------------------------------------------------- sections


def section_accuracy(device, tiny) -> list[dict]:
    rows = []
    for make in CASES:
        for dtype in (torch.float32, torch.bfloat16):
            case = make(dtype, device, tiny)
            ours = _run(case["fn"], case, _leaves(case))
            ref = _run(case.get("oracle", case["ref"]), case, _leaves(case, torch.float64))
            same = _run(case["ref"], case, _leaves(case))
            for name, a, r, s in zip(
                ["out"] + [f"grad{i}" for i in case["diff"]], ours, ref, same, strict=True
            ):
                err, base = _rel(a, r), _rel(s, r)
                ok = math.isfinite(err) and err <= max(2 * base, ERR_FLOOR[dtype])
                rows.append(
                    {
                        "case": case["name"],
                        "dtype": str(dtype)[6:],
                        "tensor": name,
                        "rel_err": err,
                        "torch_rel_err": base,
                        "ok": ok,
                    }
                )
    return rows


def _kernel_fns() -> list:
    import importlib

    fns = []
    for op in (
        "appended_attention",
        "fused_linear_cross_entropy",
        "distill_loss",
        "encode_tail",
        "special_token_embedding",
    ):
        module = importlib.import_module(f"llm2vec_gen.kernels.{op}")
        fns += [
            getattr(module, n)
            for n in dir(module)
            if n.endswith("_kernel") and hasattr(getattr(module, n), "fn")
        ]
    return fns


def section_resources(device, tiny) -> list[dict]:
    from llm2vec_gen.kernels import _common

    for dim in HEAD_DIMS:  # compile appended_attention at every head dim (the other ops ran already)
        for dtype in (torch.bfloat16, torch.float32):
            case = _attention_case(dtype, device, tiny, dim)
            _run(case["fn"], case, _leaves(case))
    limit = _common.max_shared_memory(device) if device.type == "cuda" else None
    rows = []
    for fn in _kernel_fns():
        for k in _common.compiled_kernels(fn):
            md = k.metadata
            rows.append(
                {
                    "kernel": k.name,
                    "num_warps": md.num_warps,
                    "num_stages": md.num_stages,
                    "shared_bytes": md.shared,
                    "shared_limit": limit,
                    "n_regs": k.n_regs,
                    "n_spills": k.n_spills,
                    "ok": md.shared <= limit and k.n_regs <= MAX_REGS,  # spills: listed only
                }
            )
    return rows


def _time_ms(step: Callable[[], object], device) -> float:
    if device.type == "cuda":
        from triton.testing import do_bench

        return do_bench(step, warmup=25, rep=100, return_mode="median")
    step()
    times = []
    for _ in range(3):
        start = time.perf_counter()
        step()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def _spec(device) -> tuple[str, float, float] | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next(((name, bw, fl) for key, bw, fl in SPECS if key in name), None)


def section_timing(device, tiny) -> list[dict]:
    spec = _spec(device)
    rows = []
    for make in CASES:
        case = make(torch.bfloat16, device, tiny)
        ours_leaves, ref_leaves = _leaves(case), _leaves(case)
        ours = _time_ms(partial(_run, case["fn"], case, ours_leaves), device)
        base = _time_ms(partial(_run, case["ref"], case, ref_leaves), device)
        floor = None if spec is None else max(case["bytes"] / spec[1], case["flops"] / spec[2]) * 1e3
        rows.append(
            {
                "case": case["name"] + (" fwd+bwd" if case["diff"] else ""),
                "dtype": "bfloat16",
                "ours_ms": ours,
                "torch_ms": base,
                "speedup": base / ours,
                "roofline_ms": floor,
                "of_roofline": None if floor is None else floor / ours,
                "bound": None
                if spec is None
                else ("memory" if case["bytes"] / spec[1] >= case["flops"] / spec[2] else "compute"),
            }
        )
    return rows


# ---------------------------------------------------------------------------------- model level


def _word_tokenizer(vocab: int):
    """A left-padding tokenizer of exactly ``vocab`` tokens "t0".."t{vocab-1}" (no hub)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({f"t{i}": i for i in range(vocab)}, unk_token="t0"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="t0", padding_side="left")


def _qwen3_06b(device, tiny):
    """A random Qwen3-0.6B-shaped causal LM in bf16 (hidden 1024, 28 layers, 16/8 heads, d=128)."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    shape = (
        dict(
            vocab_size=1024,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=16,
        )
        if tiny
        else dict(
            vocab_size=151_936,
            hidden_size=1024,
            intermediate_size=3072,
            num_hidden_layers=28,
            num_attention_heads=16,
            num_key_value_heads=8,
            head_dim=128,
        )
    )
    config = Qwen3Config(**shape, tie_word_embeddings=True, max_position_embeddings=4096)
    torch.manual_seed(0)
    return Qwen3ForCausalLM(config).to(device=device, dtype=torch.bfloat16).eval().requires_grad_(False)


def _reference_style_step(model, batch) -> torch.Tensor:
    """The llm2vec-gen 0.1.3 recipe's step, in the same bf16 model: the V x H table rebuilt with the
    K rows (PEFT TrainableTokens), query + K tokens all under gradient, heads on the K rows, MSE
    distillation, then the decoder on [r][answer] with fp32 logits over every position."""
    from llm2vec_gen.prefix_cache import prefix_positions

    llm, k = model.llm, model.special_ids.shape[0]
    table = llm.get_input_embeddings().weight.index_copy(
        0, model.special_ids, model.special_rows.to(torch.bfloat16)
    )
    bsz = batch.query_ids.shape[0]
    ids = torch.cat([batch.query_ids, model.special_ids.expand(bsz, k)], 1)
    mask = torch.cat([batch.query_mask, torch.ones_like(batch.query_mask[:, :k])], 1)
    h = llm.model(
        inputs_embeds=F.embedding(ids, table), attention_mask=mask, position_ids=prefix_positions(mask)
    ).last_hidden_state[:, -k:]
    r = model.recon_head(h.float())
    distill = F.mse_loss(model.align_head(r).mean(1), batch.teacher)
    answers = F.embedding(batch.answer_ids, table)
    dec_mask = torch.cat([torch.ones_like(batch.answer_mask[:, :k]), batch.answer_mask], 1)
    logits = llm(inputs_embeds=torch.cat([r.to(answers.dtype), answers], 1), attention_mask=dec_mask).logits
    labels = torch.cat([torch.full_like(batch.labels[:, :k], -100), batch.labels], 1)
    ce = F.cross_entropy(logits[:, :-1].float().flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100)
    return ce + distill


def _cuda_ms(step: Callable[[], object], device, rounds: int = 5) -> float:
    step()  # warm-up (compiles, allocator)
    if device.type != "cuda":
        start = time.perf_counter()
        step()
        return (time.perf_counter() - start) * 1e3
    times = []
    for _ in range(rounds):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        step()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def section_model(device, tiny) -> list[dict]:
    from llm2vec_gen.model import LLM2VecGenModel
    from llm2vec_gen.train.data import Batch
    from llm2vec_gen.train.step import step_loss

    llm = _qwen3_06b(device, tiny)
    vocab = llm.config.vocab_size - 16 if tiny else 151_669
    model = LLM2VecGenModel.from_base(
        llm,
        _word_tokenizer(vocab),
        num_special_tokens=10,
        teacher_dim=1024 if not tiny else 32,
        device=device,
        dtype=torch.bfloat16,
    )
    bsz, lo, hi = (2, 5, 12) if tiny else (8, 128, 512)
    gen = torch.Generator().manual_seed(0)

    def padded(left: bool):
        lengths = torch.randint(lo, hi + 1, (bsz,), generator=gen)
        width = int(lengths.max())
        ids = torch.randint(0, vocab, (bsz, width), generator=gen)
        cols = torch.arange(width)[None, :]
        mask = (cols >= width - lengths[:, None]) if left else (cols < lengths[:, None])
        return ids * mask, mask.long()

    query_ids, query_mask = padded(left=True)
    answer_ids, answer_mask = padded(left=False)
    labels = answer_ids.masked_fill(answer_mask == 0, -100)
    teacher = torch.randn(bsz, model.align_head.out_features, generator=gen)
    batch = Batch(query_ids, query_mask, answer_ids, answer_mask, labels, teacher).to(device)
    count = int((labels != -100).sum())
    model.special_rows.requires_grad_(True)
    params = [model.special_rows, *model.recon_head.parameters(), *model.align_head.parameters()]

    def ours():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out = step_loss(model, batch, ce_count=count, rows=bsz, kind="mse")
        out.loss.backward()
        for p in params:
            p.grad = None
        return out.loss.detach()

    def reference():
        loss = _reference_style_step(model, batch)
        loss.backward()
        for p in params:
            p.grad = None
        return loss.detach()

    rows = []
    for name, step in (("train step, ours", ours), ("train step, reference-style", reference)):
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        ms = _cuda_ms(step, device)
        peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
        rows.append({"what": name, "ms": ms, "peak_mib": peak, "loss": float(step())})

    texts = [torch.randint(0, vocab, (int(n),), generator=gen).tolist() for n in torch.randint(lo, hi, (64,))]
    with torch.no_grad():
        emb = model.encode_ids(texts, batch_size=32)
        rows.append(
            {
                "what": "encode 64 texts, ours",
                "ms": _cuda_ms(lambda: model.encode_ids(texts, batch_size=32), device),
            }
        )
    rows.append(
        {
            "what": "encode check",
            "embedding_shape": list(emb.shape),
            "finite": bool(torch.isfinite(emb).all()),
        }
    )
    return rows


def section_sanitize(device, tiny) -> list[dict]:
    """Every op forward + backward at small ragged shapes (run it under compute-sanitizer)."""
    rows = []
    for make in CASES:
        for dtype in (torch.float32, torch.bfloat16):
            case = make(dtype, device, tiny=True)
            outs = _run(case["fn"], case, _leaves(case))
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            rows.append(
                {
                    "case": case["name"],
                    "dtype": str(dtype)[6:],
                    "finite": all(bool(torch.isfinite(o).all()) for o in outs),
                }
            )
    return rows


SECTIONS = {
    "accuracy": section_accuracy,
    "resources": section_resources,
    "timing": section_timing,
    "model": section_model,
    "sanitize": section_sanitize,
}


# -------------------------------------------------------------------------------------- report


def _table(rows: list[dict]) -> str:
    if not rows:
        return "(no rows)\n"
    keys = list(dict.fromkeys(k for r in rows for k in r))

    def cell(v):
        return f"{v:.3g}" if isinstance(v, float) else "" if v is None else str(v)

    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(cell(r.get(k)) for k in keys) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _environment(device) -> dict:
    import triton

    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "triton": triton.__version__,
        "device": str(device),
        "interpreter": _dispatch.triton_interpreting(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(
            name=props.name,
            capability=f"{props.major}.{props.minor}",
            sms=props.multi_processor_count,
            memory_gib=round(props.total_memory / 2**30, 1),
            spec=_spec(device),
        )
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU tensors, Triton interpreter, tiny shapes")
    parser.add_argument(
        "--sections",
        default="accuracy,timing,resources,model",
        help=f"comma-separated, from {', '.join(SECTIONS)}",
    )
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "benchmarks/results/gpu")))
    args = parser.parse_args(argv)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {unknown}; choose from {', '.join(SECTIONS)}")
    if not args.dry_run and not CUDA:
        parser.error("no CUDA device: run on a GPU machine, or pass --dry-run for the CPU interpreter")
    device = torch.device("cuda" if CUDA and not args.dry_run else "cpu")
    if device.type == "cpu":
        os.environ[_dispatch.ENV_VAR] = "triton"  # CPU tensors take the (interpreted) Triton kernels
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"environment": _environment(device), "dry_run": args.dry_run, "sections": {}}
    steps = args.out / "steps.txt"  # the shell script's steps (sanitizer, pytest), one "name status" a line
    if steps.exists():
        report["steps"] = dict(line.split(" ", 1) for line in steps.read_text().splitlines() if " " in line)
    md = ["# GPU check", "", "```", json.dumps(report["environment"], indent=1), "```", ""]
    failed = False
    for name in sections:
        start = time.perf_counter()
        try:
            torch.manual_seed(0)
            rows = SECTIONS[name](device, tiny=args.dry_run)
            entry = {"status": "ok", "rows": rows}
            if any(r.get("ok") is False for r in rows):
                entry["status"] = "check failed"
        except Exception:  # noqa: BLE001 - recorded, the other sections still run
            entry = {"status": "error", "error": traceback.format_exc()}
        entry["seconds"] = round(time.perf_counter() - start, 1)
        failed |= entry["status"] != "ok"
        report["sections"][name] = entry
        print(f"[gpu_check] {name}: {entry['status']} ({entry['seconds']} s)", flush=True)
        md += [f"## {name}: {entry['status']} ({entry['seconds']} s)", ""]
        md.append(_table(entry["rows"]) if "rows" in entry else f"```\n{entry['error']}```\n")
        _write(args.out, report, md)  # after every section: a later timeout keeps what ran
    print("\n".join(md))
    return 1 if failed else 0


def _write(out: Path, report: dict, md: list[str]) -> None:
    steps = [f"- step {key}: {value}" for key, value in report.get("steps", {}).items()]
    (out / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str))
    (out / "gpu_check.md").write_text("\n".join(md + steps) + "\n")


if __name__ == "__main__":
    sys.exit(main())
