"""Per-dtype tolerances, kept in one place, and the low-precision comparison rule.

The rule (from flash-attention's tests): a kernel's error against an fp32/fp64 reference must be at
most twice the error of the same PyTorch computation run in the low precision, plus a small atol.
"""

from __future__ import annotations

import torch

RTOL = {torch.float64: 1e-7, torch.float32: 1.3e-6, torch.float16: 1e-3, torch.bfloat16: 0.016}
ATOL = {torch.float64: 1e-10, torch.float32: 1e-5, torch.float16: 1e-3, torch.bfloat16: 1e-2}


def assert_close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype | None = None, **kw):
    """torch.testing.assert_close with this project's tolerance for ``dtype`` (default: actual's)."""
    dtype = dtype or actual.dtype
    kw.setdefault("rtol", RTOL[dtype])
    kw.setdefault("atol", ATOL[dtype])
    torch.testing.assert_close(actual.double(), expected.double(), **kw)


def assert_within_lowp_error(
    actual: torch.Tensor, reference: torch.Tensor, lowp_reference: torch.Tensor, atol: float = 1e-5
) -> None:
    """max|actual - reference| <= 2 * max|lowp_reference - reference| + atol."""
    reference = reference.double()
    err = (actual.double() - reference).abs().max().item()
    lowp_err = (lowp_reference.double() - reference).abs().max().item()
    assert err <= 2 * lowp_err + atol, f"error {err:.3g} > 2 * low-precision error {lowp_err:.3g} + {atol}"
