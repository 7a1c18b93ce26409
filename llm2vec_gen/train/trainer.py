"""The training loop: (query, answer, teacher embedding) examples -> a released-format checkpoint.

Recipe defaults are the released models' (docs/design.md §1): AdamW (weight decay 0), lr 3e-4, grad-norm
clip 1.0, linear schedule with 100 warm-up steps over ``total_steps`` (20k) stopped at ``max_steps``,
global batch 32, max length 512, seed 42, MSE distillation, both loss weights 1.0. Only the K special
rows (fp32) and the two heads train; the LLM is one frozen copy shared by encoder and decoder.

One optimizer step consumes one global batch of ``batch_size`` examples (a length-grouped order,
deterministic from the seed and the step, so resuming needs only the step). Under ``torchrun`` each
of the W processes takes W-interleaved slices of it and runs them as micro-batches; the trainable
gradients (a few MB) are summed with one all-reduce. Losses are normalised by the global batch's
token and row counts, so the update is the same for any W and any micro-batch size.

A step whose loss or gradient norm is NaN/inf is skipped (no update; the data and schedule move on)
and counted; ``max_bad_steps`` consecutive bad steps raise RuntimeError.

At start, process 0 repairs the output directory after a killed save (``state.clean_stale``:
leftover temporary directories are deleted). Resuming (``resume=True``, the default) then loads the
newest complete checkpoint. One whose state is truncated or corrupted (``load_state`` raises
ValueError) is skipped with a warning naming it and the next older one is used: training redoes the
lost steps deterministically and saves those steps again. When every complete checkpoint is
unreadable, ValueError names them (``resume=False`` starts over). ``fit`` then drops
``train_log.jsonl`` lines with a step beyond the resumed one (and a torn last line), rewriting the
file atomically, so each step is logged exactly once.
"""

from __future__ import annotations

import json
import random
import resource
import time
import warnings
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from llm2vec_gen.batching import pad_token_id
from llm2vec_gen.io.atomic import atomic_write_file
from llm2vec_gen.io.records import check_records, read_records
from llm2vec_gen.train.data import (
    REFERENCE_ANSWER_SUFFIX,
    collate,
    global_batches,
    split_batch,
    tokenize_records,
)
from llm2vec_gen.train.state import clean_stale, complete_checkpoints, load_state, save_checkpoint
from llm2vec_gen.train.step import step_loss
from llm2vec_gen.train.teach import align_teacher, load_teacher_cache

LOG_FILE = "train_log.jsonl"


def _option(default, help: str, **argparse):
    """A TrainConfig field whose ``help`` (and extra argparse settings, e.g. ``choices``, ``min``) the
    CLI turns into its ``llm2vec-gen train`` option."""
    return field(default=default, metadata={"help": help, **argparse})


@dataclass
class TrainConfig:
    """Hyper-parameters; ``batch_size`` is global (all processes, all micro-batches of a step).

    Every field is an option of ``llm2vec-gen train`` (``--lr``, ``--grad-clip``, ``--bf16/--no-bf16``,
    ...), generated from the field's type, default and ``help``.
    """

    output_dir: str = _option("llm2vec-gen-run", "checkpoints (checkpoint-<step>/) and train_log.jsonl")
    lr: float = _option(3e-4, "peak learning rate of AdamW")
    weight_decay: float = _option(0.0, "AdamW weight decay")
    warmup_steps: int = _option(100, "linear warm-up steps")
    total_steps: int = _option(20_000, "length of the linear schedule", min=1)
    max_steps: int | None = _option(None, "stop after this step (default: total_steps)", min=1)
    batch_size: int = _option(32, "global batch: examples per optimizer step, all processes", min=1)
    micro_batch_size: int | None = _option(None, "examples per forward pass of a process", min=1)
    max_length: int = _option(512, "max tokens of a query (K special tokens included), of an answer", min=1)
    distill: str = _option("mse", "distillation loss against the teacher", choices=("mse", "cosine"))
    recon_weight: float = _option(1.0, "weight of the reconstruction cross-entropy")
    align_weight: float = _option(1.0, "weight of the distillation loss")
    grad_clip: float = _option(1.0, "max gradient norm (clipped every step)")
    seed: int = _option(42, "seed of the initialisation and the data order")
    save_every: int = _option(500, "save a checkpoint every this many steps (0: only the last)")
    log_every: int = _option(1, "log every this many steps", min=1)
    gradient_checkpointing: bool = _option(False, "recompute the LLM's activations in the backward")
    bf16: bool | None = _option(None, "bf16 autocast (default: on CUDA only)")
    max_bad_steps: int = _option(10, "fail after this many consecutive NaN/inf steps", min=1)
    answer_suffix: str = _option(REFERENCE_ANSWER_SUFFIX, "text appended to every answer")
    mega_batches: int = _option(50, "batches per length-sorted mega-batch", min=1)
    resume: bool = _option(True, "continue from the newest complete checkpoint in output_dir")
    progress: bool = _option(True, "show a progress bar")

    @property
    def stop_step(self) -> int:
        return self.total_steps if self.max_steps is None else self.max_steps


