import pytest
import torch
import torch.nn.functional as F
from conftest import available_backends, requires_cuda
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tolerances import assert_close

from llm2vec_gen import _dispatch
from llm2vec_gen.ops import SpecialTokenEmbedding, special_token_embedding, special_token_embedding_reference

VOCAB = 23
SPECIAL = [2, 23, 30]  # one inside the table, one just past it, one further past it


def _inputs(batch, seq, hidden, special=SPECIAL, dtype=torch.float32, vocab=VOCAB, device="cpu"):
    weight = torch.randn(vocab, hidden, device=device).to(dtype)
    special_ids = torch.tensor(special, device=device)
    special_rows = torch.randn(len(special), hidden, device=device, requires_grad=True)
    ids = torch.randint(0, vocab, (batch, seq), device=device)
    pick = torch.rand(batch, seq, device=device) < 0.4
    ids[pick] = special_ids[torch.randint(0, len(special), (int(pick.sum()),), device=device)]
    return ids, weight, special_ids, special_rows


def _peft_style(ids, weight, special_ids, special_rows):
    """What PEFT TrainableTokens computes: a full copy of the table with the K rows overwritten."""
    vocab = max(weight.shape[0], int(special_ids.max()) + 1)
    table = torch.zeros(vocab, weight.shape[1], dtype=weight.dtype)
    table[: weight.shape[0]] = weight
    table = table.index_copy(0, special_ids, special_rows.to(weight.dtype))
    return F.embedding(ids, table)


def _check_against(ids, weight, special_ids, special_rows, expected_fn):
    """Forward equal to expected_fn's; gradient close to expected_fn's carried out in fp64."""
    out = special_token_embedding(ids, weight, special_ids, special_rows)
    grad_out = torch.randn(out.shape, device=out.device).to(out.dtype)
    (grad,) = torch.autograd.grad(out, special_rows, grad_out)
    assert out.dtype == weight.dtype and out.shape == (*ids.shape, weight.shape[1])
    assert torch.equal(out, expected_fn(ids, weight, special_ids, special_rows.detach()))
    rows = special_rows.detach().double().requires_grad_()
    expected = expected_fn(ids, weight.double(), special_ids, rows)
    (expected_grad,) = torch.autograd.grad(expected, rows, grad_out.double())
    assert grad.dtype == special_rows.dtype
    assert_close(grad, expected_grad, torch.float32)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(("batch", "seq", "hidden"), [(1, 1, 1), (3, 7, 37), (5, 13, 100)])
def test_matches_reference(backend, batch, seq, hidden, dtype):
    _check_against(*_inputs(batch, seq, hidden, dtype=dtype), special_token_embedding_reference)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_matches_peft_style_table(backend, dtype):
    _check_against(*_inputs(4, 11, 37, dtype=dtype), _peft_style)


def test_one_special_token_repeated_in_every_position(backend):
    ids, weight, special_ids, special_rows = _inputs(3, 5, 19, special=[7])
    ids[:] = 7
    _check_against(ids, weight, special_ids, special_rows, _peft_style)
    out = special_token_embedding(ids, weight, special_ids, special_rows)
    out.sum().backward()
    assert torch.equal(special_rows.grad, torch.full((1, 19), 15.0))


def test_no_special_token_present_gives_zero_grad(backend):
    ids, weight, special_ids, special_rows = _inputs(2, 5, 9)
    ids = ids.clamp(3, VOCAB - 1)
    out = special_token_embedding(ids, weight, special_ids, special_rows)
    assert torch.equal(out, F.embedding(ids, weight))
    out.sum().backward()
    assert torch.equal(special_rows.grad, torch.zeros(3, 9))


@pytest.mark.parametrize("dtype", [torch.float16, torch.float64])
def test_other_table_dtypes_copy_exactly(backend, dtype):
    ids, weight, special_ids, special_rows = _inputs(3, 5, 11, dtype=dtype)
    out = special_token_embedding(ids, weight, special_ids, special_rows)
    assert out.dtype == dtype
    assert torch.equal(out, _peft_style(ids, weight, special_ids, special_rows.detach()))


