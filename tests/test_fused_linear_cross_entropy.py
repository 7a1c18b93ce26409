import importlib
import math

import pytest
import torch
from conftest import available_backends, requires_cuda
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from tolerances import RTOL, assert_close, assert_within_lowp_error

from llm2vec_gen import _dispatch
from llm2vec_gen.ops import fused_linear_cross_entropy, fused_linear_cross_entropy_reference

# The module, not the function of the same name that llm2vec_gen.ops exports.
flce = importlib.import_module("llm2vec_gen.ops.fused_linear_cross_entropy")
IGNORE = -100


@pytest.fixture
def small_blocks(monkeypatch):
    """Chunks of a few rows and (Triton) 64-wide V blocks, so small shapes take every loop."""
    monkeypatch.setattr(flce, "CHUNK_BYTES", 4 * 1024)
    if _dispatch.triton_available():
        from llm2vec_gen.kernels import fused_linear_cross_entropy as kernels

        monkeypatch.setattr(kernels, "MAX_BLOCK_V", 64)
        monkeypatch.setattr(kernels, "CHUNK_ALIGN", 2)


def _inputs(n, dim, vocab, dtype, weight_grad=False, bias=False, ignored=0.3, magnitude=1.0, device="cpu"):
    hidden = (torch.randn(n, dim, device=device) * magnitude).to(dtype).requires_grad_()
    weight = (torch.randn(vocab, dim, device=device) / math.sqrt(dim)).to(dtype).requires_grad_(weight_grad)
    b = torch.randn(vocab, device=device).to(dtype).requires_grad_() if bias else None
    labels = torch.randint(0, vocab, (n,), device=device)
    labels[torch.rand(n, device=device) < ignored] = IGNORE
    return hidden, weight, labels, b


def _grads(loss, hidden, weight, bias):
    loss.backward()
    return [t.grad for t in (hidden, weight, bias) if t is not None and t.requires_grad]


def _reference(hidden, weight, labels, bias, reduction, gemm_dtype=torch.float64, ce_dtype=torch.float64):
    """Loss and gradients of the materialised reference: logits by a ``gemm_dtype`` GEMM (for bf16 /
    fp16 inputs their own dtype, as in F.cross_entropy((hidden @ weight.T).float())), CE in ``ce_dtype``.
    """

    def cast(t):
        return None if t is None else t.detach().to(gemm_dtype).requires_grad_(t.requires_grad)

    h, w, b = cast(hidden), cast(weight), cast(bias)
    logits = h @ w.T if b is None else h @ w.T + b
    loss = torch.nn.functional.cross_entropy(
        logits.to(ce_dtype), labels, ignore_index=IGNORE, reduction="sum"
    )
    if reduction == "mean":
        loss = loss / (labels != IGNORE).sum().clamp_min(1)
    return loss, _grads(loss, h, w, b)


def _lowp_reference(hidden, weight, labels, bias, reduction):
    """The same computation carried out entirely in the inputs' low precision."""

    def clone(t):
        return None if t is None else t.detach().clone().requires_grad_(t.requires_grad)

    h, w, b = clone(hidden), clone(weight), clone(bias)
    logits = h @ w.T if b is None else h @ w.T + b
    loss = torch.nn.functional.cross_entropy(logits, labels, ignore_index=IGNORE, reduction=reduction)
    return loss, _grads(loss, h, w, b)