def linear_schedule(warmup: int, total: int):
    """lr factor of step s: s / warmup during warm-up, then linear decay to 0 at ``total``."""

    def factor(step: int) -> float:
        if step < warmup:
            return step / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


def trim_log(path: str | Path, step: int) -> None:
    """Keep the JSON lines of ``path`` whose ``step`` is <= ``step`` (dropping a torn or unparsable
    line and everything after it); rewritten atomically (temporary file, fsync, rename)."""
    path = Path(path)
    if not path.is_file():
        return
    kept = []
    with open(path, "rb") as f:
        for line in f:
            try:
                rec_step = json.loads(line)["step"]
            except (ValueError, KeyError, TypeError):
                break
            if not line.endswith(b"\n"):
                break
            if rec_step <= step:
                kept.append(line)
    atomic_write_file(path, lambda f: f.writelines(kept))


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Trainer:
    """Trains ``model`` (an ``LLM2VecGenModel``) on ``data`` with the cached teacher embeddings.

    data           a JSONL/CSV/parquet path or a list of ``{"id", "query", "answer"}`` dicts
    teacher_cache  a path written by ``teach`` (or an ``(ids, [N, D] tensor)`` pair)

    Everything is checked before the first step (fields, empty answers, teacher ids and dimension,
    batch split); errors are ValueError with the cause.
    """

    def __init__(self, model, data, teacher_cache, config: TrainConfig | None = None):
        self.model, self.config = model, config or TrainConfig()
        cfg = self.config
        self.rank = dist.get_rank() if dist.is_initialized() else 0
        self.world = dist.get_world_size() if dist.is_initialized() else 1
        self.device = model.special_rows.device
        records = check_records(data) if isinstance(data, list) else read_records(data)
        cache_ids, cache_emb = (
            teacher_cache if isinstance(teacher_cache, tuple) else load_teacher_cache(teacher_cache)
        )
        dim = model.align_head.out_features
        if cache_emb.shape[1] != dim:
            raise ValueError(
                f"teacher embeddings are {cache_emb.shape[1]}-d but the alignment head outputs {dim}-d: "
                "build the model with teacher_dim equal to the teacher's"
            )
        source = "(given)" if isinstance(teacher_cache, tuple) else teacher_cache
        self.teacher = align_teacher([r["id"] for r in records], cache_ids, cache_emb, source)
        if not torch.isfinite(self.teacher).all():
            raise ValueError("teacher embeddings hold NaN or inf")
        self.k = model.special_ids.shape[0]
        self.data = tokenize_records(model.tokenizer, records, self.k, cfg.max_length, cfg.answer_suffix)
        self.lengths = self.data.lengths(self.k)
        self.label_counts = [sum(t != -100 for t in lab) for lab in self.data.labels]
        micro = cfg.micro_batch_size or cfg.batch_size // self.world
        if micro < 1 or cfg.batch_size % (micro * self.world):
            raise ValueError(
                f"batch_size {cfg.batch_size} must be a multiple of micro_batch_size {micro} x "
                f"{self.world} processes"
            )
        self.accum = cfg.batch_size // (micro * self.world)
        if len(records) < cfg.batch_size:
            raise ValueError(f"{len(records)} examples are fewer than one batch of {cfg.batch_size}")
        if cfg.distill not in ("mse", "cosine"):
            raise ValueError(f"distill must be 'mse' or 'cosine', got {cfg.distill!r}")
        self.pad_id = pad_token_id(model.tokenizer, model.llm.get_input_embeddings().weight.shape[0])
        self.params = self._trainable()
        # fused: one kernel per step, and it skips a non-finite step on the device (``found_inf``)
        self.optimizer = torch.optim.AdamW(self.params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, linear_schedule(cfg.warmup_steps, cfg.total_steps)
        )
        self.step, self.bad_steps, self.consecutive_bad, self.saved_step = 0, 0, 0, None
        self.bf16 = cfg.bf16 if cfg.bf16 is not None else self.device.type == "cuda"
        if cfg.gradient_checkpointing:
            model.llm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if self.world > 1:
            for p in self.params:
                dist.broadcast(p.data, 0)
        if self.rank == 0:
            clean_stale(cfg.output_dir)
        if self.world > 1:
            dist.barrier()
        if cfg.resume:
            self._resume()

    def _resume(self) -> None:
        """Load the newest readable complete checkpoint of ``output_dir`` (see the module docstring)."""
        out = self.config.output_dir
        errors = []
        for ckpt in complete_checkpoints(out):
            try:
                state = load_state(ckpt)
            except ValueError as exc:
                warnings.warn(f"{exc}; trying the previous checkpoint", stacklevel=3)
                errors.append(str(exc))
                continue
            self.load_state_dict(state)
            return
        if errors:
            raise ValueError(
                f"no checkpoint in {out} could be resumed from: {'; '.join(errors)} "
                "(delete them, or start over without resuming)"
            )

    def _trainable(self) -> list[torch.nn.Parameter]:
        model = self.model
        model.llm.requires_grad_(False)
        model.llm.eval()
        params = [model.special_rows, *model.recon_head.parameters(), *model.align_head.parameters()]
        for p in params:
            p.requires_grad_(True)
        return params

    # ---- checkpoints -------------------------------------------------------------------------

    def state_dict(self) -> dict:
        rng = {"python": random.getstate(), "torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {
            "step": self.step,
            "bad_steps": self.bad_steps,
            "consecutive_bad": self.consecutive_bad,
            "trainable": [p.detach().cpu().clone() for p in self.params],
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng,
            "config": asdict(self.config),
        }

    def load(self, checkpoint: str | Path) -> None:
        """Restore weights, optimizer, schedule, RNG and data position from ``checkpoint``;
        ValueError naming the file when its state is truncated or corrupted."""
        self.load_state_dict(load_state(checkpoint))

    def load_state_dict(self, state: dict) -> None:
        """Restore from a ``state_dict()`` (as ``load_state`` returns it)."""
        with torch.no_grad():
            for p, saved in zip(self.params, state["trainable"], strict=True):
                p.copy_(saved)
        self.optimizer.load_state_dict(state["optimizer"])
        for group in self.optimizer.param_groups:  # a state saved by a non-fused optimizer
            group["fused"] = True
        self.scheduler.load_state_dict(state["scheduler"])
        self.step, self.bad_steps = state["step"], state["bad_steps"]
        self.consecutive_bad = state["consecutive_bad"]
        self.saved_step = self.step
        random.setstate(state["rng"]["python"])
        torch.set_rng_state(state["rng"]["torch"])
        if "cuda" in state["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])

    def save(self) -> Path:
        """Checkpoint the current step (process 0 writes; all processes wait for it); its path."""
        cfg = self.config
        if self.rank == 0:
            save_checkpoint(cfg.output_dir, self.step, self.model.save_pretrained, self.state_dict())
        if self.world > 1:
            dist.barrier()
        self.saved_step = self.step
        return Path(cfg.output_dir) / f"checkpoint-{self.step}"

    # ---- one optimizer step ------------------------------------------------------------------

    def _micro_batches(self, indices: Sequence[int]) -> list[list[int]]:
        parts = split_batch(indices, self.lengths, self.world * self.accum)
        return parts[self.rank :: self.world]

    def train_step(self, indices: Sequence[int]) -> dict:
        """Forward/backward over this process's share of one global batch, all-reduce, update."""
        cfg, model = self.config, self.model
        ce_count = sum(self.label_counts[i] for i in indices)
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if self.bf16 else nullcontext()
        # loss, ce_sum, distill_sum stay on the device: nothing is read back before the optimizer step
        stats = torch.zeros(3, dtype=torch.float64, device=self.device)
        tokens = 0
        for micro in self._micro_batches(indices):
            batch = collate(self.data, micro, self.teacher, self.pad_id).to(self.device)
            with autocast:
                out = step_loss(
                    model, batch, ce_count, len(indices), cfg.distill, cfg.recon_weight, cfg.align_weight,
                    checkpointing=cfg.gradient_checkpointing,
                )  # fmt: skip
            out.loss.backward()
            tokens += batch.num_tokens + self.k * out.rows
            stats += torch.stack([out.loss.detach(), out.ce_sum, out.distill * out.rows]).double()
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        if self.world > 1:
            flat = torch.cat([g.flatten().double() for g in grads] + [stats, stats.new_tensor([tokens])])
            dist.all_reduce(flat)
            stats, tokens = flat[-4:-1], flat[-1]
            offset = 0
            for p, g in zip(self.params, grads, strict=True):
                p.grad = flat[offset : offset + g.numel()].view_as(p).to(p.dtype)
                offset += g.numel()
        else:
            for p, g in zip(self.params, grads, strict=True):
                p.grad = g
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip)
        finite = torch.isfinite(stats[0]) & torch.isfinite(grad_norm)
        self.optimizer.found_inf = (~finite).float()  # the fused step skips itself when set
        self.optimizer.step()
        loss, grad_norm, ok = float(stats[0]), float(grad_norm), bool(finite)  # read after the step
        if ok:
            self.consecutive_bad = 0
        else:
            self.bad_steps += 1
            self.consecutive_bad += 1
        self.optimizer.zero_grad(set_to_none=True)
        lr = self.scheduler.get_last_lr()[0]
        with warnings.catch_warnings():  # a skipped step still advances the schedule, with the data
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step()`")
            self.scheduler.step()
        self.step += 1
        if self.consecutive_bad >= cfg.max_bad_steps:
            raise RuntimeError(
                f"{self.consecutive_bad} consecutive steps had a NaN/inf loss or gradient (last at step "
                f"{self.step}); stopping. Lower the learning rate or check the data and teacher cache."
            )
        return {
            "step": self.step,
            "loss": loss,
            "ce": float(stats[1]) / max(ce_count, 1),
            "distill": float(stats[2]) / len(indices),
            "grad_norm": grad_norm,
            "lr": lr,
            "skipped": not ok,
            "bad_steps": self.bad_steps,
            "tokens": int(tokens),
        }

    # ---- the loop ----------------------------------------------------------------------------

    def fit(self) -> Path:
        """Train up to ``stop_step``; returns the final checkpoint's directory."""
        cfg = self.config
        stop = cfg.stop_step
        log_path = Path(cfg.output_dir) / LOG_FILE
        if self.rank == 0:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            trim_log(log_path, self.step)
        show = cfg.progress and self.rank == 0
        with tqdm(total=stop, initial=self.step, desc="train", disable=not show) as bar:
            for _, indices in global_batches(
                self.lengths, cfg.batch_size, cfg.seed, self.step, cfg.mega_batches
            ):
                if self.step >= stop:
                    break
                start = time.perf_counter()
                rec = self.train_step(indices)
                seconds = time.perf_counter() - start
                rec.update(
                    tokens_per_s=rec["tokens"] / seconds,
                    examples_per_s=len(indices) / seconds,
                    seconds=seconds,
                    peak_memory_mb=_peak_memory_mb(self.device),
                )
                if self.rank == 0 and (self.step % cfg.log_every == 0 or self.step == stop):
                    with open(log_path, "a") as f:
                        f.write(json.dumps(rec) + "\n")
                bar.update(1)
                bar.set_postfix(
                    loss=f"{rec['loss']:.4f}", ce=f"{rec['ce']:.3f}", tok_s=f"{rec['tokens_per_s']:.0f}"
                )
                if cfg.save_every and self.step % cfg.save_every == 0:
                    self.save()
        return (
            self.save() if self.saved_step != self.step else Path(cfg.output_dir) / f"checkpoint-{self.step}"
        )


def train(model, data, teacher_cache, config: TrainConfig | None = None, **overrides) -> Path:
    """``Trainer(model, data, teacher_cache, config with overrides).fit()``; the final checkpoint."""
    config = config or TrainConfig()
    if overrides:
        config = TrainConfig(**{**asdict(config), **overrides})
    return Trainer(model, data, teacher_cache, config).fit()
