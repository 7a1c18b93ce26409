"""Integrations around ``LLM2VecGenModel``; each submodule imports its framework only when imported.

- ``mteb``: ``LLM2VecGenMTEB`` (mteb v2 EncoderProtocol with the paper's instructions),
  ``model_meta``, ``local_retrieval_task`` / ``local_sts_task`` (mteb tasks over local data)
- ``sentence_transformers``: ``LLM2VecGenST`` module and ``sentence_transformer(...)``
- ``distributed``: ``encode_distributed`` (one corpus sharded over torchrun ranks) and
  ``encode_file_distributed`` (a texts file streamed by each rank over its own range)
- ``files``: ``iter_texts`` (streamed chunks) / ``read_texts`` / ``write_embeddings`` /
  ``write_embeddings_stream`` / ``read_embeddings`` (CLI file formats)
- ``stream_encode``: ``encode_file`` (a texts file of any size encoded chunk by chunk, resumable
  after a kill) and ``check_input``
- ``instructions``: the evaluation instructions; ``sample_data``: a small bundled eval set
"""
