import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tolerances import assert_close, assert_within_lowp_error

from llm2vec_gen.ops import appended_attention, appended_attention_reference


def _inputs(batch, heads, hkv, klen, dim, length, dtype, pads=None):
    """q, k, v (requiring grad), the cache and a left-padded mask with ``pads[b]`` pads in row b."""

    def rand(*shape, grad=False):
        return torch.randn(*shape).to(dtype).requires_grad_(grad)

    q = rand(batch, heads, klen, dim, grad=True)
    k = rand(batch, hkv, klen, dim, grad=True)
    v = rand(batch, hkv, klen, dim, grad=True)
    k_cache, v_cache = rand(batch, hkv, length, dim), rand(batch, hkv, length, dim)
    pads = pads if pads is not None else [b * length // max(batch, 1) for b in range(batch)]
    mask = torch.arange(length)[None, :] >= torch.tensor(pads)[:, None]
    return q, k, v, k_cache, v_cache, mask


def _fwd_bwd(fn, q, k, v, k_cache, v_cache, mask, grad_out, **kw):
    out = fn(q, k, v, k_cache, v_cache, mask, **kw)
    return (out, *torch.autograd.grad(out, (q, k, v), grad_out))


def _fp64_reference(q, k, v, k_cache, v_cache, mask, grad_out, **kw):
    leaves = [t.detach().double().requires_grad_() for t in (q, k, v)]
    caches = [t.double() for t in (k_cache, v_cache)]
    return _fwd_bwd(appended_attention_reference, *leaves, *caches, mask, grad_out.double(), **kw)


SHAPES = [
    # batch, heads, hkv, klen, dim, length
    (3, 4, 2, 10, 16, 13),
    (2, 4, 4, 1, 32, 31),
    (2, 6, 2, 10, 24, 70),  # G=3 (not a power of two), d=24, two prefix tiles
    (1, 2, 1, 7, 16, 0),
]


@pytest.mark.parametrize(("batch", "heads", "hkv", "klen", "dim", "length"), SHAPES)
def test_matches_reference_fp32(backend, batch, heads, hkv, klen, dim, length):
    inputs = _inputs(batch, heads, hkv, klen, dim, length, torch.float32)
    grad_out = torch.randn(batch, heads, klen, dim)
    got = _fwd_bwd(appended_attention, *inputs, grad_out)
    ref = _fp64_reference(*inputs, grad_out)
    assert got[0].shape == (batch, heads, klen, dim) and got[0].dtype == torch.float32
    assert got[2].shape == got[3].shape == (batch, hkv, klen, dim)
    for a, b in zip(got, ref, strict=True):
        assert_close(a, b, torch.float32)


@pytest.mark.parametrize(("batch", "heads", "hkv", "klen", "dim", "length"), SHAPES[:3])
def test_bf16_within_rule(backend, batch, heads, hkv, klen, dim, length):
    inputs = _inputs(batch, heads, hkv, klen, dim, length, torch.bfloat16)
    grad_out = torch.randn(batch, heads, klen, dim).to(torch.bfloat16)
    got = _fwd_bwd(appended_attention, *inputs, grad_out)
    ref = _fp64_reference(*inputs, grad_out)
    # The same attention carried out in bf16 (PyTorch SDPA, explicit mask, repeated K/V).
    q, k, v, k_cache, v_cache, mask = inputs
    groups = heads // hkv
    lowp_leaves = [t.detach().clone().requires_grad_() for t in (q, k, v)]
    keys = torch.cat([k_cache, lowp_leaves[1]], 2).repeat_interleave(groups, 1)
    values = torch.cat([v_cache, lowp_leaves[2]], 2).repeat_interleave(groups, 1)
    causal = torch.ones(klen, klen, dtype=torch.bool).tril()
    visible = torch.cat([mask[:, None, :].expand(-1, klen, -1), causal.expand(batch, -1, -1)], -1)
    lowp_out = torch.nn.functional.scaled_dot_product_attention(
        lowp_leaves[0], keys, values, visible[:, None]
    )
    lowp = (lowp_out, *torch.autograd.grad(lowp_out, lowp_leaves, grad_out))
    for a, b, c in zip(got, ref, lowp, strict=True):
        assert a.dtype == torch.bfloat16
        assert_within_lowp_error(a, b, c, atol=1e-2)


def test_left_padding_per_row_matches_unpadded(backend):
    """Row b with p pads equals the same row with its pads cut off (the pads carry garbage)."""
    q, k, v, k_cache, v_cache, mask = _inputs(4, 4, 2, 10, 16, 19, torch.float32, pads=[0, 5, 18, 19])
    k_cache[~mask[:, None, :].expand_as(k_cache[..., 0])] = 1e4
    out = appended_attention(q, k, v, k_cache, v_cache, mask)
    for b, pads in enumerate([0, 5, 18, 19]):
        row = [t[b : b + 1] for t in (q, k, v)]
        cache = [t[b : b + 1, :, pads:] for t in (k_cache, v_cache)]
        alone = appended_attention(*row, *cache, torch.ones(1, 19 - pads, dtype=torch.bool))
        assert_close(out[b : b + 1], alone, torch.float32)


def test_fully_padded_row_sees_its_own_tokens(backend):
    q, k, v, k_cache, v_cache, _ = _inputs(2, 2, 1, 3, 16, 5, torch.float32)
    mask = torch.zeros(2, 5, dtype=torch.bool)
    out = appended_attention(q, k, v, k_cache, v_cache, mask)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(q.grad).all()
    # Query 0 sees only appended key 0: its output is v[0] of its kv head.
    assert_close(out[:, :, 0], v[:, :, 0].expand(-1, 2, -1), torch.float32)


@pytest.mark.parametrize("mask_dtype", [torch.int64, torch.int32, torch.uint8])
def test_mask_dtypes_and_scale(backend, mask_dtype):
    q, k, v, k_cache, v_cache, mask = _inputs(2, 4, 2, 3, 16, 9, torch.float32)
    got = appended_attention(q, k, v, k_cache, v_cache, mask.to(mask_dtype), scale=0.3)
    assert_close(got, appended_attention_reference(q, k, v, k_cache, v_cache, mask, scale=0.3))


def test_cache_gets_no_gradient(backend):
    q, k, v, k_cache, v_cache, mask = _inputs(2, 2, 2, 3, 16, 4, torch.float32)
    k_cache.requires_grad_()
    appended_attention(q, k, v, k_cache, v_cache, mask).sum().backward()
    assert k_cache.grad is None and q.grad is not None


def test_gradcheck_fp64(fp64_backend):
    q, k, v, k_cache, v_cache, mask = _inputs(2, 4, 2, 3, 8, 5, torch.float64)
    assert torch.autograd.gradcheck(
        lambda *x: appended_attention(*x, k_cache, v_cache, mask), (q, k, v), fast_mode=True
    )


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    batch=st.integers(1, 3),
    hkv=st.integers(1, 2),
    groups=st.integers(1, 3),
    klen=st.integers(1, 11),
    dim=st.sampled_from([8, 16, 20]),
    length=st.integers(0, 20),
    data=st.data(),
)
def test_property_random_shapes(backend, batch, hkv, groups, klen, dim, length, data):
    pads = data.draw(st.lists(st.integers(0, length), min_size=batch, max_size=batch))
    inputs = _inputs(batch, hkv * groups, hkv, klen, dim, length, torch.float32, pads)
    grad_out = torch.randn(batch, hkv * groups, klen, dim)
    for a, b in zip(
        _fwd_bwd(appended_attention, *inputs, grad_out), _fp64_reference(*inputs, grad_out), strict=True
    ):
        assert_close(a, b, torch.float32)


