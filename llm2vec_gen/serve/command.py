"""``llm2vec-gen serve CHECKPOINT``: the command (also ``python -m llm2vec_gen.serve CHECKPOINT``).

Importing this module is cheap (the CLI imports it for every command): it only checks that the
``serve`` extra is installed, raising ``ModuleNotFoundError`` naming the first missing package,
and imports the server when the command runs. Exit status: 0 after SIGTERM/SIGINT (in-flight
requests finished first), 1 when the model fails to load, 2 for a bad argument (``cli.main``).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import logging
import os
import signal
from typing import TYPE_CHECKING

from llm2vec_gen.cli.common import (
    add_device_args,
    add_quantize_arg,
    check_model_source,
    checkpoint_dir,
    positive_int,
    usage_errors,
)

if TYPE_CHECKING:
    from llm2vec_gen.serve.config import ServeConfig

for _package in ("fastapi", "uvicorn", "pydantic", "prometheus_client"):
    if importlib.util.find_spec(_package) is None:
        raise ModuleNotFoundError(
            f"No module named {_package!r} (pip install 'llm2vec-gen-fast[serve]')", name=_package
        )

API_KEY_ENV = "LLM2VEC_GEN_API_KEY"
_DESCRIPTION = (
    "Serve a checkpoint over HTTP: POST /v1/embeddings (OpenAI), /embed (text-embeddings-inference), "
    "/decode (embeddings back to text); GET /health, /metrics, /v1/models. Requests are batched "
    "dynamically under a token budget, one forward pass at a time."
)


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {value}")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``serve`` options (their defaults are ``ServeConfig``'s)."""
    from llm2vec_gen.integrations.instructions import PROMPTS

    p.add_argument("checkpoint", help="LLM2Vec-Gen checkpoint directory (or hub id)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--port", type=int, default=8080, help="default 8080")
    add_device_args(p)
    add_quantize_arg(p)
    p.add_argument(
        "--api-key",
        default=os.environ.get(API_KEY_ENV),
        help=f"require Authorization: Bearer KEY on /v1, /embed, /decode (default ${API_KEY_ENV})",
    )
    p.add_argument(
        "--served-model-name", default=None, help="the model name the API reports (default CHECKPOINT)"
    )
    p.add_argument(
        "--default-prompt-name",
        choices=sorted(PROMPTS),
        default=None,
        help="instruction preset when a request names none (default: no instruction)",
    )
    p.add_argument(
        "--max-input-length",
        type=positive_int,
        default=512,
        help="tokens per text, with instruction and special tokens (default 512)",
    )
    p.add_argument(
        "--auto-truncate",
        action="store_true",
        help="cut over-long texts (keeping the special tokens) instead of answering 413",
    )
    p.add_argument(
        "--max-client-batch-size", type=positive_int, default=2048, help="texts per request (default 2048)"
    )
    p.add_argument(
        "--max-concurrent-requests",
        type=positive_int,
        default=512,
        help="embed/decode requests served at once; more get 429 (default 512)",
    )
    p.add_argument(
        "--max-batch-tokens",
        type=positive_int,
        default=None,
        help="padded tokens per forward pass (default 16384 on a GPU, 2048 on a CPU)",
    )
    p.add_argument(
        "--max-batch-size", type=positive_int, default=256, help="rows per forward pass (default 256)"
    )
    p.add_argument(
        "--max-padding",
        type=_fraction,
        default=0.25,
        help="largest fraction of a batch's tokens that may be padding (default 0.25; 1: no limit)",
    )
    p.add_argument(
        "--max-body-bytes",
        type=positive_int,
        default=2_000_000,
        help="larger request bodies get 413 (default 2000000)",
    )
    p.add_argument(
        "--max-decode-tokens", type=positive_int, default=512, help="largest max_new_tokens (default 512)"
    )
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.add_argument("--access-log", action="store_true", help="log every request (uvicorn's access log)")


def register(sub: argparse._SubParsersAction) -> None:
    """Adds the ``serve`` command to the ``llm2vec-gen`` subparsers."""
    p = sub.add_parser("serve", help="OpenAI-compatible embedding server", description=_DESCRIPTION)
    add_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Runs the server until SIGTERM/SIGINT; the exit status."""
    from llm2vec_gen.serve.config import ServeConfig

    check_model_source(args.checkpoint, "checkpoint", checkpoint_dir)
    with usage_errors(ValueError):
        config = ServeConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(ServeConfig)})
    return serve(config, args.host, args.port, args.log_level, args.access_log)


def serve(
    config: ServeConfig,
    host: str = "127.0.0.1",
    port: int = 8080,
    log_level: str = "info",
    access_log: bool = False,
) -> int:
    """Serves ``config`` with uvicorn until SIGTERM/SIGINT: 0, or 1 when the model failed to load.
    Call it from the main thread (it installs signal handlers)."""
    import uvicorn

    from llm2vec_gen.serve.app import create_app, load_model
    from llm2vec_gen.serve.batcher import Engine
    from llm2vec_gen.serve.metrics import Metrics

    logger = logging.getLogger("llm2vec_gen.serve")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(log_level.upper())
    failures: list[BaseException] = []

    def failed(exc: BaseException) -> None:
        failures.append(exc)
        server.should_exit = True

    engine = Engine(config, Metrics(), lambda: load_model(config), on_failure=failed)
    app = create_app(config, engine)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level=log_level,
            access_log=access_log,
            timeout_graceful_shutdown=None,
        )
    )
    # uvicorn shuts down gracefully on SIGTERM/SIGINT, then re-raises the signal into the handler
    # that was installed before it ran: make that one a no-op, so a graceful stop exits with 0.
    previous = {sig: signal.signal(sig, _handled) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 1 if failures or not server.started else 0


def _handled(sig: int, frame: object) -> None:
    """The signal uvicorn re-raises after its graceful shutdown: nothing more to do."""
