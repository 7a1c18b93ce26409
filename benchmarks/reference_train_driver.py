"""One training step of the reference implementation (PyPI llm2vec-gen==0.1.3), timed on command.
Runs INSIDE the reference venv made by benchmarks/reference_env.sh, like reference_driver.py:

    benchmarks/.refenv/bin/python benchmarks/reference_train_driver.py CKPT batch.json --teacher DIR

The wheel's ``CustomTrainer.compute_loss`` raises NotImplementedError; the loss lives in the
repository's scripts/train.py (``LLM2VecGenTrainer.compute_loss``, not packaged). This driver runs
that recipe with the package's own code, adding only the glue train.py and the Trainer supply:

- model: ``EncoderDecoderModel.from_pretrained(CKPT, causal_lm_decoder=True, is_trainable=True)``,
  i.e. the encoder as a PEFT TrainableTokens model over the resized [len(tokenizer), H] table (its K
  rows trainable), both heads trainable, and a separate AutoModelForCausalLM decoder loaded from the
  base, frozen as train.py freezes it (``use_encoder_as_decoder: false`` in the paper's config);
  gradient checkpointing on with ``use_reentrant=False`` and train mode, as the Trainer sets them
  for ``gradient_checkpointing: true``;
- teacher: the model at --teacher as a transformers AutoModel (mean pooling in the package's
  ``get_teacher_embeddings``), frozen, its tokenizer left-padded as train.py sets it. The package
  asserts the teacher is a PeftModel (train.py's LLM2Vec teacher is one: mntp + a SimCSE LoRA), so
  it is wrapped in a LoRA whose B matrices start at zero: outputs unchanged, structure as in train.py;
- step (per command): ``model(query..., answer..., labels)`` (the package's per-sample
  ``prepend_prompt_to_left_padded_tok_embeds`` and transformers' causal-LM loss over every decoder
  position), ``get_teacher_embeddings`` on the answers (the teacher's forward, every step),
  ``compute_mse_loss(states.mean(1), teacher, 1.0)``, loss = CE + MSE (both weights 1.0 in the
  paper's config), ``backward()``. No optimizer update.

batch.json holds pre-tokenised ids (the same ids the benchmark's own side trains on):
``{"query_ids": [[int]], "answer_ids": [[int]], "answer_texts": [str]}``. They are laid out as the
package's CustomCollator lays them out: query ids + the K special ids, left padded; answers left
padded, labels = answer ids with -100 on pads; the answer texts (stripped) tokenised by the teacher's
tokenizer with the collator's arguments (padding "longest", truncation at 512; no special tokens, as
train.py configures the teacher). The collator itself cannot be imported here: its package imports
HF ``datasets``, which the reference venv does not hold. Tokenisation happens once, before any
timed step.

Prints one JSON header line after loading, then answers commands from stdin, one JSON line each:
``train`` -> ``{"s", "loss", "ce", "mse"}``; ``peak`` -> the same for one step plus ``peak_mb``
(resident memory the step adds: VmHWM after resetting it minus VmRSS before, as
benchmarks/conftest.py ``peak_memory_mb`` measures) and ``teacher`` (the teacher embeddings
[B, D]); ``quit`` stops.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import re
import sys
import time

import torch
from reference_driver import import_reference, versions


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        return int(re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.M).group(1)) / 1024


def _load(checkpoint: str, teacher_dir: str):
    """(model, teacher, teacher tokenizer, tokenizer) set up for training as train.py sets them up."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModel, AutoTokenizer

    from llm2vec_gen.models import EncoderDecoderModel

    model = EncoderDecoderModel.from_pretrained(checkpoint, causal_lm_decoder=True, is_trainable=True)
    model.decoder_model.requires_grad_(False)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    teacher = get_peft_model(
        AutoModel.from_pretrained(teacher_dir), LoraConfig(target_modules=["query", "value"])
    )
    teacher.requires_grad_(False)
    teacher.eval()
    teacher_tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    teacher_tokenizer.padding_side = "left"
    return model, teacher, teacher_tokenizer, AutoTokenizer.from_pretrained(checkpoint)


