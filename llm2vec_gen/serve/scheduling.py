"""Which waiting rows run together: a window of similar lengths around the oldest row.

Padding is wasted work (every layer's matmuls and the attention run on it), and on a CPU a batch
gains little over a single text, so the batcher forms batches of similar lengths under three
limits instead of taking whatever waits: rows, padded tokens, and the padded fraction. The window
always holds the row that has waited longest, so no row is overtaken forever.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import accumulate


def pick_batch(
    costs: Sequence[int], anchor: int, max_rows: int, max_tokens: int, max_padding: float
) -> list[int]:
    """Indices into ``costs`` (tokens per row) of the batch that runs row ``anchor``.

    Rows sorted by cost form a window around the anchor, grown one neighbour at a time (the one
    that adds less padding) while the batch holds at most ``max_rows`` rows, at most
    ``max_tokens`` padded tokens (its longest row x its rows) and at most a ``max_padding``
    fraction of padding. The anchor runs even when it alone exceeds ``max_tokens``.
    """
    order = sorted(range(len(costs)), key=costs.__getitem__)
    ranked = [costs[i] for i in order]
    prefix = list(accumulate(ranked, initial=0))

    def padding(lo: int, hi: int) -> int | None:
        """Padded tokens of window [lo, hi] minus its real tokens; None when it breaks a limit."""
        rows = hi - lo + 1
        padded = ranked[hi] * rows
        pad = padded - (prefix[hi + 1] - prefix[lo])
        if rows > max_rows or padded > max_tokens or pad > max_padding * padded:
            return None
        return pad

    lo = hi = order.index(anchor)
    while True:
        options = [
            (pad, a, b)
            for a, b in ((lo - 1, hi), (lo, hi + 1))
            if a >= 0 and b < len(ranked) and (pad := padding(a, b)) is not None
        ]
        if not options:
            return [order[i] for i in range(lo, hi + 1)]
        _, lo, hi = min(options)
