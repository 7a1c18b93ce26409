import pytest
import torch
from conftest import on_cuda, requires_cuda
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tolerances import assert_close, assert_within_lowp_error

from llm2vec_gen import _dispatch
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


def _same_dtype_sdpa(q, k, v, k_cache, v_cache, mask, grad_out):
    """The same attention carried out in the inputs' dtype (PyTorch SDPA, explicit mask, repeated
    K/V): output and gradients, the low-precision side of the tolerance rule."""
    batch, heads, klen, _ = q.shape
    groups = heads // k.shape[1]
    leaves = [t.detach().clone().requires_grad_() for t in (q, k, v)]
    keys = torch.cat([k_cache, leaves[1]], 2).repeat_interleave(groups, 1)
    values = torch.cat([v_cache, leaves[2]], 2).repeat_interleave(groups, 1)
    causal = torch.ones(klen, klen, dtype=torch.bool, device=q.device).tril()
    visible = torch.cat([mask[:, None, :].expand(-1, klen, -1), causal.expand(batch, -1, -1)], -1)
    out = torch.nn.functional.scaled_dot_product_attention(leaves[0], keys, values, visible[:, None])
    return (out, *torch.autograd.grad(out, leaves, grad_out))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize(("batch", "heads", "hkv", "klen", "dim", "length"), SHAPES[:3])
def test_low_precision_within_rule(backend, batch, heads, hkv, klen, dim, length, dtype):
    """bf16 / fp16 operands straight into the dots (fp16 runs that path in the interpreter too)."""
    inputs = _inputs(batch, heads, hkv, klen, dim, length, dtype)
    grad_out = torch.randn(batch, heads, klen, dim).to(dtype)
    got = _fwd_bwd(appended_attention, *inputs, grad_out)
    ref = _fp64_reference(*inputs, grad_out)
    lowp = _same_dtype_sdpa(*inputs, grad_out)
    for a, b, c in zip(got, ref, lowp, strict=True):
        assert a.dtype == dtype
        assert_within_lowp_error(a, b, c, atol=1e-2)


@pytest.mark.parametrize("tiles_per_split", [None, 1, 2])
def test_backward_row_tiles_and_splits(monkeypatch, tiles_per_split):
    """G*K = 160 rows (two 128-row tiles) over L = 150 (three 64-key tiles): every split count gives
    the same gradients as the oracle (the partials are summed in a fixed order)."""
    if not (_dispatch.triton_available() and _dispatch.triton_interpreting()):
        pytest.skip("the Triton launcher on CPU tensors needs TRITON_INTERPRET=1 (no CUDA)")
    from llm2vec_gen.kernels import appended_attention as kernels

    monkeypatch.setenv(_dispatch.ENV_VAR, "triton")
    backward = kernels.appended_attention_backward
    monkeypatch.setattr(
        kernels, "appended_attention_backward", lambda *a: backward(*a, tiles_per_split=tiles_per_split)
    )
    inputs = _inputs(1, 16, 1, 10, 16, 150, torch.float32, pads=[7])
    grad_out = torch.randn(1, 16, 10, 16)
    for a, b in zip(
        _fwd_bwd(appended_attention, *inputs, grad_out), _fp64_reference(*inputs, grad_out), strict=True
    ):
        assert_close(a, b, torch.float32)


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


# Realistic shapes, compiled kernels (Qwen3-4B/8B: 32 heads, 8 KV heads, d=128; Qwen2.5-7B: G=7).
CUDA_SHAPES = [(8, 32, 8, 10, 128, 512), (4, 28, 4, 10, 128, 300), (2, 32, 8, 10, 128, 2048)]


@requires_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(("batch", "heads", "hkv", "klen", "dim", "length"), CUDA_SHAPES)
def test_cuda_matches_reference(monkeypatch, batch, heads, hkv, klen, dim, length, dtype):
    """Against the fp64 oracle within twice the error of the same attention in ``dtype`` (SDPA)."""
    monkeypatch.setenv(_dispatch.ENV_VAR, "triton")
    pads = [b * length // (2 * batch) for b in range(batch)]
    inputs = on_cuda(*_inputs(batch, heads, hkv, klen, dim, length, dtype, pads))
    grad_out = torch.randn(batch, heads, klen, dim, device="cuda").to(dtype)
    got = _fwd_bwd(appended_attention, *inputs, grad_out)
    ref = _fp64_reference(*inputs, grad_out)
    lowp = _same_dtype_sdpa(*inputs, grad_out)
    atol = 1e-5 if dtype == torch.float32 else 1e-2
    for a, b, c in zip(got, ref, lowp, strict=True):
        assert a.dtype == dtype and a.is_cuda
        assert_within_lowp_error(a, b, c, atol=atol)


@requires_cuda
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("dim", [64, 80, 128, 256])
def test_cuda_head_dims_fit_hopper(monkeypatch, dim, dtype):
    """Each head dim compiles within the chip's shared memory, with no register spills in the
    tensor-core (bf16) path; the kernels are read back from Triton's cache after the launches."""
    from llm2vec_gen.kernels import _common
    from llm2vec_gen.kernels import appended_attention as kernels

    monkeypatch.setenv(_dispatch.ENV_VAR, "triton")
    fns = (kernels._appended_attention_forward_kernel, kernels._appended_attention_backward_kernel)
    before = {id(k) for fn in fns for k in _common.compiled_kernels(fn)}
    inputs = on_cuda(*_inputs(2, 32, 8, 10, dim, 300, dtype))
    _fwd_bwd(appended_attention, *inputs, torch.randn(2, 32, 10, dim, device="cuda").to(dtype))
    torch.cuda.synchronize()
    new = [k for fn in fns for k in _common.compiled_kernels(fn) if id(k) not in before]
    assert new, "no kernel was compiled for this head dim"
    limit = _common.max_shared_memory(torch.device("cuda"))
    for k in new:
        assert k.metadata.shared <= limit, f"{k.name}: {k.metadata.shared} B shared > {limit}"
        assert k.n_regs <= 255
        if dtype == torch.bfloat16:
            assert k.n_spills == 0, f"{k.name} d={dim}: {k.n_spills} spilled registers"


def test_fp64_never_runs_triton(monkeypatch):
    """A forced triton backend hands fp64 to the torch reference (autograd's own backward)."""
    if not _dispatch.triton_available():
        pytest.skip("triton is not installed")
    monkeypatch.setenv(_dispatch.ENV_VAR, "triton")
    inputs = _inputs(2, 4, 2, 3, 8, 5, torch.float64)
    if torch.cuda.is_available():  # CPU tensors take Triton only in the interpreter (no CUDA)
        inputs = on_cuda(*inputs)
    assert _dispatch.backend_for(inputs[0].device, torch.float64) == "torch"
    out = appended_attention(*inputs)
    assert type(out.grad_fn).__name__ != "_AppendedAttentionBackward"
    assert_close(out, appended_attention_reference(*inputs))
