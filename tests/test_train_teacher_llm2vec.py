"""LLM2Vec-style teacher: a decoder LLM, bidirectional, with peft adapters merged, mean pooling."""

import pytest
import torch
from peft import LoraConfig, get_peft_model

from llm2vec_gen.tiny import qwen_tokenizer, tiny_qwen3
from llm2vec_gen.train.teach import HFTeacher, load_teacher


@pytest.fixture(scope="module")
def llm2vec_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("llm2vec")
    tok = qwen_tokenizer()
    base = tiny_qwen3(len(tok), hidden_size=32, num_layers=2, seed=3)
    base.save_pretrained(root / "base")
    tok.save_pretrained(root / "base")
    adapters = []
    for i, seed in enumerate((11, 12)):  # two adapters, merged in order (MNTP, then SimCSE)
        torch.manual_seed(seed)
        model = tiny_qwen3(len(tok), hidden_size=32, num_layers=2, seed=3).model
        peft_model = get_peft_model(
            model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
        )
        peft_model.save_pretrained(root / f"adapter{i}")
        adapters.append(str(root / f"adapter{i}"))
    return str(root / "base"), adapters


def _expected(base_dir, adapters, texts):
    """Merge the LoRA deltas by hand and run full (non-causal) attention with masked padding."""
    from peft import PeftModel
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModel.from_pretrained(base_dir)
    for a in adapters:
        model = PeftModel.from_pretrained(model, a).merge_and_unload()
    out = []
    for text in texts:  # one at a time: no padding, so a plain non-causal mask is exact
        ids = tok(text, return_tensors="pt").input_ids
        t = ids.shape[1]
        hidden = model(input_ids=ids, attention_mask=torch.zeros(1, 1, t, t)).last_hidden_state
        out.append(hidden[0].mean(0))
    return torch.stack(out)


def test_bidirectional_adapters_mean_pooling(llm2vec_dirs):
    base_dir, adapters = llm2vec_dirs
    texts = ["a short answer", "a much longer answer that needs the padding of the batch to be masked"]
    teacher = load_teacher(base_dir, pooling="mean", adapters=adapters, bidirectional=True)
    assert isinstance(teacher, HFTeacher)
    got = teacher.encode(texts)
    torch.testing.assert_close(got, _expected(base_dir, adapters, texts), rtol=1e-4, atol=1e-5)
    # The adapters change the result, and so does the causal mask: both are really applied.
    plain = load_teacher(base_dir, pooling="mean", bidirectional=True).encode(texts)
    causal = load_teacher(base_dir, pooling="mean", adapters=adapters).encode(texts)
    assert (got - plain).abs().max() > 1e-4 and (got - causal).abs().max() > 1e-4
