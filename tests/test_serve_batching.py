"""The server's batch choice (``llm2vec_gen.serve.scheduling.pick_batch``): examples and properties."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from llm2vec_gen.serve.scheduling import pick_batch


def test_similar_lengths_join_until_padding_exceeds_the_fraction():
    costs = [100, 10, 95, 50, 98]
    # sorted 10, 50, 95, 98, 100: + 98 (pad 2), + 95 (7 of 300), + 50 (57 of 400); + 10 would pad 147 of 500
    assert pick_batch(costs, 0, max_rows=64, max_tokens=10_000, max_padding=0.25) == [3, 2, 4, 0]
    assert pick_batch(costs, 0, max_rows=64, max_tokens=10_000, max_padding=1.0) == [1, 3, 2, 4, 0]
    assert pick_batch(costs, 0, max_rows=64, max_tokens=10_000, max_padding=0.0) == [0]
    assert pick_batch(costs, 1, max_rows=64, max_tokens=10_000, max_padding=0.25) == [1]


def test_row_and_token_limits():
    costs = [7] * 11  # equal lengths: ties go to the rows that arrived first
    assert pick_batch(costs, 0, max_rows=4, max_tokens=10_000, max_padding=0.0) == [0, 1, 2, 3]
    assert pick_batch(costs, 5, max_rows=3, max_tokens=10_000, max_padding=0.0) == [3, 4, 5]
    assert pick_batch(costs, 0, max_rows=64, max_tokens=35, max_padding=0.0) == [0, 1, 2, 3, 4]
    assert pick_batch([900, 3], 0, max_rows=64, max_tokens=512, max_padding=1.0) == [0]  # over budget: alone
    assert pick_batch([5], 0, max_rows=1, max_tokens=1, max_padding=0.0) == [0]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.integers(1, 600), min_size=1, max_size=97),
    st.data(),
    st.integers(1, 70),
    st.integers(1, 20_000),
    st.sampled_from([0.0, 0.1, 0.25, 0.5, 1.0]),
)
def test_properties(costs, data, max_rows, max_tokens, max_padding):
    anchor = data.draw(st.integers(0, len(costs) - 1))
    chosen = pick_batch(costs, anchor, max_rows, max_tokens, max_padding)
    assert anchor in chosen and len(set(chosen)) == len(chosen)

    def breaks_limits(rows: list[int]) -> bool:
        width, real = max(costs[i] for i in rows), sum(costs[i] for i in rows)
        padded = width * len(rows)
        return len(rows) > max_rows or padded > max_tokens or padded - real > max_padding * padded

    assert len(chosen) == 1 or not breaks_limits(chosen)
    # a window of the rows sorted by cost (stable), which no neighbour can extend
    order = sorted(range(len(costs)), key=costs.__getitem__)
    positions = sorted(order.index(i) for i in chosen)
    assert positions == list(range(positions[0], positions[-1] + 1))
    for extra in (positions[0] - 1, positions[-1] + 1):
        if 0 <= extra < len(costs):
            assert breaks_limits([*chosen, order[extra]])
