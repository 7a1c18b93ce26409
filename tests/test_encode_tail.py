import pytest
import torch
from conftest import on_cuda, requires_cuda
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tolerances import assert_close, assert_within_lowp_error

from llm2vec_gen import _dispatch
from llm2vec_gen.ops import encode_tail, encode_tail_reference, fold_heads


def _heads(hidden, dim, dtype=torch.float32):
    recon = torch.nn.Linear(hidden, hidden).to(dtype).requires_grad_(False)
    align = torch.nn.Linear(hidden, dim).to(dtype).requires_grad_(False)
    return recon, align


def _fp64_oracle(h, weight, bias, normalize):
    """mean_k h, the affine map and the normalisation in fp64 (the torch reference computes in fp32)."""
    out = torch.addmm(bias.double(), h.double().mean(1), weight.double().t())
    return torch.nn.functional.normalize(out, dim=-1) if normalize else out


def _two_heads_fp64(h, recon, align, normalize):
    """The reference package's path, in fp64: recon, then align, then the mean over K."""
    r = h.double() @ recon.weight.double().t() + recon.bias.double()
    a = (r @ align.weight.double().t() + align.bias.double()).mean(1)
    return torch.nn.functional.normalize(a, dim=-1) if normalize else a


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize(("batch", "k", "hidden", "dim"), [(1, 1, 1, 1), (7, 10, 37, 19), (13, 3, 96, 130)])
def test_folded_equals_two_heads_fp32(backend, batch, k, hidden, dim, normalize):
    recon, align = _heads(hidden, dim)
    h = torch.randn(batch, k, hidden)
    out = encode_tail(h, *fold_heads(recon, align), normalize=normalize)
    expected = _two_heads_fp64(h, recon, align, normalize)
    assert out.dtype == torch.float32 and out.shape == (batch, dim)
    rel = (out.double() - expected).norm(dim=-1) / expected.norm(dim=-1).clamp_min(1e-30)
    assert rel.max().item() <= 1e-5
    with torch.no_grad():
        eager = align(recon(h)).mean(1)  # what the reference package computes, in fp32
    if not normalize:
        assert_close(out, eager, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("normalize", [False, True])
def test_matches_reference_on_arbitrary_affine(backend, normalize):
    h = torch.randn(5, 4, 33)
    weight, bias = torch.randn(17, 33), torch.randn(17)
    expected = encode_tail_reference(h.double(), weight.double(), bias.double(), normalize)
    assert_close(encode_tail(h, weight, bias, normalize), expected, torch.float32)


@pytest.mark.parametrize("normalize", [False, True])
def test_bf16_heads_within_rule(backend, normalize):
    recon, align = _heads(64, 48, torch.bfloat16)
    h = torch.randn(11, 10, 64).to(torch.bfloat16)
    out = encode_tail(h, *fold_heads(recon, align), normalize=normalize)
    expected = _two_heads_fp64(h, recon, align, normalize)
    with torch.no_grad():
        lowp = align(recon(h)).mean(1)  # the reference package's bf16 path
        if normalize:
            lowp = torch.nn.functional.normalize(lowp, dim=-1)
    assert_within_lowp_error(out, expected, lowp)


def test_zero_rows_stay_finite(backend):
    h = torch.zeros(3, 2, 8)
    h[1] = 1.0
    out = encode_tail(h, torch.randn(5, 8), torch.zeros(5), normalize=True)
    assert torch.isfinite(out).all()
    assert torch.equal(out[0], torch.zeros(5)) and torch.equal(out[2], torch.zeros(5))
    assert out[1].norm().item() == pytest.approx(1.0, rel=1e-6)


def test_differentiable_when_inputs_require_grad(backend):
    h = torch.randn(3, 4, 6, requires_grad=True)
    weight, bias = torch.randn(5, 6, requires_grad=True), torch.randn(5)
    encode_tail(h, weight, bias, normalize=True).sum().backward()
    h2, w2 = h.detach().clone().requires_grad_(), weight.detach().clone().requires_grad_()
    encode_tail_reference(h2, w2, bias, normalize=True).sum().backward()
    assert_close(h.grad, h2.grad) and assert_close(weight.grad, w2.grad)


def test_fold_heads_without_bias_and_shapes():
    recon = torch.nn.Linear(6, 6, bias=False)
    align = torch.nn.Linear(6, 4, bias=False)
    weight, bias = fold_heads(recon, align)
    assert weight.shape == (4, 6) and bias.shape == (4,) and weight.dtype == bias.dtype == torch.float32
    assert torch.equal(bias, torch.zeros(4)) and not weight.requires_grad
    assert_close(weight, (align.weight @ recon.weight).detach())


def test_fold_heads_bad_input():
    with pytest.raises(ValueError, match="align takes 5 features but recon gives 6"):
        fold_heads(torch.nn.Linear(6, 6), torch.nn.Linear(5, 4))
    with pytest.raises(TypeError, match="recon must be an nn.Linear"):
        fold_heads(torch.nn.Identity(), torch.nn.Linear(5, 4))


@pytest.mark.parametrize(
    ("h", "weight", "bias", "error", "match"),
    [
        (torch.randn(2, 8), torch.randn(4, 8), torch.randn(4), ValueError, "h must have rank 3"),
        (torch.randn(2, 3, 8), torch.randn(4, 7), torch.randn(4), ValueError, r"\(D, 8\).*\(4, 7\)"),
        (torch.randn(2, 3, 8), torch.randn(4, 8), torch.randn(5), ValueError, r"bias must have shape \(4,\)"),
        (torch.randn(2, 3, 8), torch.randn(8), torch.randn(4), ValueError, "weight must have rank 2"),
        (torch.ones(2, 3, 8, dtype=torch.long), torch.randn(4, 8), torch.randn(4), TypeError, "int64"),
        (torch.randn(0, 3, 8), torch.randn(4, 8), torch.randn(4), ValueError, "empty"),
        (torch.randn(2, 0, 8), torch.randn(4, 8), torch.randn(4), ValueError, "empty"),
        ([[[1.0]]], torch.randn(1, 1), torch.randn(1), TypeError, "list"),
    ],
)
def test_bad_input(backend, h, weight, bias, error, match):
    with pytest.raises(error, match=match):
        encode_tail(h, weight, bias)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    batch=st.integers(1, 9),
    k=st.integers(1, 12),
    hidden=st.integers(1, 70),
    dim=st.integers(1, 40),
    log_scale=st.floats(-6, 6),
    dtype=st.sampled_from([torch.float32, torch.bfloat16]),
    normalize=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_property_matches_reference(backend, batch, k, hidden, dim, log_scale, dtype, normalize, seed):
    """Random shapes, magnitudes (1e-6 to 1e6) and dtypes against the fp64 reference."""
    gen = torch.Generator().manual_seed(seed)
    h = (torch.randn(batch, k, hidden, generator=gen) * 10.0**log_scale).to(dtype)
    weight = torch.randn(dim, hidden, generator=gen).to(dtype)
    bias = torch.randn(dim, generator=gen).to(dtype)
    out = encode_tail(h, weight, bias, normalize)
    affine = h.double().mean(1) @ weight.double().t() + bias.double()  # fp64 oracle
    norms = affine.norm(dim=-1, keepdim=True)
    expected = affine / norms.clamp_min(1e-12) if normalize else affine
    assert out.dtype == torch.float32 and out.shape == (batch, dim) and torch.isfinite(out).all()
    # fp32 accumulation over K * H products of size |h| |w|: the error scales with their sum, and
    # after normalising, with that sum over the row's norm
    scale = h.double().abs().mean(1) @ weight.double().abs().t() + bias.double().abs()  # [B, D]
    if normalize:
        scale = scale / norms.clamp_min(1e-30)
    torch.testing.assert_close(out.double(), expected, rtol=1e-4, atol=1e-5 * max(scale.max().item(), 1.0))


def test_small_tiles_take_every_loop(backend, monkeypatch):
    """Triton with [4, 16] pooling tiles: a loop over K = 10 in steps of 4, H = 50 over 4 programs."""
    if backend == "triton":
        from llm2vec_gen.kernels import encode_tail as kernels

        monkeypatch.setattr(kernels, "MAX_BLOCK_K", 4)
        monkeypatch.setattr(kernels, "TILE_ELEMENTS", 64)
    h, weight, bias = torch.randn(3, 10, 50), torch.randn(7, 50), torch.randn(7)
    expected = _fp64_oracle(h, weight, bias, True)
    assert_close(encode_tail(h, weight, bias, normalize=True), expected, torch.float32)


@requires_cuda
@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(("batch", "hidden", "dim"), [(256, 2560, 2560), (37, 4096, 4096)])
def test_cuda_matches_reference(monkeypatch, batch, hidden, dim, dtype, normalize):
    """Compiled Triton + cuBLAS at Qwen3-4B/8B widths (K = 10, h in ``dtype``, folded fp32 heads):
    against the fp64 oracle within twice the error of the torch reference on the GPU."""
    monkeypatch.setenv(_dispatch.ENV_VAR, "triton")
    h, weight, bias = on_cuda(
        torch.randn(batch, 10, hidden).to(dtype), torch.randn(dim, hidden) / 64, torch.randn(dim)
    )
    out = encode_tail(h, weight, bias, normalize)
    ref = _fp64_oracle(h, weight, bias, normalize)
    lowp = encode_tail_reference(h, weight, bias, normalize)
    assert out.dtype == torch.float32 and out.is_cuda
    assert_within_lowp_error(out, ref, lowp, atol=1e-5)
