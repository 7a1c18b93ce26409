"""Runs the README examples (tests/dropin_examples.py) with the llm2vec-gen 0.1.3 package itself.
Runs INSIDE benchmarks/.refenv, called by tests/test_dropin_reference.py:

    benchmarks/.refenv/bin/python tests/dropin_reference_side.py CKPT MAX_NEW_TOKENS

Prints one JSON object: {"cos_sim": {example: [[...]]}, "decoded": str}. The reference's own
``generate`` hard-codes CUDA, so the decode runs its two steps on the CPU: ``encode(...,
get_recon_hidden_states=True)`` then ``model.model.generate`` from those states (greedy).
"""

from __future__ import annotations

import json
import sys

import dropin_examples as examples


def main(checkpoint: str, max_new_tokens: int) -> int:
    namespace = examples.load(checkpoint)
    model = namespace["model"]
    if not hasattr(sys.modules["llm2vec_gen"], "__author__"):  # the reference sets it; we do not
        raise SystemExit("not the reference package: run inside benchmarks/.refenv")
    model.model.eval()
    cos = {}
    for name, snippet in examples.COSINE_EXAMPLES.items():
        examples.run(snippet, namespace)
        cos[name] = namespace["cos_sim"].float().tolist()
    _, recon = model.encode(examples.DECODE_TEXT, get_recon_hidden_states=True)
    dummy = model.tokenizer(["x"], return_tensors="pt")
    ids = model.model.generate(
        input_ids=dummy["input_ids"],
        attention_mask=dummy["attention_mask"],
        max_new_tokens=max_new_tokens,
        decoder_inputs_embeds=recon,
    )
    decoded = model.tokenizer.batch_decode(ids, skip_special_tokens=True)[0]
    print(json.dumps({"cos_sim": cos, "decoded": decoded}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2])))