def test_empty_sequence(backend):
    ids, weight, special_ids, special_rows = _inputs(2, 3, 6)
    out = special_token_embedding(ids[:, :0], weight, special_ids, special_rows)
    assert out.shape == (2, 0, 6)
    out.sum().backward()
    assert torch.equal(special_rows.grad, torch.zeros(3, 6))


def test_int32_ids_and_fp64_rows(backend):
    ids, weight, special_ids, special_rows = _inputs(3, 4, 6)
    rows = special_rows.detach().double().requires_grad_()
    out = special_token_embedding(ids.int(), weight, special_ids.int(), rows)
    assert torch.equal(out, _peft_style(ids, weight, special_ids, rows.detach()))
    out.sum().backward()
    assert rows.grad.dtype == torch.float64


@pytest.mark.parametrize("forced", [b for b in available_backends() if b != "triton"])  # Triton: fp32 only
def test_gradcheck_fp64(monkeypatch, forced):
    monkeypatch.setenv(_dispatch.ENV_VAR, forced)
    ids, weight, special_ids, _ = _inputs(3, 5, 4, dtype=torch.float64)
    rows = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda r: special_token_embedding(ids, weight, special_ids, r), (rows,))


def test_nothing_of_size_vocab_is_allocated(backend):
    # A [10^12, H] table that exists only as a stride-0 view: any V-sized buffer would fail.
    hidden = 8
    weight = torch.randn(1, hidden).expand(10**12, hidden)
    special_ids = torch.tensor([5, 10**12 + 3])
    rows = torch.randn(2, hidden, requires_grad=True)
    ids = torch.tensor([[0, 5, 10**12 - 1], [10**12 + 3, 5, 7]])
    out = special_token_embedding(ids, weight, special_ids, rows)
    out.sum().backward()
    assert torch.equal(out[0, 0], weight[0]) and torch.equal(out[1, 1], rows[0].detach())
    assert torch.equal(rows.grad, torch.tensor([[2.0] * hidden, [1.0] * hidden]))


def test_frozen_weight(backend):
    ids, weight, special_ids, special_rows = _inputs(2, 3, 5)
    weight.requires_grad_()
    with pytest.raises(ValueError, match="requires_grad_\\(False\\)"):
        special_token_embedding(ids, weight, special_ids, special_rows)
    with torch.no_grad():
        out = special_token_embedding(ids, weight, special_ids, special_rows)
    assert torch.equal(out, _peft_style(ids, weight.detach(), special_ids, special_rows.detach()))


@given(
    batch=st.integers(1, 4),
    seq=st.integers(1, 9),
    hidden=st.integers(1, 40),
    vocab=st.integers(1, 30),
    k=st.integers(1, 5),
    data=st.data(),
)
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_property_matches_peft_style(backend, batch, seq, hidden, vocab, k, data):
    special = data.draw(st.lists(st.integers(0, vocab + 10), min_size=k, max_size=k, unique=True))
    ids, weight, special_ids, special_rows = _inputs(batch, seq, hidden, special, vocab=vocab)
    _check_against(ids, weight, special_ids, special_rows, _peft_style)


