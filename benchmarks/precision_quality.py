"""Quality and speed of bf16 and int8 encode against fp32 on one trained model (issue #16).

Loads the model once in fp32 and derives each variant from a copy: what ships (bf16 where the
hardware multiplies bf16: the whole LLM in bf16; bf16 on other CPUs: bf16 linear weights with fp32
arithmetic; ``int8``: SmoothQuant + per-token int8, as ``from_pretrained(quantize="int8")``), and the
variants that say where quality goes (bf16 GEMMs under autocast with an fp32 residual stream, int8
without smoothing or with one activation scale per tensor, int8 weights with fp32 activations).
Texts: the bundled retrieval set (queries and passages with the paper's instructions) and the 50 Lee
documents (STS instruction). One JSON object: per variant the encode seconds of all texts (one
thread, batches of 16, in this run) and the ratio to fp32, the worst and mean per-row cosine to fp32
over every text, the same after subtracting the mean of the fp32 unit embeddings ("centred":
what is left of each text's own direction, which a large shared component otherwise hides),
nDCG@10 / recall@10 and same-top-1 share on the retrieval set, and Spearman on the Lee pairs;
with ``--geometry`` also the error of the raw embeddings and recon states next to the norm of their
fp32 mean and their spread across the texts (``error_vs_spread``).
``transformers, bf16 vs fp32`` compares plain transformers' own bf16 and fp32 LLM on the same texts
(last hidden states mean-pooled and at the last token; no special tokens, no heads).

    python benchmarks/precision_quality.py --smollm2 [--parts self-mean]  # a shipped SmolLM2 model
    python benchmarks/precision_quality.py CKPT [--base BASE_LLM] [--variants fp32 int8 ...]
"""

from __future__ import annotations

import argparse
import copy
import json
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.ao.nn.quantized.dynamic import Linear as DynamicInt8Linear
from torch.ao.quantization.qconfig import per_channel_dynamic_qconfig

from llm2vec_gen import precision, smooth
from llm2vec_gen.evaluate import evaluate_retrieval, sample_retrieval_set
from llm2vec_gen.integrations.human_eval import lee_documents, lee_spearman
from llm2vec_gen.integrations.instructions import STS_INSTRUCTION
from llm2vec_gen.model import LLM2VecGenModel


def _per_tensor_int8(model: LLM2VecGenModel) -> None:
    """torch's dynamic int8 linear as is (one activation scale per tensor): what shipped before."""

    def per_tensor(linear: nn.Linear) -> nn.Module:
        linear.qconfig = per_channel_dynamic_qconfig
        return DynamicInt8Linear.from_float(linear)

    precision.replace_linears(model.llm.base_model, per_tensor)