def _ulps(reference: torch.Tensor) -> float:
    """About one rounding step of the largest value of a bf16 / fp16 result (the reference gradients
    are GEMMs in that dtype too, so the low-precision error can be ~0 where the two coincide)."""
    return RTOL[reference.dtype] * reference.abs().max().item() + 1e-4


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("weight_grad", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize(("n", "dim", "vocab"), [(1, 5, 1), (13, 48, 97), (37, 33, 300)])
def test_matches_reference_fp32(backend, small_blocks, n, dim, vocab, reduction, weight_grad, bias):
    hidden, weight, labels, b = _inputs(n, dim, vocab, torch.float32, weight_grad, bias)
    loss = fused_linear_cross_entropy(hidden, weight, labels, IGNORE, reduction, b)
    grads = _grads(loss, hidden, weight, b)
    ref, ref_grads = _reference(hidden, weight, labels, b, reduction)
    assert loss.dtype == torch.float32 and loss.dim() == 0
    assert_close(loss, ref, torch.float32)
    assert len(grads) == len(ref_grads) == 1 + weight_grad + bias
    for g, r in zip(grads, ref_grads, strict=True):
        assert g.dtype == torch.float32
        assert_close(g, r, torch.float32)
    if backend != "torch":
        assert type(loss.grad_fn).__name__ == "_FusedLinearCrossEntropyBackward"


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize(
    ("n", "dim", "vocab", "weight_grad", "bias"), [(29, 40, 211, True, True), (7, 64, 97, False, False)]
)
def test_low_precision_within_rule(backend, small_blocks, n, dim, vocab, weight_grad, bias, dtype):
    hidden, weight, labels, b = _inputs(n, dim, vocab, dtype, weight_grad, bias)
    loss = fused_linear_cross_entropy(hidden, weight, labels, bias=b)
    grads = _grads(loss, hidden, weight, b)
    ref, ref_grads = _reference(hidden, weight, labels, b, "mean", gemm_dtype=dtype)
    lowp, lowp_grads = _lowp_reference(hidden, weight, labels, b, "mean")
    assert loss.dtype == torch.float32
    assert_within_lowp_error(loss, ref, lowp, atol=1e-4)
    for g, r, lp in zip(grads, ref_grads, lowp_grads, strict=True):
        assert g.dtype == dtype
        assert_within_lowp_error(g, r, lp, atol=_ulps(r))


def test_full_qwen_vocab_bf16(backend):
    """V = 151,669 (Qwen3) in bf16 with the default chunk and block sizes: finite and accurate."""
    hidden, weight, labels, _ = _inputs(3, 16, 151_669, torch.bfloat16, weight_grad=True, ignored=0.0)
    weight.data[labels[0]] *= 50  # one confident row, one large logit
    loss = fused_linear_cross_entropy(hidden, weight, labels)
    grads = _grads(loss, hidden, weight, None)
    ref, ref_grads = _reference(hidden, weight, labels, None, "mean", gemm_dtype=torch.bfloat16)
    lowp, lowp_grads = _lowp_reference(hidden, weight, labels, None, "mean")
    assert torch.isfinite(loss)
    assert_within_lowp_error(loss, ref, lowp, atol=1e-3)
    for g, r, lp in zip(grads, ref_grads, lowp_grads, strict=True):
        assert_within_lowp_error(g, r, lp, atol=_ulps(r))


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_all_ignored_gives_zero(backend, small_blocks, reduction):
    hidden, weight, labels, b = _inputs(5, 8, 11, torch.float32, weight_grad=True, bias=True, ignored=1.0)
    loss = fused_linear_cross_entropy(hidden, weight, labels, IGNORE, reduction, b)
    grads = _grads(loss, hidden, weight, b)
    assert loss.item() == 0.0
    assert len(grads) == 3
    for g in grads:
        assert torch.equal(g, torch.zeros_like(g))


def test_custom_ignore_index(backend, small_blocks):
    hidden, weight, _, _ = _inputs(6, 8, 11, torch.float32)
    labels = torch.tensor([3, 7, 7, 0, 10, 7])
    loss = fused_linear_cross_entropy(hidden, weight, labels, ignore_index=7)
    expected = torch.nn.functional.cross_entropy(hidden @ weight.T, labels, ignore_index=7)
    assert_close(loss, expected)


def test_frozen_weight_gets_no_grad(backend, small_blocks):
    hidden, weight, labels, _ = _inputs(9, 12, 50, torch.float32, weight_grad=False)
    fused_linear_cross_entropy(hidden, weight, labels).backward()
    assert weight.grad is None and hidden.grad is not None


def test_weight_grad_only(backend, small_blocks):
    hidden, weight, labels, _ = _inputs(9, 12, 50, torch.float32, weight_grad=True)
    hidden.requires_grad_(False)
    fused_linear_cross_entropy(hidden, weight, labels).backward()
    _, (ref_w,) = _reference(hidden, weight, labels, None, "mean")
    assert_close(weight.grad, ref_w, torch.float32)


def test_incoming_gradient_scales(backend, small_blocks):
    hidden, weight, labels, _ = _inputs(9, 12, 50, torch.float32, weight_grad=True)
    loss = fused_linear_cross_entropy(hidden, weight, labels)
    (3.0 * loss + loss).backward()
    _, (ref_h, ref_w) = _reference(hidden, weight, labels, None, "mean")
    assert_close(hidden.grad, 4 * ref_h, torch.float32)
    assert_close(weight.grad, 4 * ref_w, torch.float32)


def test_no_grad_path(backend, small_blocks):
    hidden, weight, labels, _ = _inputs(9, 12, 50, torch.float32)
    with torch.no_grad():
        loss = fused_linear_cross_entropy(hidden, weight, labels)
    assert_close(loss, fused_linear_cross_entropy_reference(hidden.detach(), weight, labels))


def test_default_chunks_stay_bounded():
    for rows, vocab in [(4096, 151_669), (16_384, 151_936), (7, 151_669), (100_000, 1000), (0, 5)]:
        c = flce.chunk_rows(rows, vocab, flce.CHUNK_BYTES)
        assert c >= 1 and c * vocab * 4 <= max(flce.CHUNK_BYTES, vocab * 4)
        n_chunks = -(-max(rows, 1) // c)
        assert n_chunks * c - max(rows, 1) < n_chunks  # chunks split the rows evenly


@pytest.mark.parametrize("forced", [b for b in available_backends() if b != "triton"])
def test_gradcheck_fp64(monkeypatch, small_blocks, forced):
    """fp64 gradcheck (Triton kernels compute in fp32, so they are covered by the fp32 tests)."""
    monkeypatch.setenv(_dispatch.ENV_VAR, forced)
    hidden, weight, labels, b = _inputs(7, 5, 13, torch.float64, weight_grad=True, bias=True)
    assert torch.autograd.gradcheck(
        lambda h, w, bb: fused_linear_cross_entropy(h, w, labels, bias=bb), (hidden, weight, b)
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    n=st.integers(1, 9),
    dim=st.integers(1, 17),
    vocab=st.integers(1, 40),
    ignored=st.sampled_from([0.0, 0.5, 1.0]),
    magnitude=st.sampled_from([1.0, 100.0, 1e4]),
    reduction=st.sampled_from(["mean", "sum"]),
    seed=st.integers(0, 2**16),
)
# One logit dominating by ~100: softmax - 1 at the label must keep its digits (found by this test).
@example(n=3, dim=2, vocab=40, ignored=0.5, magnitude=100.0, reduction="mean", seed=11773)
def test_property_random_shapes(backend, small_blocks, n, dim, vocab, ignored, magnitude, reduction, seed):
    """Against the fp64 oracle, within twice the error of the fp32 reference (logits up to ~1e4)."""
    torch.manual_seed(seed)
    hidden, weight, labels, _ = _inputs(n, dim, vocab, torch.float32, True, False, ignored, magnitude)
    loss = fused_linear_cross_entropy(hidden, weight, labels, IGNORE, reduction)
    grads = _grads(loss, hidden, weight, None)
    ref, ref_grads = _reference(hidden, weight, labels, None, reduction)
    fp32, fp32_grads = _reference(hidden, weight, labels, None, reduction, torch.float32, torch.float32)
    atol = 1e-5 * magnitude
    assert torch.isfinite(loss)
    assert_within_lowp_error(loss, ref, fp32, atol=atol)
    for g, r, f in zip(grads, ref_grads, fp32_grads, strict=True):
        assert torch.isfinite(g).all()
        assert_within_lowp_error(g, r, f, atol=atol)


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        (torch.tensor([0, 11, 2]), r"got label 11 at position 1"),
        (torch.tensor([0, 1, -1]), r"got label -1 at position 2"),
        (torch.tensor([IGNORE, -7, 3]), r"\[0, 11\).*ignore_index=-100.*label -7"),
    ],
)
def test_labels_out_of_range(backend, labels, match):
    hidden, weight, _, _ = _inputs(3, 4, 11, torch.float32)
    with pytest.raises(ValueError, match=match):
        fused_linear_cross_entropy(hidden, weight, labels)