def test_module_wraps_base_without_copy(backend):
    base = torch.nn.Embedding(VOCAB, 12)
    module = SpecialTokenEmbedding(base, SPECIAL, torch.randn(3, 12, dtype=torch.bfloat16))
    assert module.weight is base.weight and not base.weight.requires_grad
    assert module.special_rows.dtype == torch.float32 and module.special_rows.requires_grad
    assert sorted(n for n, _ in module.named_parameters()) == ["base.weight", "special_rows"]
    assert torch.equal(module.special_ids, torch.tensor(SPECIAL))
    ids = torch.tensor([[1, 2, 23, 30, 22]])
    out = module(ids)
    assert torch.equal(
        out, _peft_style(ids, base.weight.detach(), module.special_ids, module.special_rows.detach())
    )
    before = base.weight.detach().clone()
    opt = torch.optim.SGD([p for p in module.parameters() if p.requires_grad], lr=0.1)
    out.square().sum().backward()
    opt.step()
    assert torch.equal(base.weight, before) and base.weight.grad is None
    assert module.special_rows.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("ids", "special_ids", "rows", "error", "match"),
    [
        (torch.ones(2, 3), [2], (1, 4), TypeError, "input_ids must have dtype int64, int32; got float32"),
        (torch.tensor([[1, 23]]), [2], (1, 4), ValueError, r"outside \[0, 23\).*\[23\]"),
        (torch.tensor([[-1, 3]]), [2], (1, 4), ValueError, r"not special tokens: \[-1\]"),
        (torch.tensor([1, 2]), [2], (1, 4), ValueError, "input_ids must have rank 2"),
        (torch.tensor([[1, 2]]), [2, 3], (1, 4), ValueError, "same number K"),
        (torch.tensor([[1, 2]]), [[2]], (1, 4), ValueError, "special_ids must have rank 1"),
        (torch.tensor([[1, 2]]), [2], (4,), ValueError, "special_rows must have rank 2"),
        (torch.tensor([[1, 2]]), [2], (1, 5), ValueError, "must share H"),
        (torch.tensor([[1, 2]]), [2, 2], (2, 4), ValueError, "distinct"),
        (torch.tensor([[1, 2]]), [-2], (1, 4), ValueError, ">= 0"),
        (torch.tensor([[1, 2]]), [], (0, 4), ValueError, "K >= 1"),
    ],
)
def test_bad_input(backend, ids, special_ids, rows, error, match):
    weight = torch.randn(VOCAB, 4)
    with pytest.raises(error, match=match):
        special_token_embedding(ids, weight, torch.tensor(special_ids, dtype=torch.long), torch.randn(rows))


def test_bad_weight():
    with pytest.raises(ValueError, match="weight must have rank 2"):
        special_token_embedding(
            torch.ones(1, 1, dtype=torch.long), torch.randn(4), torch.tensor([1]), torch.randn(1, 4)
        )
    with pytest.raises(TypeError, match="special_rows must have dtype"):
        special_token_embedding(
            torch.ones(1, 1, dtype=torch.long),
            torch.randn(4, 2),
            torch.tensor([1]),
            torch.ones(1, 2, dtype=torch.long),
        )
    ids, special_ids = torch.ones(1, 1, dtype=torch.long), torch.tensor([1])
    with pytest.raises(TypeError, match="weight must be a torch.Tensor, got list"):
        special_token_embedding(ids, [[0.0, 1.0]], special_ids, torch.randn(1, 2))
    with pytest.raises(ValueError, match=r"weight must be a non-empty \[V, H\] table, got shape \(0, 2\)"):
        special_token_embedding(ids, torch.randn(0, 2), special_ids, torch.randn(1, 2))
    with pytest.raises(ValueError, match=r"got shape \(3, 0\)"):
        special_token_embedding(ids, torch.randn(3, 0), special_ids, torch.randn(1, 0))


@requires_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("hidden", [2560, 4096])
def test_cuda_matches_reference(monkeypatch, hidden, dtype):
    """Qwen3-4B/8B tables (V = 151,669 + 10 special ids past it), B=8, T=512, compiled Triton:
    the forward copies rows exactly, the gradient matches the fp64 sum."""
    monkeypatch.setenv(_dispatch.ENV_VAR, "triton")
    vocab, special = 151_669, list(range(151_669, 151_679))
    ids, weight, special_ids, rows = _inputs(8, 512, hidden, special, dtype, vocab, device="cuda")
    _check_against(ids, weight, special_ids, rows, special_token_embedding_reference)
