"""Training, from unlabelled queries to a released-format checkpoint.

respond  the LLM's own answers to the queries (KV-cached generation, resumable)
teach    the teacher's embeddings of the answers, computed once and cached by id
train    the K special rows and both heads of the frozen LLM (``Trainer`` / ``train``)
"""

from llm2vec_gen.io.records import read_records
from llm2vec_gen.train.data import DEMO_CORPUS
from llm2vec_gen.train.respond import respond
from llm2vec_gen.train.teach import load_teacher_cache, teach
from llm2vec_gen.train.trainer import TrainConfig, Trainer, train

__all__ = [
    "DEMO_CORPUS",
    "TrainConfig",
    "Trainer",
    "load_teacher_cache",
    "read_records",
    "respond",
    "teach",
    "train",
]
