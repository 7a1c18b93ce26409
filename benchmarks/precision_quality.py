"""Quality of bf16 and int8 encode against fp32 on one checkpoint (issue #16), on the bundled retrieval set.

Loads the checkpoint three times on the CPU (fp32, ``dtype=torch.bfloat16``, ``quantize="int8"``),
embeds the queries and passages of ``llm2vec_gen.evaluate.sample_retrieval_set`` with the paper's
instructions (and the demo corpus: its 150 queries against its 150 answers), and prints one JSON
object: per set and precision the retrieval metrics (``evaluate_retrieval``) and, against fp32, the
worst and mean per-row cosine, the share of queries with the same top-1 and the mean top-10 overlap.

    python benchmarks/precision_quality.py CKPT [--base BASE_LLM]
"""

from __future__ import annotations

import argparse
import json
from importlib import resources

import numpy as np
import torch

from llm2vec_gen.evaluate import RetrievalSet, evaluate_retrieval, sample_retrieval_set
from llm2vec_gen.model import LLM2VecGenModel

OPTIONS = {"fp32": {}, "bf16": {"dtype": torch.bfloat16}, "int8": {"quantize": "int8"}}


class Recorder:
    """Forwards ``encode`` to a model and keeps what it returned, so one ``evaluate_retrieval`` pass
    gives the metrics and the embeddings (queries [Q, D], then passages [P, D], L2-normalised)."""

    def __init__(self, model: LLM2VecGenModel):
        self.model, self.outputs = model, []

    def encode(self, texts: list[str], **kwargs) -> np.ndarray:
        self.outputs.append(self.model.encode(texts, **kwargs))
        return self.outputs[-1]


def demo_retrieval_set() -> RetrievalSet:
    """The demo corpus as a retrieval set: each of its 150 queries against all 150 answers."""
    lines = resources.files("llm2vec_gen").joinpath("data/demo_corpus.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines if line.strip()]
    queries = {r["id"]: r["query"] for r in rows}
    return queries, {r["id"]: r["answer"] for r in rows}, {i: {i: 1} for i in queries}


def compare(models: dict[str, LLM2VecGenModel], data: RetrievalSet) -> dict[str, dict]:
    """Per precision: retrieval metrics; against fp32 (the first model): worst and mean per-row cosine
    over queries and passages, the share of queries with the same top-1 and the mean top-10 overlap."""
    out, reference = {}, None
    for name, model in models.items():
        recorder = Recorder(model)
        entry = {"retrieval": evaluate_retrieval(recorder, data)}
        q, d = recorder.outputs
        top = np.argsort(-(q @ d.T), axis=1, kind="stable")[:, :10]
        if reference is None:
            reference = (q, d, top)
        else:
            cos = np.concatenate([(q * reference[0]).sum(1), (d * reference[1]).sum(1)])
            overlap = [len(set(a) & set(b)) / 10 for a, b in zip(top, reference[2], strict=True)]
            entry.update(
                min_cosine=float(cos.min()),
                mean_cosine=float(cos.mean()),
                same_top1_share=float((top[:, 0] == reference[2][:, 0]).mean()),
                mean_top10_overlap=float(np.mean(overlap)),
            )
        out[name] = entry
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--base", default=None, help="base LLM (default: the checkpoint's run_config)")
    parser.add_argument("--sample-only", action="store_true", help="skip the demo corpus (slow models)")
    args = parser.parse_args()
    models = {
        name: LLM2VecGenModel.from_pretrained(args.checkpoint, device="cpu", base_model=args.base, **options)
        for name, options in OPTIONS.items()
    }
    sets = {"sample_retrieval_set (16 queries)": sample_retrieval_set()}
    if not args.sample_only:
        sets["demo corpus (150 queries)"] = demo_retrieval_set()
    summary = {"checkpoint": args.checkpoint, **{name: compare(models, data) for name, data in sets.items()}}
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
