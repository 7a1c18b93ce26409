"""The engine: a queue of jobs and a dynamic batcher on one thread that owns the model.

Only the engine thread touches the model and its tokenizer (a Hugging Face fast tokenizer is not
safe to call from two threads: truncation settings are mutated per call). The event loop only
``submit``s jobs and awaits their futures. The engine thread loops:

1. admits new jobs: tokenizes their texts (instruction + text + the K special tokens, as
   ``LLM2VecGenModel.tokenize``), refuses an over-long text unless the job truncates, and adds one
   row per text to the pending pool (arrival order);
2. forgets the rows of jobs whose client went away (``Job.cancel``);
3. takes the rows that may share a forward pass with the oldest row (same kind and options) and
   runs the oldest with those of similar lengths (``scheduling.pick_batch``: at most
   ``max_batch_size`` rows, ``max_batch_tokens`` padded tokens and ``max_padding`` padding):
   one forward pass at a time, no row overtaken forever;
4. scatters the results to their jobs; a job whose rows are all done resolves its future on the
   event loop.

Results are those of ``LLM2VecGenModel.encode_ids`` / ``decode`` on the batch. Encoding is
batch-invariant (``llm2vec_gen.invariant``), so on the CPU each row is offline ``encode``'s of its
text bit for bit, whatever it was batched with (same dtype or ``--quantize int8``, same torch thread
count; not guaranteed on CUDA).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from llm2vec_gen.serve.config import ServeConfig
from llm2vec_gen.serve.errors import APIError
from llm2vec_gen.serve.metrics import Metrics
from llm2vec_gen.serve.scheduling import pick_batch

log = logging.getLogger("llm2vec_gen.serve")

_WARM_UP = "Warm-up text."


@dataclass(eq=False)
class Job:
    """One request's work. ``texts`` (with ``instruction``) or ``recon`` (arrays [N, H] fp32) in.

    kind "embed" resolves to (embeddings fp32 [n, D], prompt tokens); "decode" to (n texts, prompt
    tokens). ``normalize`` applies to embed, ``max_new_tokens`` to decode.
    """

    kind: str
    field_name: str = "input"  # the request field of the texts, named in errors
    texts: list[str] | None = None
    recon: list[np.ndarray] | None = None
    instruction: str | None = None
    truncate: bool = False
    normalize: bool = False
    max_new_tokens: int = 0
    future: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    cancelled: bool = False
    results: list | None = None
    remaining: int = 0
    prompt_tokens: int = 0

    def cancel(self) -> None:
        """Drops the job's rows that have not run yet (call from the event loop)."""
        self.cancelled = True


@dataclass(eq=False)
class _Row:
    job: Job
    index: int
    ids: list[int] | None  # token ids; None for a recon-state row
    cost: int  # tokens the row occupies in its batch
    key: tuple  # rows share a batch only under equal keys