ZEROS3 = torch.zeros(3, dtype=torch.long)


@pytest.mark.parametrize(
    ("hidden", "weight", "labels", "kwargs", "error", "match"),
    [
        (torch.randn(3, 4), torch.randn(11, 5), ZEROS3, {}, ValueError, r"\(V, 4\)"),
        (torch.randn(3, 4), torch.randn(11, 4), torch.zeros(2, dtype=torch.long), {}, ValueError, r"\(3,\)"),
        (torch.randn(3, 4, 2), torch.randn(11, 4), ZEROS3, {}, ValueError, "rank 2"),
        (torch.randn(3, 4), torch.randn(11, 4), ZEROS3[:, None], {}, ValueError, "rank 1"),
        (torch.randn(3, 4), torch.randn(0, 4), ZEROS3, {}, ValueError, "empty"),
        (torch.randn(3, 4), torch.randn(11, 4), torch.zeros(3, dtype=torch.int32), {}, TypeError, "int32"),
        (torch.randn(3, 4), torch.randn(11, 4).bfloat16(), ZEROS3, {}, TypeError,
         "weight must have hidden's dtype float32, got bfloat16"),
        (torch.ones(3, 4, dtype=torch.long), torch.randn(11, 4), ZEROS3, {},
         TypeError, "hidden must have dtype"),
        (torch.randn(3, 4), torch.randn(11, 4), ZEROS3, {"bias": torch.randn(10)},
         ValueError, r"bias must have shape \(11,\)"),
        (torch.randn(3, 4), torch.randn(11, 4), ZEROS3, {"reduction": "none"},
         ValueError, "reduction"),
        ([[1.0]], torch.randn(11, 1), torch.zeros(1, dtype=torch.long), {}, TypeError, "list"),
    ],
)  # fmt: skip
def test_bad_input(backend, hidden, weight, labels, kwargs, error, match):
    with pytest.raises(error, match=match):
        fused_linear_cross_entropy(hidden, weight, labels, **kwargs)


