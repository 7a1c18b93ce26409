"""``encode_tail``: the end of encoding, from the K final hidden states to the embedding.

    h       [B, K, H] hidden states at the K special positions, any float dtype
    weight  [D, H], bias [D]: one affine map, usually the two heads folded by ``fold_heads``
    out     [B, D] fp32 = weight @ mean_k h[b, k] + bias, optionally L2-normalised

The two heads are affine and applied in sequence (r = recon(h), a = align(r), embedding = a.mean(1)),
so mean_k(W_a (W_r h_k + b_r) + b_a) = (W_a W_r) mean_k h_k + (W_a b_r + b_a): pooling first and
projecting once with the folded matrix does one [B, H] x [H, D] product instead of two
[B*K, H] x [H, *] products (K = 10 times fewer flops) and never materialises [B, K, H] or [B, K, D].

Normalisation divides by max(|x|, 1e-12) (as ``F.normalize``): a zero row stays zero, never NaN.
Accumulation is fp32 throughout. The op is for inference: the cpp and triton kernels run when no
input requires grad (or under ``torch.no_grad()``); otherwise the differentiable torch reference runs.
"""

from __future__ import annotations

import torch
from torch import nn

from llm2vec_gen._dispatch import backend_for, kernel
from llm2vec_gen.ops._checks import check_same_device, check_tensor

NORM_EPS = 1e-12


def encode_tail_reference(
    h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, normalize: bool = False
) -> torch.Tensor:
    """Plain PyTorch version (differentiable); the oracle of the tests. [B, D] fp32."""
    out = torch.addmm(bias.float(), h.float().mean(dim=1), weight.float().t())
    if normalize:
        out = out / out.norm(dim=-1, keepdim=True).clamp_min(NORM_EPS)
    return out


def encode_tail(
    h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, normalize: bool = False
) -> torch.Tensor:
    """Mean of h [B, K, H] over K, then weight [D, H] and bias [D]; [B, D] fp32, L2-normalised on request."""
    check_tensor("h", h, (3,))
    check_tensor("weight", weight, (2,))
    check_tensor("bias", bias, (1,))
    device = check_same_device(h=h, weight=weight, bias=bias)
    batch, k, hidden = h.shape
    if batch == 0 or k == 0 or hidden == 0:
        raise ValueError(f"h of shape {tuple(h.shape)} is empty")
    if weight.shape[1] != hidden or weight.shape[0] == 0:
        raise ValueError(
            f"weight must have shape (D, {hidden}) to match h {tuple(h.shape)}, got {tuple(weight.shape)}"
        )
    if tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"bias must have shape ({weight.shape[0]},), got {tuple(bias.shape)}")
    needs_grad = torch.is_grad_enabled() and (h.requires_grad or weight.requires_grad or bias.requires_grad)
    backend = backend_for(device, h.dtype)
    if backend == "torch" or needs_grad:
        return encode_tail_reference(h, weight, bias, normalize)
    return kernel("encode_tail", "forward", backend)(
        h.contiguous(), weight.contiguous(), bias.contiguous(), normalize, NORM_EPS
    )


@torch.no_grad()
def fold_heads(recon: nn.Linear, align: nn.Linear) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold align(recon(x)) into one affine map: (W_a @ W_r [D, H] fp32, W_a @ b_r + b_a [D] fp32).

    Computed in fp32 (fp64 products rounded to fp32) and detached: for inference, not training.
    A head without bias counts as a zero bias.
    """
    for name, layer in (("recon", recon), ("align", align)):
        if not isinstance(layer, nn.Linear):
            raise TypeError(f"{name} must be an nn.Linear, got {type(layer).__name__}")
    if align.in_features != recon.out_features:
        raise ValueError(f"align takes {align.in_features} features but recon gives {recon.out_features}")
    w_r, w_a = recon.weight.double(), align.weight.double()
    b_r = recon.bias.double() if recon.bias is not None else w_r.new_zeros(recon.out_features)
    b_a = align.bias.double() if align.bias is not None else w_a.new_zeros(align.out_features)
    return (w_a @ w_r).float(), torch.addmv(b_a, w_a, b_r).float()