def _bad(**changes):
    inputs = dict(
        zip(
            ("q", "k", "v", "k_cache", "v_cache", "prefix_mask"),
            _inputs(2, 4, 2, 3, 8, 5, torch.float32),
            strict=True,
        )
    )
    inputs.update(changes)
    return inputs


@pytest.mark.parametrize(
    ("changes", "error", "match"),
    [
        ({"k": torch.randn(2, 3, 3, 8), "v": torch.randn(2, 3, 3, 8)}, ValueError, "multiple of"),
        ({"k": torch.randn(2, 2, 4, 8)}, ValueError, r"k must have shape .* \(2, 2, 3, 8\)"),
        ({"v": torch.randn(2, 2, 3, 9)}, ValueError, r"v must have shape"),
        ({"v_cache": torch.randn(2, 2, 6, 8)}, ValueError, r"v_cache must have shape .* \(2, 2, 5, 8\)"),
        ({"k_cache": torch.randn(2, 1, 5, 8)}, ValueError, r"k_cache must have shape"),
        ({"prefix_mask": torch.ones(2, 4, dtype=torch.bool)}, ValueError, r"prefix_mask must have shape"),
        ({"q": torch.randn(4, 3, 8)}, ValueError, "rank 4"),
        ({"q": torch.randn(2, 4, 0, 8)}, ValueError, "empty"),
        ({"k": torch.randn(2, 2, 3, 8).to(torch.bfloat16)}, TypeError, "k must have q's dtype"),
        ({"q": torch.ones(2, 4, 3, 8, dtype=torch.long)}, TypeError, "int64"),
        ({"prefix_mask": torch.ones(2, 5, dtype=torch.complex64)}, TypeError, "complex64"),
        ({"prefix_mask": torch.ones(2, 5)}, TypeError, "prefix_mask must have dtype bool.*float32"),
        ({"prefix_mask": torch.zeros(2, 5, dtype=torch.float64)}, TypeError, "got float64"),
        ({"q": [[1.0]]}, TypeError, "list"),
    ],
)
def test_bad_input(backend, changes, error, match):
    with pytest.raises(error, match=match):
        appended_attention(**_bad(**changes))
