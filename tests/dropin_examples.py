"""The llm2vec-gen 0.1.3 README's examples, verbatim (McGill-NLP/llm2vec-gen README.md, "Quick Start"),
and a runner that executes them. Imported by tests/test_dropin_readme.py (this project's package) and
run by tests/dropin_reference_side.py inside benchmarks/.refenv (the reference package itself).

Only the model path of the loading line is replaced (``HUB_ID`` -> a local checkpoint).
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

HUB_ID = '"McGill-NLP/LLM2Vec-Gen-Qwen3-8B"'

LOAD = """
import torch
from llm2vec_gen import LLM2VecGenModel

model = LLM2VecGenModel.from_pretrained("McGill-NLP/LLM2Vec-Gen-Qwen3-8B")
"""

RETRIEVAL = """
q_instruction = "Generate a passage that best answers this question: "
d_instruction = "Summarize the following passage: "

queries = [
  "where do polar bears live and what's their habitat",
  "what does disk cleanup mean on a computer"
]
q_reps = model.encode([q_instruction + q for q in queries])

documents = [
  "Polar bears live throughout the circumpolar North in the Arctic, spanning across Canada, Alaska (USA), Russia, Greenland, and Norway. Their primary habitat is sea ice over the continental shelf, which they use for hunting, mating, and traveling. They are marine mammals that rely on this environment to hunt seals.",
  "Disk Cleanup is a built-in Windows tool that frees up hard drive space by scanning for and deleting unnecessary files like temporary files, cached data, Windows updates, and items in the Recycle Bin. It improves computer performance by removing \\"junk\\" files, which can prevent the system from running slowly due to low storage.",
]
d_reps = model.encode([d_instruction + d for d in documents])

# Compute cosine similarity
q_reps_norm = torch.nn.functional.normalize(q_reps, p=2, dim=1)
d_reps_norm = torch.nn.functional.normalize(d_reps, p=2, dim=1)
cos_sim = torch.mm(q_reps_norm, d_reps_norm.transpose(0, 1))

print(cos_sim)
"""  # noqa: E501

SIMILARITY = """
instruction = "Generate text that is semantically similar to this text: "

queries = [
  "The traveler was frustrated because the flight had been delayed for several hours.",
  "Stars rotate due to the angular momentum of the gas they formed from."
]
q_reps = model.encode([instruction + q for q in queries])

pairs = [
  "A multi-hour wait at the airport left the passenger feeling quite annoyed.",
  "The rotational motion of a stellar body is a direct consequence of the conservation of angular momentum from its original protostellar cloud.",
]
p_reps = model.encode([instruction + p for p in pairs])

# Compute cosine similarity
q_reps_norm = torch.nn.functional.normalize(q_reps, p=2, dim=1)
p_reps_norm = torch.nn.functional.normalize(p_reps, p=2, dim=1)
cos_sim = torch.mm(q_reps_norm, p_reps_norm.transpose(0, 1))

print(cos_sim)
"""  # noqa: E501

CLASSIFICATION = """
q_instruction = "Classify the emotion expressed in the given text into anger and joy: "
p_instruction = "Summarize this text: "

queries = [
  "I just feel irritated right now",
  "I'm feeling really thrilled and excited",
]
q_reps = model.encode([q_instruction + q for q in queries])

pairs = [
  "This text is classified as \\"angry\\".",
  "This text is classified as \\"joy\\".",
]
p_reps = model.encode([p_instruction + p for p in pairs])

# Compute cosine similarity
q_reps_norm = torch.nn.functional.normalize(q_reps, p=2, dim=1)
p_reps_norm = torch.nn.functional.normalize(p_reps, p=2, dim=1)
cos_sim = torch.mm(q_reps_norm, p_reps_norm.transpose(0, 1))

print(cos_sim)
"""

CLUSTERING = """
from sklearn.cluster import KMeans

instruction = "Cluster the following Amazon review: "

sentences = [
  "This product is amazing and I love it",
  "Fantastic experience, highly recommend",
  "Terrible quality, total waste of money",
  "Awful product, very disappointed",
]

reps = model.encode([instruction + s for s in sentences])
reps = reps.float().cpu().numpy()

labels = KMeans(n_clusters=2, random_state=0).fit_predict(reps)

for s, l in zip(sentences, labels):
  print(f"[{l}] {s}")
"""

DECODING = """
_, recon_hidden_states = model.encode("what does disk cleanup mean on a computer", get_recon_hidden_states=True)
# recon_hidden_states: torch.Tensor with shape (1, compression token size, hidden_dim)

answer = model.generate(recon_hidden_states=recon_hidden_states, max_new_tokens=55)

print(answer)
"""  # noqa: E501

COSINE_EXAMPLES = {"retrieval": RETRIEVAL, "similarity": SIMILARITY, "classification": CLASSIFICATION}
DECODE_TEXT = "what does disk cleanup mean on a computer"


def run(snippet: str, namespace: dict[str, Any]) -> str:
    """Execute ``snippet`` in ``namespace`` (updated in place); returns what it printed."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(snippet, "<llm2vec-gen README>", "exec"), namespace)  # noqa: S102
    return out.getvalue()


def load(checkpoint: str) -> dict[str, Any]:
    """The namespace after the README's loading lines, with ``checkpoint`` in place of the Hub id."""
    namespace: dict[str, Any] = {}
    run(LOAD.replace(HUB_ID, repr(str(checkpoint))), namespace)
    return namespace
