"""Integrations around ``LLM2VecGenModel``; each submodule imports its framework only when imported.

- ``mteb``: ``LLM2VecGenMTEB`` (mteb v2 EncoderProtocol with the paper's instructions),
  ``model_meta``, ``local_retrieval_task`` / ``local_sts_task`` (mteb tasks over local data)
- ``sentence_transformers``: ``LLM2VecGenST`` module and ``sentence_transformer(...)``
- ``distributed``: the torchrun set-up (``is_launched``, ``setup``), ``encode_distributed`` (one
  corpus sharded over the ranks) and ``encode_file_distributed`` (a texts file streamed by each
  rank over its own range)
- ``instructions``: the evaluation instructions; ``sample_data``: a small bundled eval set
"""
