"""The ``llm2vec-gen`` command line. Each subcommand is one function ``_cmd_<name>(args)``."""

from __future__ import annotations

import argparse
import sys
import time


def _cmd_demo(args: argparse.Namespace) -> int:
    """Offline demo: distil student vectors toward the real all-MiniLM-L6-v2 teacher embeddings."""
    import torch

    from llm2vec_gen import backend_for
    from llm2vec_gen.ops import distill_loss
    from llm2vec_gen.teachers import minilm_embed

    texts = [
        "How do I bake sourdough bread at home?",
        "Sourdough needs an active starter, flour, water and salt; bake at 250 C in a Dutch oven.",
        "What is the capital of France?",
        "Paris is the capital and largest city of France.",
        "Explain gradient descent in one sentence.",
        "Gradient descent moves parameters against the gradient of the loss to reduce it.",
    ]
    teacher = minilm_embed(texts)
    torch.manual_seed(args.seed)
    student = torch.randn(len(texts), 10, teacher.shape[1], requires_grad=True)
    opt = torch.optim.Adam([student], lr=0.05)
    print(f"teacher: all-MiniLM-L6-v2, {len(texts)} texts -> {tuple(teacher.shape)}")
    print(f"backend for CPU tensors: {backend_for(student.device)}")
    start = time.perf_counter()
    for step in range(args.steps + 1):
        loss = distill_loss(student, teacher, kind=args.kind)
        if step % max(1, args.steps // 5) == 0:
            print(f"step {step:4d}  {args.kind} distill loss {loss.item():.6f}")
        if step == args.steps:
            break
        opt.zero_grad()
        loss.backward()
        opt.step()
    print(f"{args.steps} steps in {time.perf_counter() - start:.2f}s")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llm2vec-gen", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the offline end-to-end demo")
    demo.add_argument("--steps", type=int, default=100, help="optimisation steps (default 100)")
    demo.add_argument("--kind", choices=["cosine", "mse"], default="cosine")
    demo.add_argument("--seed", type=int, default=42)
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
