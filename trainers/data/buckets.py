"""Length buckets: the few token lengths batches are padded to, so that a compiled step sees a
few fixed shapes instead of one per batch length (``[training] length_buckets``).

Dynamic padding cuts each batch to its longest row (the *cut*: 1 + the last real token
position of any of its sentences; for N > 1 a row is N sentences, and the batch's cut is that
of its longest row). With buckets, a batch is padded up to the smallest bucket that holds its
cut. Models that ignore padding compute the same outputs either way; only the work differs.

How the buckets are chosen (:func:`choose_buckets`), from the cuts of the batches the phase
actually draws (random or grouped by length, B rows of N sentences):

1. candidates: every cut rounded up to a multiple of 8 (tensor-core friendly widths), capped
   at the top, and the top itself: ``max_seq_length``, or the data's longest row rounded up
   to a multiple of 8 where that is shorter;
2. for k = 1 .. 8, the k candidates (the top always one of them) that minimize the mean padded
   length of those batches -- an exact dynamic programme over the sorted candidates (the
   padded tokens of a batch are B × N × its padded length, so this minimizes them);
3. the fewest k whose mean padded length is within 2 % of the best 8's: a bucket that saves
   less than that costs one more compiled shape for nothing.

Everything here is pure Python on lists of ints; :mod:`trainers.data.splits` computes the cuts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from autoprumux.core.errors import FieldError

MAX_BUCKETS = 8  # compiled shapes a phase may see: each costs a compile and a CUDA graph
MULTIPLE = 8  # bucket lengths are multiples of this (below the top), for tensor cores
TOLERANCE = 0.02  # a bucket must save more than this share of the padded tokens
FIELD = "training.length_buckets"


def round_up(length: int, multiple: int = MULTIPLE) -> int:
    """``length`` rounded up to a multiple of ``multiple``."""
    return -(-length // multiple) * multiple


def bucket_of(cut: int, buckets: Sequence[int]) -> int | None:
    """The smallest of the (increasing) ``buckets`` that holds a batch cut to ``cut`` tokens;
    None when none does."""
    for bucket in buckets:
        if bucket >= cut:
            return bucket
    return None


def mean_padded(cuts: Sequence[int], buckets: Sequence[int]) -> float:
    """The mean length (tokens per row) of the batches cut to ``cuts`` once padded to
    ``buckets``; every cut must fit the largest bucket."""
    padded = [bucket_of(cut, buckets) for cut in cuts]
    if any(length is None for length in padded):
        raise ValueError(f"a cut of {max(cuts)} does not fit the buckets {list(buckets)}")
    return sum(length or 0 for length in padded) / len(cuts)


def _best_sets(
    lengths: list[int], counts: list[int], most: int
) -> list[tuple[float, tuple[int, ...]]]:
    """For k = 1 .. ``most``: (total padded length, buckets) of the best k of ``lengths``
    (increasing candidates, the last one always chosen), where ``counts[j]`` batches have a cut
    that rounds to ``lengths[j]``. ``best[k][j]``: the least total of the batches up to
    candidate j with k buckets, the largest at j; a bucket at j after one at i pads the
    batches of candidates i+1 .. j to lengths[j]."""
    size = len(lengths)
    below = [0] * (size + 1)  # below[j]: batches whose cut rounds to a candidate before j
    for j, count in enumerate(counts):
        below[j + 1] = below[j] + count
    infinity = float("inf")
    best = [[infinity] * size for _ in range(most + 1)]
    came_from = [[-1] * size for _ in range(most + 1)]
    for j in range(size):
        best[1][j] = lengths[j] * below[j + 1]
    for k in range(2, most + 1):
        for j in range(size):
            for i in range(j):  # the previous bucket; the lowest i wins a tie
                total = best[k - 1][i] + lengths[j] * (below[j + 1] - below[i + 1])
                if total < best[k][j]:
                    best[k][j], came_from[k][j] = total, i
    sets: list[tuple[float, tuple[int, ...]]] = []
    for k in range(1, most + 1):
        if best[k][size - 1] == infinity:
            break  # fewer candidates than k
        chosen, j, level = [], size - 1, k
        while j >= 0 and level >= 1:
            chosen.append(lengths[j])
            j, level = came_from[level][j], level - 1
        sets.append((best[k][size - 1], tuple(reversed(chosen))))
    return sets


def choose_buckets(
    cuts: Sequence[int],
    top: int,
    most: int = MAX_BUCKETS,
    tolerance: float = TOLERANCE,
) -> tuple[int, ...]:
    """At most ``most`` increasing bucket lengths, the largest ``top``, for batches cut to
    ``cuts`` (one per batch; each at most ``top``): the fewest whose mean padded length is
    within ``tolerance`` of the best ``most`` (the module's rule)."""
    if not cuts:
        return (top,)
    if max(cuts) > top:
        raise ValueError(f"a cut of {max(cuts)} is longer than the top bucket {top}")
    per_candidate = Counter(min(round_up(cut), top) for cut in cuts)
    per_candidate.setdefault(top, 0)
    lengths = sorted(per_candidate)
    sets = _best_sets(lengths, [per_candidate[length] for length in lengths], most)
    least = sets[-1][0]
    return next(buckets for total, buckets in sets if total <= (1 + tolerance) * least)


def check_buckets(buckets: Sequence[int], max_seq_length: int) -> None:
    """Refuse, in one line, ``[training] length_buckets`` that cannot hold the data's longest
    row: a largest bucket below ``max_seq_length`` (rows are cut to it; checkable from the
    study alone). Empty buckets (chosen from the data) always hold it."""
    if buckets and max(buckets) < max_seq_length:
        largest = max(buckets)
        raise FieldError(
            FIELD,
            f"the largest bucket {largest} is below model.max_seq_length {max_seq_length}; "
            f"make the last bucket at least {max_seq_length}, or leave the list empty",
        )