def _left_pad(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """ids [B, T] int64 (left padded with ``pad_id``) and mask [B, T] int64 (1 on real tokens)."""
    width = max(map(len, rows))
    ids = torch.tensor([[pad_id] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    return ids, mask


def _inputs(batch: dict, tokenizer, teacher_tokenizer) -> dict[str, torch.Tensor]:
    """The collator's tensors for the batch (see the module docstring)."""
    special = tokenizer.additional_special_tokens
    special_ids = tokenizer.convert_tokens_to_ids(special)
    query_ids, query_mask = _left_pad([q + special_ids for q in batch["query_ids"]], tokenizer.pad_token_id)
    answer_ids, answer_mask = _left_pad(batch["answer_ids"], tokenizer.pad_token_id)
    teacher = teacher_tokenizer(
        [t.strip() for t in batch["answer_texts"]],
        padding="longest",
        max_length=512,
        truncation=True,
        return_tensors="pt",
    )
    return {
        "query_input_ids": query_ids,
        "query_attention_mask": query_mask,
        "answer_input_ids": answer_ids,
        "answer_attention_mask": answer_mask,
        "labels": answer_ids.masked_fill(answer_mask == 0, -100),
        "teacher_input_ids": teacher["input_ids"],
        "teacher_attention_mask": teacher["attention_mask"],
    }


def _step(model, teacher, inputs: dict[str, torch.Tensor]) -> tuple[dict, torch.Tensor]:
    """One step: the package's forward, teacher and MSE, then backward. (losses, teacher [B, D])."""
    from llm2vec_gen.losses import compute_mse_loss, get_teacher_embeddings

    model.zero_grad(set_to_none=True)
    student = {k: v for k, v in inputs.items() if not k.startswith("teacher_")}
    states, outputs = model(**student)
    target = get_teacher_embeddings(
        inputs["teacher_input_ids"], inputs["teacher_attention_mask"], teacher, student_encoder_states=states
    )
    align, mse = compute_mse_loss(states.mean(dim=1), target, mse_loss_weight=1.0)
    loss = 1.0 * outputs.loss + align
    loss.backward()
    losses = {"loss": loss.item(), "ce": outputs.loss.item(), "mse": mse.item()}
    return losses, target.detach()


def _serve(model, teacher, inputs: dict[str, torch.Tensor]) -> None:
    for line in sys.stdin:
        command = line.strip()
        if command == "quit":
            break
        if command not in ("train", "peak"):
            print(json.dumps({"error": f"unknown command {command!r}"}), flush=True)
            continue
        if command == "peak":
            gc.collect()
            ctypes.CDLL("libc.so.6").malloc_trim(0)
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            before = _status_mb("VmRSS")
        start = time.perf_counter()
        reply, target = _step(model, teacher, inputs)
        reply["s"] = time.perf_counter() - start
        if command == "peak":
            reply.update(peak_mb=_status_mb("VmHWM") - before, teacher=target.tolist())
        print(json.dumps(reply), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("batch", help="JSON file: query_ids, answer_ids, answer_texts (see above)")
    parser.add_argument("--teacher", required=True, help="directory of the teacher (a transformers model)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave as is)")
    args = parser.parse_args(argv)
    import_reference(parser)
    if args.threads:
        torch.set_num_threads(args.threads)
    with open(args.batch, encoding="utf-8") as f:
        batch = json.load(f)

    start = time.perf_counter()
    model, teacher, teacher_tokenizer, tokenizer = _load(args.checkpoint, args.teacher)
    load_s = time.perf_counter() - start
    inputs = _inputs(batch, tokenizer, teacher_tokenizer)
    trainable, total = model.get_nb_trainable_parameters()
    decoder_bytes = sum(p.numel() * p.element_size() for p in model.decoder_model.parameters())
    header = {
        "load_s": load_s,
        "threads": torch.get_num_threads(),
        "versions": versions(),
        "trainable_params": trainable,
        "params": total,
        "decoder_copy_mb": decoder_bytes / 2**20,
        "encoder_table_rows": model.encoder_model.get_input_embeddings().weight.shape[0],
        "rss_mb": _status_mb("VmRSS"),
    }
    print(json.dumps(header), flush=True)
    _serve(model, teacher, inputs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