def _int8_weights(group: int | None = None) -> Callable[[LLM2VecGenModel], None]:
    """Round every backbone linear's weight to int8 (symmetric, absmax / 127) with one scale per
    output channel (group None, as the int8 kernel's weights) or per ``group`` input channels of it
    (finer than torch's int8 kernels offer), and keep fp32 arithmetic: the error of the weights alone."""

    @torch.no_grad()
    def apply(model: LLM2VecGenModel) -> None:
        for module in model.llm.base_model.modules():
            if type(module) is nn.Linear:
                rows, cols = module.weight.shape
                w = module.weight.reshape(rows, cols // (group or cols), group or cols)
                scale = w.abs().amax(-1, keepdim=True).clamp(min=1e-12) / 127
                module.weight.copy_(((w / scale).round().clamp(-127, 127) * scale).reshape(rows, cols))

    return apply


def _smooth(alpha: float) -> Callable[[LLM2VecGenModel], None]:
    def apply(model: LLM2VecGenModel) -> None:
        run = lambda: model.encode(precision.calibration_texts(), batch_size=1)  # noqa: E731
        smooth.smooth_decoder(model.llm.base_model, run, alpha, model.llm.config.num_key_value_heads)

    return apply


def _chain(*steps: Callable[[LLM2VecGenModel], None]) -> Callable[[LLM2VecGenModel], None]:
    def apply(model: LLM2VecGenModel) -> None:
        for step in steps:
            step(model)

    return apply


def _int8_only(kinds: tuple[str, ...], layers: range | None = None) -> Callable[[LLM2VecGenModel], None]:
    """The shipped int8 (SmoothQuant a=0.65 over every layer, per-token int8) on only the linears
    named ``kinds`` in ``layers`` (default all); the rest stay fp32: per-layer sensitivity."""

    def apply(model: LLM2VecGenModel) -> None:
        _smooth(precision.SMOOTH_ALPHA)(model)
        for i, layer in enumerate(model.llm.base_model.layers):
            for part in (layer.self_attn, layer.mlp):
                for name, child in list(part.named_children()):
                    if type(child) is nn.Linear and name in kinds and (layers is None or i in layers):
                        setattr(part, name, precision.PerTokenInt8Linear(child))

    return apply


SENSITIVITY = {
    **{f"int8 only {kind}": _int8_only((kind,)) for kind in (*smooth.ATTENTION, *smooth.MLP)},
    **{f"int8 only layers {i}-{i + 5}": _int8_only((*smooth.ATTENTION, *smooth.MLP), range(i, i + 6))
       for i in range(0, 30, 6)},
}  # fmt: skip
"""Per-layer sensitivity on SmolLM2-135M (30 layers): one kind of linear, or one block of six layers."""


def _autocast_layers(model: LLM2VecGenModel) -> None:
    """Each decoder layer under CPU autocast to bf16: its GEMMs (and attention) in bf16, its norms in
    fp32, and the residual stream fp32 (``residual + bf16 output`` promotes)."""
    for layer in model.llm.base_model.layers:
        layer.forward = torch.autocast("cpu", dtype=torch.bfloat16)(layer.forward)


@torch.no_grad()
def _bf16_weights(model: LLM2VecGenModel) -> None:
    """What ``from_pretrained(dtype=torch.bfloat16)`` gives on a CPU without bf16 hardware: the
    LLM's parameters rounded to bf16 (its RoPE buffers stay fp32, as transformers loads them), then
    ``precision.bf16_weights``."""
    for param in model.llm.parameters():
        param.data = param.data.to(torch.bfloat16)
    precision.bf16_weights(model.llm)


AUTOCAST = "bf16 GEMMs (autocast), fp32 weights, residual stream and norms"
BF16_CPU = "bf16 on a CPU without bf16 hardware (shipped: bf16 linear weights, fp32 arithmetic)"
BF16_NATIVE = "bf16 on CUDA or an avx512_bf16/AMX CPU (shipped: the LLM in bf16)"
VARIANTS: dict[str, Callable[[LLM2VecGenModel], None]] = {
    "fp32": lambda m: None,
    BF16_NATIVE: lambda m: m.llm.to(torch.bfloat16),
    BF16_CPU: _bf16_weights,
    "bf16 weights and RoPE buffers, fp32 arithmetic": lambda m: m.llm.to(torch.bfloat16).float(),
    AUTOCAST: _autocast_layers,
    "int8 (shipped: SmoothQuant a=0.65, per-token)": precision.smooth_and_quantize_int8,
    "int8 per-token, SmoothQuant a=0.5": _chain(
        _smooth(0.5), lambda m: precision.quantize_int8(m.llm.base_model)
    ),
    "int8 per-token, SmoothQuant a=0.8": _chain(
        _smooth(0.8), lambda m: precision.quantize_int8(m.llm.base_model)
    ),
    "int8 per-token, no smoothing": lambda m: precision.quantize_int8(m.llm.base_model),
    "int8 per-tensor, SmoothQuant a=0.65": _chain(_smooth(0.65), _per_tensor_int8),
    "int8 per-tensor, no smoothing (before #16's fix)": _per_tensor_int8,
    "int8 weights only, fp32 activations": _int8_weights(),
    "int8 weights only, a scale per 32 input channels, fp32 activations": _int8_weights(32),
    **SENSITIVITY,
}


def encode_all(model: LLM2VecGenModel) -> tuple[np.ndarray, dict, float, float]:
    """(unit embeddings of queries, passages and Lee documents [N, D] fp64, retrieval metrics, Lee
    Spearman, seconds) of one model."""
    outputs = []

    class Recorder:
        def encode(self, texts: list[str], **kwargs) -> np.ndarray:
            outputs.append(model.encode(texts, **kwargs))
            return outputs[-1]

    recorder = Recorder()
    lee = lambda texts: recorder.encode(list(texts), instruction=STS_INSTRUCTION, batch_size=16,  # noqa: E731
                                        convert_to_numpy=True)  # fmt: skip
    start = time.perf_counter()
    retrieval = evaluate_retrieval(recorder, sample_retrieval_set(), batch_size=16)
    rho = lee_spearman(lee)
    seconds = time.perf_counter() - start
    emb = np.concatenate([np.asarray(o, dtype=np.float64) for o in outputs])  # retrieval rows come unit
    return emb / np.linalg.norm(emb, axis=1, keepdims=True), retrieval, rho, seconds


def geometry_texts() -> list[str]:
    """The same 90 texts, with their instructions, as one list."""
    from llm2vec_gen.integrations.instructions import PASSAGE_INSTRUCTION, QUERY_INSTRUCTION

    queries, corpus, _ = sample_retrieval_set()
    return (
        [QUERY_INSTRUCTION + t for t in queries.values()]
        + [PASSAGE_INSTRUCTION + t for t in corpus.values()]
        + [STS_INSTRUCTION + t for t in lee_documents()]
    )


def geometry(model: LLM2VecGenModel) -> dict[str, np.ndarray]:
    """Raw embeddings [90, D] and flattened recon states [90, N * H] (fp64) of ``geometry_texts``."""
    emb, recon = model.encode(geometry_texts(), batch_size=16, get_recon_hidden_states=True)
    return {"embedding": emb.double().numpy(), "recon": recon.double().reshape(len(emb), -1).numpy()}


def error_vs_spread(states: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """How big a variant's error is next to what the texts share and what tells them apart: the norm
    of the fp32 mean over texts, the rms spread of the texts around it, the rms error, the worst row
    cosine (states [n, d], reference fp32 [n, d])."""
    mean = reference.mean(0)
    cos = (states * reference).sum(1) / np.linalg.norm(states, axis=1) / np.linalg.norm(reference, axis=1)
    return {"mean_norm": float(np.linalg.norm(mean)),
            "rms_spread": float(np.sqrt(((reference - mean) ** 2).sum(1).mean())),
            "rms_error": float(np.sqrt(((states - reference) ** 2).sum(1).mean())),
            "min_cosine": float(cos.min())}  # fmt: skip


@torch.no_grad()
def transformers_bf16(model: LLM2VecGenModel) -> dict[str, dict[str, float]]:
    """Plain transformers, no special tokens or heads: the LLM's last hidden states of each text
    (raw, no instruction, one at a time), mean-pooled and at the last token, bf16 against fp32."""
    queries, corpus, _ = sample_retrieval_set()
    texts = [*queries.values(), *corpus.values(), *lee_documents()]
    pooled = {}
    for dtype in (torch.float32, torch.bfloat16):
        net = copy.deepcopy(model.llm.base_model).to(dtype)
        hidden = [
            net(input_ids=model.tokenizer(t, return_tensors="pt").input_ids).last_hidden_state[0]
            for t in texts
        ]
        pooled[dtype] = {"mean": torch.stack([h.double().mean(0) for h in hidden]),
                         "last token": torch.stack([h[-1].double() for h in hidden])}  # fmt: skip
    out = {}
    for pooling, ref in pooled[torch.float32].items():
        cos = nn.functional.cosine_similarity(pooled[torch.bfloat16][pooling], ref, dim=-1)
        out[pooling] = {"min_cosine": cos.min().item(), "mean_cosine": cos.mean().item(), "texts": len(texts)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", nargs="?", help="a checkpoint directory (or --smollm2)")
    parser.add_argument(
        "--smollm2", action="store_true", help="the demo's SmolLM2 model with the shipped parts"
    )
    parser.add_argument("--parts", default="minilm", help="with --smollm2: which shipped parts (demo.PARTS)")
    parser.add_argument("--base", default=None, help="base LLM (default: the checkpoint's run_config)")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS),
                        default=[v for v in VARIANTS if v not in SENSITIVITY])  # fmt: skip
    parser.add_argument("--skip-transformers", action="store_true")
    parser.add_argument("--geometry", action="store_true",
                        help="also each variant's error next to the fp32 mean and spread of the embeddings "
                             "and recon states (one more encode of the 90 texts per variant)")  # fmt: skip
    args = parser.parse_args()
    torch.manual_seed(0)
    warnings.filterwarnings("ignore", message=".*(emulated|qint8|quantize_per).*")
    if args.smollm2:
        from llm2vec_gen import demo
        from llm2vec_gen.bases import resolve_base

        base, source = (
            demo.load_trained(resolve_base(demo.BASE), demo.PARTS[args.parts], device="cpu"),
            str(demo.PARTS[args.parts].name),
        )
    else:
        base, source = (
            LLM2VecGenModel.from_pretrained(args.checkpoint, device="cpu", base_model=args.base),
            args.checkpoint,
        )
    summary: dict = {"model": source, "threads": torch.get_num_threads(), "variants": {}}
    reference = reference_states = None
    for name in ["fp32", *[v for v in args.variants if v != "fp32"]]:
        model = copy.deepcopy(base)
        VARIANTS[name](model)
        emb, retrieval, rho, seconds = encode_all(model)
        queries = int(retrieval["num_queries"])
        if reference is None:
            reference = emb, seconds
        entry = {"seconds": round(seconds, 2), "speed_vs_fp32": round(reference[1] / seconds, 3)}
        unit, ref = emb, reference[0]
        cos = (unit * ref).sum(1)
        centre = reference[0].mean(0)
        centred = [
            (e - centre) / np.linalg.norm(e - centre, axis=1, keepdims=True) for e in (emb, reference[0])
        ]
        cos_centred = (centred[0] * centred[1]).sum(1)
        top1 = [np.argmax(u[:queries] @ u[queries : len(u) - 50].T, axis=1) for u in (unit, ref)]
        entry.update(min_cosine=float(cos.min()), mean_cosine=float(cos.mean()),
                     min_cosine_centred=float(cos_centred.min()),
                     mean_cosine_centred=float(cos_centred.mean()),
                     same_top1_share=float((top1[0] == top1[1]).mean()), ndcg10=retrieval["ndcg@10"],
                     recall10=retrieval["recall@10"], lee_spearman=rho)  # fmt: skip
        if args.geometry:
            states = geometry(model)
            if name == "fp32":
                reference_states = states
            entry["geometry"] = {k: error_vs_spread(v, reference_states[k]) for k, v in states.items()}
        summary["variants"][name] = entry
        print(name, json.dumps(entry), flush=True)
    if not args.skip_transformers:
        summary["transformers, bf16 vs fp32"] = transformers_bf16(base)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