@pytest.mark.skipif(_dispatch.extension() is None, reason="llm2vec_gen._C is not built")
def test_cpp_kernel_rejects_bad_labels_itself():
    """The compiled kernel checks its label range too, so a direct call cannot read out of bounds."""
    hidden, weight, _, _ = _inputs(3, 4, 11, torch.float32)
    forward = _dispatch.kernel("fused_linear_cross_entropy", "forward", "cpp")
    with pytest.raises(RuntimeError, match=r"labels must lie in \[0, 11\)"):
        forward(hidden.detach(), weight, torch.tensor([0, 11, 2]), None, 1.0, 2, True, False, False)


def test_triton_logits_rows_and_chunks_are_aligned(monkeypatch):
    """The Triton launcher's logits chunk: row stride a multiple of 128 elements at the odd Qwen3
    vocab, chunk rows a multiple of 128 (seen by the per-chunk kernel launcher)."""
    if not (_dispatch.triton_available() and _dispatch.triton_interpreting()):
        pytest.skip("the Triton launcher on CPU tensors needs TRITON_INTERPRET=1 (no CUDA)")
    from llm2vec_gen.kernels import fused_linear_cross_entropy as kernels

    seen = []

    def spy(logits, labels, scale, write_grad):
        seen.append((logits.shape, logits.stride()))
        return ce_rows(logits, labels, scale, write_grad)

    ce_rows = kernels._ce_rows
    monkeypatch.setattr(kernels, "_ce_rows", spy)
    hidden, weight, labels, _ = _inputs(300, 8, 151_669, torch.float32, ignored=0.0)
    kernels.fused_linear_cross_entropy_forward(
        hidden.detach(), weight, labels, None, 1.0, 200, True, False, False
    )
    assert [shape[0] for shape, _ in seen] == [128, 128, 44]
    assert all(shape[1] == 151_669 and stride == (151_680, 1) for shape, stride in seen)


@requires_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("dim", [2560, 4096])
def test_cuda_matches_reference(monkeypatch, dim, dtype):
    """Qwen3-4B/8B LM head (V = 151,669), 1,000 rows (a fifth ignored), trainable weight and bias,
    compiled Triton: within twice the error of the materialised computation in ``dtype``."""
    monkeypatch.setenv(_dispatch.ENV_VAR, "triton")
    hidden, weight, labels, b = _inputs(1000, dim, 151_669, dtype, True, True, ignored=0.2, device="cuda")
    loss = fused_linear_cross_entropy(hidden, weight, labels, bias=b)
    grads = _grads(loss, hidden, weight, b)
    gemm = torch.float64 if dtype == torch.float32 else dtype
    ref, ref_grads = _reference(hidden, weight, labels, b, "mean", gemm_dtype=gemm)
    lowp, lowp_grads = _lowp_reference(hidden, weight, labels, b, "mean")
    assert_within_lowp_error(loss, ref, lowp, atol=1e-4)
    for g, r, lp in zip(grads, ref_grads, lowp_grads, strict=True):
        assert g.dtype == dtype and g.is_cuda
        assert_within_lowp_error(g, r, lp, atol=_ulps(r) if dtype != torch.float32 else 1e-6)
