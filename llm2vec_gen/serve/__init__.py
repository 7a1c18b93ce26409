"""``llm2vec-gen serve``: an OpenAI-compatible embedding server with dynamic batching and decoding.

    config.py      ServeConfig, the settings and limits
    schemas.py     pydantic request / response bodies
    batcher.py     Engine: the job queue and the dynamic batcher, on the thread that owns the model
    scheduling.py  pick_batch: which waiting rows run together (similar lengths, token budget)
    middleware.py  ASGI middleware: metrics, API key, body size
    errors.py      errors in the OpenAI / text-embeddings-inference JSON shapes
    metrics.py     Prometheus metrics
    app.py         create_app: the FastAPI routes
    command.py     the ``serve`` command (register(subparsers), main)

Needs the ``serve`` extra (fastapi, uvicorn, pydantic, prometheus-client). Importing this package
imports none of them; see docs/serving.md.
"""
