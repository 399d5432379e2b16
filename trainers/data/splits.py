"""Tokenized examples and their batches: :class:`Encoded` (token ids, masks and labels, one row
per example), :func:`encode` of texts in memory (the warm-up's text; a study's labelled splits
come from :mod:`trainers.data.tables` and :mod:`trainers.data.token_cache`), and the batch
orders of training and evaluation, each batch cut to its longest example or padded to a length
bucket (:mod:`trainers.data.buckets`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from autoprumux.core.errors import DataError
from trainers.data.buckets import bucket_of, choose_buckets, round_up

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


@dataclass(frozen=True)
class Split:
    """Examples of one split: texts[i] is a tuple of one or two strings, labels[i] an int."""

    texts: tuple[tuple[str, ...], ...]
    labels: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.labels)


def read_unlabelled_text(source: str, resolve: Callable[[str], Path]) -> Split:
    """Warm-up text (``[warmup] text``): a file with one passage per line, or
    ``hub:NAME[:CONFIG]`` from the datasets hub. Labels are 0 (unused)."""
    if source.startswith("hub:"):  # pragma: no cover - needs a reachable hub
        name, _, config = source[4:].partition(":")
        try:
            import datasets

            lines = datasets.load_dataset(name, config or None, split="train")["text"]
        except Exception as err:
            raise DataError(
                f"[warmup] text {source!r}",
                f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}",
            ) from None
    else:
        path = resolve(source)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise DataError(f"[warmup] text {str(path)!r}", f"cannot be read: {err}") from None
    texts = tuple((line.strip(),) for line in lines if line.strip())
    if not texts:
        raise DataError(f"[warmup] text {source!r}", "holds no text")
    return Split(texts, (0,) * len(texts))


@dataclass(frozen=True)
class Encoded:
    """A tokenized split: every tensor has one row per example, padded to a fixed length."""

    input_ids: Tensor  # [E, L] int64
    attention_mask: Tensor  # [E, L] 1 for tokens, 0 for padding
    token_type_ids: Tensor  # [E, L]
    labels: Tensor  # [E] int64
    # [E] int64 on the CPU, or None: computed from the mask when asked (see ``extents``)
    cpu_extents: Tensor | None = field(default=None, compare=False, repr=False)

    def __len__(self) -> int:
        return self.labels.shape[0]

    def rows(self, index: Tensor) -> Encoded:
        """The examples at ``index``, as int64 (a cached split keeps compact int32/int8)."""
        return Encoded(
            self.input_ids[index].long(),
            self.attention_mask[index].long(),
            self.token_type_ids[index].long(),
            self.labels[index],
        )

    @property
    def device(self) -> torch.device:
        return self.input_ids.device

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Encoded:
        """The same examples on ``device`` (itself when they are there already)."""
        if self.input_ids.device == torch.device(device):
            return self

        def moved(t: Tensor) -> Tensor:
            return t.to(device, non_blocking=non_blocking)

        return Encoded(
            moved(self.input_ids),
            moved(self.attention_mask),
            moved(self.token_type_ids),
            moved(self.labels),
            cpu_extents=self._extents_on_host(),
        )

    def extents(self) -> list[int]:
        """Per example, 1 + the column of its last real token: with right padding its token
        count, with left padding the full length. Read where the tensors were made (``to``
        carries it), so that cutting batches never waits for the device."""
        return list(self._extents_on_host().tolist())

    def _extents_on_host(self) -> Tensor:
        """``extents`` as a [E] int64 tensor on the CPU: carried, else computed from the mask."""
        if self.cpu_extents is not None:
            return self.cpu_extents
        mask = self.attention_mask
        columns = torch.arange(1, mask.shape[1] + 1, device=mask.device)
        return (mask.bool() * columns).amax(dim=1).cpu()

    def truncated(self, length: int) -> Encoded:
        """The first ``length`` tokens of every example (the last kept token may not be [SEP])."""
        return Encoded(
            self.input_ids[:, :length],
            self.attention_mask[:, :length],
            self.token_type_ids[:, :length],
            self.labels,
        )


def encode(split: Split, tokenizer: PreTrainedTokenizerBase, max_length: int) -> Encoded:
    first = [t[0] for t in split.texts]
    second = [t[1] for t in split.texts] if split.texts and len(split.texts[0]) > 1 else None
    # NumPy arrays, then tensors sharing their memory: the same values as return_tensors="pt",
    # which builds each tensor from nested lists (SST-2's 67k sentences: 5.0 s against 8.0 s)
    out = tokenizer(
        first,
        second,
        padding="max_length",
        truncation=True,
        max_length=max_length,
        return_tensors="np",
        return_token_type_ids=True,
    )

    def tensor(name: str) -> Tensor:
        return torch.from_numpy(out[name]).long()

    return Encoded(
        tensor("input_ids"),
        tensor("attention_mask"),
        tensor("token_type_ids"),
        torch.tensor(split.labels, dtype=torch.long),
    )


# batches sorted together by length: transformers' LengthGroupedSampler uses 50 too
GROUPED_BATCHES = 50


def batches(
    data: Encoded,
    size: int,
    generator: torch.Generator | None = None,
    drop_last: bool = True,
    trim: bool = False,
    group_rows: int = 0,
    buckets: Sequence[int] = (),
) -> Iterator[Encoded]:
    """Batches of ``size`` examples, shuffled when a generator is given; for width N, size is
    B * N so that each batch fills B rows of N instances. With ``trim`` each batch is cut to
    its longest example (dynamic padding): SST-2's sentences average 13 of 64 tokens, a random
    batch of 32 needs about 40. Only for models whose outputs ignore padding
    (``Architecture.ignores_padding``). With ``trim``, a generator and ``group_rows`` = N, each
    batch holds rows of N of similar length (:func:`length_grouped`), so its cut is short.
    With ``trim`` and ``buckets`` (increasing lengths, :mod:`trainers.data.buckets`), each
    batch is cut to the smallest bucket that holds its longest example instead (to the data's
    full length if none does): a few fixed shapes, the same outputs."""
    # drawn on the CPU (one seeded stream on every device), used where the data is
    order = (
        torch.randperm(len(data), generator=generator)
        if generator is not None
        else torch.arange(len(data))
    )
    # plain lists on the host: cutting a batch neither syncs with the device nor runs a kernel
    extents, in_order = (data.extents(), order.tolist()) if trim else ([], [])
    whole = len(data) - len(data) % size  # the examples of whole batches
    stop = whole if drop_last else len(data)
    if trim and group_rows and generator is not None:
        in_order[:whole] = length_grouped(in_order[:whole], extents, size, group_rows, generator)
        order = torch.tensor(in_order)
    on_device = order.to(data.device)
    for start in range(0, stop, size):
        batch = data.rows(on_device[start : start + size])
        if trim:
            longest = max(extents[i] for i in in_order[start : start + size])
            if buckets:  # padding to a bucket: the data is padded to its full length already
                longest = bucket_of(longest, buckets) or data.input_ids.shape[1]
            batch = batch.truncated(longest)
        yield batch


def batch_cuts(
    data: Encoded, size: int, group_rows: int = 0, shuffled: bool = True, least: int = 512
) -> list[int]:
    """The cut of each batch (its longest example's extent) that :func:`batches` with
    ``trim`` draws: shuffled (training: whole batches, grouped by length with ``group_rows``)
    over enough epochs for ``least`` batches (at most 16), from a fixed seed, so that they
    depend on the data and the batches' composition only; unshuffled (evaluation), every
    batch in order, the last one partial."""
    extents = data.extents()
    if not shuffled:
        return [max(extents[start : start + size]) for start in range(0, len(extents), size)]
    per_epoch = len(extents) // size
    if per_epoch == 0:
        return []
    whole = per_epoch * size
    cuts: list[int] = []
    for epoch in range(min(16, -(-least // per_epoch))):
        generator = torch.Generator().manual_seed(epoch)
        order = torch.randperm(len(extents), generator=generator).tolist()[:whole]
        if group_rows:
            order = length_grouped(order, extents, size, group_rows, generator)
        cuts.extend(max(extents[i] for i in order[s : s + size]) for s in range(0, whole, size))
    return cuts


def chosen_buckets(
    data: Encoded, size: int, group_rows: int = 0, shuffled: bool = True
) -> tuple[int, ...]:
    """Up to 8 bucket lengths for the batches of ``data`` that :func:`batch_cuts` describes
    (:func:`trainers.data.buckets.choose_buckets`); the largest is the data's full length, or
    its longest example rounded up to a multiple of 8 where that is shorter."""
    longest = max(data.extents(), default=1)
    top = min(data.input_ids.shape[1], round_up(longest))
    return choose_buckets(batch_cuts(data, size, group_rows, shuffled), top)


def length_grouped(
    order: list[int],
    extents: Sequence[int],
    size: int,
    width: int,
    generator: torch.Generator,
) -> list[int]:
    """``order`` (shuffled, whole batches of ``size``) regrouped by length, a row of ``width``
    consecutive examples (one multiplexed input) at a time: in every run of GROUPED_BATCHES
    batches the rows are sorted by their longest example and cut into batches again, and
    those batches are shuffled, so that lengths do not fall or rise from step to step. An
    epoch still draws every example once, and each row keeps its examples: what a multiplexed
    model mixes stays as random as without grouping (grouping sentences instead would mix
    sentences of one length, unlike evaluation's; a (2, 0) teacher trained so ended 5 points
    lower on the tiny study)."""
    rows = [order[i : i + width] for i in range(0, len(order), width)]
    per_batch = size // width
    grouped: list[int] = []
    for start in range(0, len(rows), per_batch * GROUPED_BATCHES):
        run = sorted(  # stable: rows of one length keep their random order
            rows[start : start + per_batch * GROUPED_BATCHES],
            key=lambda row: max(extents[i] for i in row),
        )
        cut = [run[i : i + per_batch] for i in range(0, len(run), per_batch)]
        for index in torch.randperm(len(cut), generator=generator).tolist():
            grouped.extend(example for row in cut[index] for example in row)
    return grouped


def endless_batches(
    data: Encoded,
    size: int,
    seed: int,
    start_step: int = 0,
    trim: bool = False,
    group_rows: int = 0,
    buckets: Sequence[int] = (),
) -> Iterator[Encoded]:
    """Shuffled batches forever, epoch after epoch; ``start_step`` skips ahead (resume);
    ``trim``, ``group_rows`` and ``buckets`` as in :func:`batches`."""
    if len(data) < size:
        raise DataError(
            "the training split", f"its {len(data)} examples cannot fill one batch of {size}"
        )
    per_epoch = len(data) // size
    epoch, skip = divmod(start_step, per_epoch)
    while True:
        generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
        for index, batch in enumerate(
            batches(data, size, generator, trim=trim, group_rows=group_rows, buckets=buckets)
        ):
            if index >= skip:
                yield batch
        epoch, skip = epoch + 1, 0
