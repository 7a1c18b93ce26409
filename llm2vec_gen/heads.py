"""The reference's ``ProjectionModel`` heads beyond one Linear (``size`` > 1, pooling modes).

Every released model has ``size`` 1 and ``pooling_mode`` "linear": those heads load as a plain
nn.Linear and the model folds them (``ops.fold_heads``). The others load as ``ProjectionHead``,
which computes what the reference's ``ProjectionModel.forward`` does, on hidden [B, N, H]:

    linear          projection(h)                                   [B, N, out]
    mean_linear     projection(mean over positions of h.reshape(B, -1, in))   [B, 1, out]
    first_<n>_linear projection(h[:, :, :in])                       [B, N, out]

with ``size`` > 1 meaning one Linear per position (position i uses projection[i]).
"""

from __future__ import annotations

import re

import torch
from torch import nn

_FIRST_N = re.compile(r"first_(\d+)_linear")


class ProjectionHead(nn.Module):
    """A head with ``size`` Linear(input_dim, output_dim) and a reference pooling mode; fp32.
    forward(hidden [B, N, W]) -> [B, N or 1, output_dim] fp32."""

    def __init__(self, input_dim: int, output_dim: int, size: int = 1, pooling_mode: str = "linear") -> None:
        super().__init__()
        if pooling_mode not in ("linear", "mean_linear") and not _FIRST_N.fullmatch(pooling_mode):
            raise ValueError(
                f"pooling_mode {pooling_mode!r} is not one of the reference's: 'linear', 'mean_linear', "
                "'first_<n>_linear'"
            )
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        self.input_dim, self.output_dim, self.size, self.pooling_mode = (
            input_dim,
            output_dim,
            size,
            pooling_mode,
        )
        linears = [nn.Linear(input_dim, output_dim) for _ in range(size)]
        self.projection = linears[0] if size == 1 else nn.ModuleList(linears)

    @property
    def in_features(self) -> int:
        return self.input_dim

    @property
    def out_features(self) -> int:
        return self.output_dim

    def fits(self, width: int) -> bool:
        """Whether hidden states of ``width`` features are a valid input."""
        if self.pooling_mode == "linear":
            return width == self.input_dim
        if self.pooling_mode == "mean_linear":
            return width % self.input_dim == 0
        return width >= self.input_dim

    def positions(self, n: int) -> int:
        """How many positions the output has for an input of ``n`` positions."""
        return 1 if self.pooling_mode == "mean_linear" else n

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        x = hidden.to(next(self.parameters()).dtype)
        if self.pooling_mode == "mean_linear":
            x = x.reshape(x.shape[0], -1, self.input_dim).mean(dim=1, keepdim=True)
        elif self.pooling_mode != "linear":
            x = x[:, :, : self.input_dim]
        if isinstance(self.projection, nn.ModuleList):
            if x.shape[1] > self.size:
                raise ValueError(f"a size-{self.size} head cannot project {x.shape[1]} positions")
            return torch.stack([self.projection[i](x[:, i]) for i in range(x.shape[1])], dim=1)
        return self.projection(x)


def head_fits(head: nn.Module, width: int) -> bool:
    """Whether ``head`` (an nn.Linear or a ``ProjectionHead``) takes hidden states of ``width`` features."""
    return head.fits(width) if isinstance(head, ProjectionHead) else head.in_features == width


def head_positions(head: nn.Module, n: int) -> int:
    """Positions of ``head``'s output for ``n`` input positions."""
    return head.positions(n) if isinstance(head, ProjectionHead) else n
