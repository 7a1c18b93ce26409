"""The reference's import path: ``from llm2vec_gen.models import LLM2VecGenModel`` (llm2vec-gen 0.1.3).

The reference's training internals are not provided; importing them raises an ImportError naming
what to use instead.
"""

from llm2vec_gen.model import LLM2VecGenModel
from llm2vec_gen.models.encoder_decoder import EncoderDecoderView, EncoderView, ProjectionView

__all__ = ["LLM2VecGenModel", "EncoderDecoderView", "EncoderView", "ProjectionView"]

_INSTEAD = {
    "EncoderDecoderModel": "LLM2VecGenModel.from_pretrained(path); its .model is the same surface "
    "(encoder_model, decoder_model, reconstruction_mlp, alignment_mlp) over one LLM copy",
    "ProjectionModel": "model.model.reconstruction_mlp / .alignment_mlp (their .projection is the "
    "nn.Linear), or llm2vec_gen.format.read_head to load a head file",
    "apply_peft": "LLM2VecGenModel.from_base(...) and llm2vec_gen.train (the special rows and heads "
    "train, the LLM stays frozen; LoRA encoders are not supported)",
}


def __getattr__(name: str):
    if name in _INSTEAD:
        raise ImportError(
            f"llm2vec_gen.models.{name} (llm2vec-gen 0.1.3) is not provided here: use {_INSTEAD[name]}"
        )
    raise AttributeError(f"module 'llm2vec_gen.models' has no attribute {name!r}")