class Engine:
    """Owns the model on its thread; ``submit`` jobs from the event loop, ``start``/``stop`` it.

    ``load`` builds the model on the engine thread (an ``LLM2VecGenModel``); ``on_failure`` is called
    with the exception when loading or the warm-up fails.
    """

    def __init__(
        self,
        config: ServeConfig,
        metrics: Metrics,
        load: Callable[[], object],
        on_failure: Callable[[BaseException], None] | None = None,
    ):
        self.config, self.metrics, self._load, self._on_failure = config, metrics, load, on_failure
        self.model = None
        self.max_batch_tokens = 0  # the config's, or the device's default, once the model is loaded
        self.state = "loading"  # -> "ready" | "failed"
        self._inbox: list[Job] = []
        self._pending: list[_Row] = []
        self._wake = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._main, name="llm2vec-gen-engine", daemon=True)

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Finishes every submitted job, then ends the thread."""
        with self._wake:
            self._stopping = True
            self._wake.notify()
        if self._thread.is_alive():
            self._thread.join()

    def submit(self, job: Job) -> None:
        """Queues ``job`` (from the event loop); its future resolves when all its rows have run."""
        with self._wake:
            self._inbox.append(job)
            self._wake.notify()

    # ------------------------------------------------------------------------- engine thread

    def _main(self) -> None:
        try:
            self._start_model()
        except BaseException as exc:  # noqa: BLE001 - reported, then the server exits
            self.state = "failed"
            log.error("loading the model failed:\n%s", traceback.format_exc())
            if self._on_failure is not None:
                self._on_failure(exc)
            return
        self.state = "ready"
        log.info("model ready: %s on %s, batches of at most %d tokens", self.config.model_name,
                 self.model.device, self.max_batch_tokens)  # fmt: skip
        while True:
            with self._wake:
                while not (self._inbox or self._pending or self._stopping):
                    self._wake.wait()
                if self._stopping and not (self._inbox or self._pending):
                    return
                jobs, self._inbox = self._inbox, []
            for job in jobs:
                self._admit(job)
            self._pending = [r for r in self._pending if not r.job.cancelled]
            batch = self._next_batch() if self._pending else None
            self.metrics.queue_depth.set(len(self._pending))
            if batch:
                self._run(batch)

    def _start_model(self) -> None:
        warnings.filterwarnings("ignore", message=r"\d+ of \d+ texts are longer than max_length")
        self.model = model = self._load()
        self.max_batch_tokens = self.config.batch_tokens(model.device)
        k = model.num_special_tokens
        if self.config.max_input_length <= k:
            raise ValueError(f"max_input_length={self.config.max_input_length} must exceed K={k}")
        with torch.inference_mode():
            _, recon = model.encode_ids(model.tokenize([_WARM_UP]), get_recon_hidden_states=True)
            model.decode(recon, max_new_tokens=1)

    def _admit(self, job: Job) -> None:
        """Tokenizes ``job`` and adds its rows to the pool (an input error resolves the job)."""
        if job.cancelled:
            return
        try:
            rows = self._tokenize(job) if job.texts is not None else None
        except APIError as exc:
            self._resolve(job, exc)
            return
        n = len(rows) if rows is not None else len(job.recon)
        job.remaining = n
        if job.kind == "embed":
            job.results = np.empty((n, self.model.embedding_dim), dtype=np.float32)
            key: tuple = ("embed", job.normalize)
        else:
            job.results = [None] * n
            key = ("decode", job.max_new_tokens)
        if rows is None:
            n_tokens = self.model.num_encode_tokens
            job.prompt_tokens = n * n_tokens
            cost = n_tokens + job.max_new_tokens
            self._pending += [_Row(job, i, None, cost, key) for i in range(n)]
            return
        job.prompt_tokens = sum(len(r) for r in rows)
        extra = job.max_new_tokens if job.kind == "decode" else 0
        self._pending += [_Row(job, i, ids, len(ids) + extra, key) for i, ids in enumerate(rows)]

    def _tokenize(self, job: Job) -> list[list[int]]:
        """Token rows of ``job.texts``: over-long ones truncated (keeping the K special tokens) when
        the job truncates, else a 413 naming the first one and the limit."""
        limit, model = self.config.max_input_length, self.model
        rows = model.tokenize(job.texts, limit + 1, job.instruction)
        long = [i for i, row in enumerate(rows) if len(row) > limit]
        if long and not job.truncate:
            raise APIError(
                413,
                f"{job.field_name}[{long[0]}] is longer than the limit of "
                f"{limit} tokens (--max-input-length, counting the instruction and the "
                f"{model.num_special_tokens} special tokens): send truncate=true or start the server with "
                "--auto-truncate",
            )
        if long:
            cut = model.tokenize([job.texts[i] for i in long], limit, job.instruction)
            for i, row in zip(long, cut, strict=True):
                rows[i] = row
        return rows

    def _next_batch(self) -> list[_Row]:
        """The oldest pending row and the rows of its kind and options that run with it."""
        key = self._pending[0].key
        group = [r for r in self._pending if r.key == key]
        config = self.config
        chosen = pick_batch([r.cost for r in group], 0, config.max_batch_size, self.max_batch_tokens,
                            config.max_padding)  # fmt: skip
        rows = [group[i] for i in chosen]
        taken = set(map(id, rows))
        self._pending = [r for r in self._pending if id(r) not in taken]
        return rows

    def _run(self, rows: list[_Row]) -> None:
        """One forward pass (encode, or encode + decode) of ``rows``; results to their jobs."""
        kind, model = rows[0].key[0], self.model
        start = time.perf_counter()
        try:
            if kind == "embed":
                emb = model.encode_ids(
                    [r.ids for r in rows], batch_size=len(rows), normalize_embeddings=rows[0].job.normalize
                )
                values: list = list(emb.float().cpu().numpy())
            else:
                states, max_new = self._recon_states(rows), rows[0].job.max_new_tokens
                values = model.decode(states, max_new_tokens=max_new, batch_size=len(rows))
        except Exception as exc:  # noqa: BLE001 - the batch's jobs fail, the server goes on
            log.error("a batch of %d rows failed:\n%s", len(rows), traceback.format_exc())
            failed = {id(r.job): r.job for r in rows}
            self._pending = [r for r in self._pending if id(r.job) not in failed]
            for job in failed.values():
                message = f"the model failed on this batch: {type(exc).__name__}: {exc}"
                self._resolve(job, APIError(500, message))
            return
        seconds = time.perf_counter() - start
        tokens = sum(len(r.ids) if r.ids is not None else model.num_encode_tokens for r in rows)
        self.metrics.batch(kind, len(rows), max(r.cost for r in rows) * len(rows), tokens, seconds)
        for row, value in zip(rows, values, strict=True):
            job = row.job
            job.results[row.index] = value
            job.remaining -= 1
            if job.remaining == 0:
                self._resolve(job, (job.results, job.prompt_tokens))

    def _recon_states(self, rows: list[_Row]) -> torch.Tensor:
        """Recon states [B, N, H] fp32 of decode rows: encoded from their tokens, or as sent."""
        model = self.model
        text_rows = [r for r in rows if r.ids is not None]
        encoded = iter(())
        if text_rows:
            _, recon = model.encode_ids(
                [r.ids for r in text_rows], batch_size=len(text_rows), get_recon_hidden_states=True
            )
            encoded = iter(recon)
        states = [
            next(encoded) if r.ids is not None else torch.from_numpy(r.job.recon[r.index]).to(model.device)
            for r in rows
        ]
        return torch.stack(states)

    @staticmethod
    def _resolve(job: Job, outcome: object) -> None:
        """Sets ``job``'s future (a result, or an exception) on its event loop, unless it is done."""

        def settle() -> None:
            if job.future.done():
                return
            if isinstance(outcome, BaseException):
                job.future.set_exception(outcome)
            else:
                job.future.set_result(outcome)

        with contextlib.suppress(RuntimeError):  # a closed event loop: nobody waits for the job any more
            job.future.get_loop().call_soon_threadsafe(settle)
