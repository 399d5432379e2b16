"""The retrieval warm-up of multiplexed models (and its masked-LM variant).

Retrieval (DataMUX): for a sampled (group, position) pair, pick one of the N instances at random
and predict that instance's token at that position from ``demux(h)`` of the mixed hidden state.
Predicting over the full vocabulary at every position is too slow on a CPU, so each step
demultiplexes ``positions`` sampled pairs and uses a sampled softmax: the candidates are the
step's target tokens plus ``negatives`` random tokens. Token recovery, the warm-up's measure, is
always computed against the full vocabulary.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainers.data.splits import Encoded
from trainers.model.classifier import Classifier


class RetrievalHead(nn.Module):
    """Demultiplexed features -> token logits; the decoder starts from the word embeddings."""

    def __init__(self, model: Classifier) -> None:
        super().__init__()
        arch = model.arch
        words = model.encoder.embeddings.word.weight.detach()  # [V, H]
        # every part made where the model lives (a CPU-built layer would stay there on a GPU)
        self.transform = nn.Linear(arch.head_size, arch.head_size, device=words.device)
        self.norm = nn.LayerNorm(arch.head_size, eps=arch.layer_norm_eps, device=words.device)
        if words.shape[1] == arch.head_size:
            self.decoder = nn.Parameter(words.clone())
        else:
            self.decoder = nn.Parameter(
                torch.randn(arch.vocab_size, arch.head_size, device=words.device) * 0.02
            )
        self.bias = nn.Parameter(torch.zeros(arch.vocab_size, device=words.device))

    def forward(self, features: Tensor, candidates: Tensor | None = None) -> Tensor:
        """features [M, size] -> logits [M, V] (or [M, C] over the candidate token ids)."""
        x: Tensor = self.norm(F.gelu(self.transform(features)))
        if candidates is None:
            return x @ self.decoder.T + self.bias
        return x @ self.decoder[candidates].T + self.bias[candidates]


def _pair_features(
    model: Classifier, hidden: Tensor, groups: Tensor, positions: Tensor, instances: Tensor
) -> Tensor:
    """Demux features of the chosen instance at chosen (group, position) pairs: [P, size]."""
    width = model.arch.mux_width
    features: Tensor = model.demux(hidden[groups, positions])  # [P * N, size]
    rows = torch.arange(len(groups), device=features.device)
    return features.view(-1, width, features.shape[-1])[rows, instances]


def retrieval_loss(
    model: Classifier,
    head: RetrievalHead,
    batch: Encoded,
    positions: int,
    negatives: int,
    mask_token_id: int | None = None,
) -> Tensor:
    """Sampled-softmax cross-entropy of recovering instance tokens. With ``mask_token_id``, it
    is masked-LM instead: 15% of each instance's tokens are masked and predicted.

    Every shape here follows the batch's alone (no ``nonzero``, ``unique`` or boolean
    indexing, whose sizes depend on values): a step never waits for the device, and a
    compiled step is one graph per batch shape. ``positions`` (group, instance, position)
    triples are drawn uniformly without replacement among the real tokens (the largest of
    random keys; where a batch has fewer, the rest weigh 0), and the softmax runs over the
    distinct token ids among their targets and the ``negatives`` noise tokens: the columns
    of a repeated id but its first (in sorted order) are masked out, as ``unique`` would
    drop them."""
    width = model.arch.mux_width
    input_ids, attention = batch.input_ids, batch.attention_mask  # [G*N, L]
    device = input_ids.device
    groups_count, length = input_ids.shape[0] // width, input_ids.shape[1]
    not_cls = torch.arange(length, device=device) > 0  # [CLS] carries nothing to recover
    valid = attention.view(groups_count, width, length).bool() & not_cls  # [G, N, L]
    model_input = input_ids
    if mask_token_id is not None:
        valid = (torch.rand(valid.shape, device=device) < 0.15) & valid
        model_input = torch.where(valid.view(-1, length), mask_token_id, input_ids)
    keys = torch.rand(valid.shape, device=device).masked_fill(~valid, -1.0).flatten()
    picks = min(positions, keys.numel())
    if device.type == "cpu" and not torch.compiler.is_compiling():
        # reading the count is free on a CPU: no rows that pick nothing (the same picks: the
        # first of the same top keys), where the masked-LM's 15 % leave most of P unpicked
        picks = min(picks, int(valid.sum()))
    top, flat = keys.topk(picks)  # [P]
    picked = top >= 0  # [P]: a real token (a batch with fewer than P has unpicked rows)
    groups, instances, places = flat // (width * length), flat // length % width, flat % length
    hidden = model.multiplexed_hidden(model_input, attention, batch.token_type_ids, None)
    features = _pair_features(model, hidden, groups, places, instances)  # [P, size]
    targets = input_ids[groups * width + instances, places]  # [P]
    vocab = head.bias.shape[0]
    noise = torch.randint(0, vocab, (negatives,), device=device)
    # an unpicked row's target is no candidate: id `vocab`, past every real id, masked below
    candidates = torch.cat([torch.where(picked, targets, vocab), noise]).sort().values  # [C]
    repeated = torch.cat(
        [candidates.new_zeros(1, dtype=torch.bool), candidates[1:] == candidates[:-1]]
    )
    usable = ~repeated & (candidates < vocab)  # [C]: the distinct ids, each once
    logits = head(features, candidates.clamp(max=vocab - 1))  # [P, C]
    logits = logits.masked_fill(~usable, torch.finfo(logits.dtype).min)  # exp() of it is 0
    labels = torch.searchsorted(candidates, targets)  # [P]: a picked target's first column
    losses = F.cross_entropy(logits, labels, reduction="none")  # [P]
    return torch.where(picked, losses, 0.0).sum() / picked.sum().clamp(min=1)


@torch.no_grad()
def token_recovery(
    model: Classifier, head: RetrievalHead, data: Encoded, max_rows: int = 256, batch_rows: int = 64
) -> float:
    """Fraction of real tokens (not [CLS], not padding) whose instance's token is the full-
    vocabulary argmax of the retrieval head, over the first ``max_rows`` examples."""
    model.eval()
    width = model.arch.mux_width
    rows = min(len(data), max_rows) // width * width
    data = data.to(head.bias.device)
    right = total = 0
    for start in range(0, rows, batch_rows * width):
        batch = data.rows(
            torch.arange(start, min(start + batch_rows * width, rows), device=data.device)
        )
        hidden = model.multiplexed_hidden(
            batch.input_ids, batch.attention_mask, batch.token_type_ids, None
        )
        features = model.demux(hidden)  # [G*N, L, size], row = group * N + instance
        valid = batch.attention_mask.bool().clone()
        valid[:, 0] = False
        predicted = head(features[valid]).argmax(dim=-1)
        right += int((predicted == batch.input_ids[valid]).sum())
        total += int(valid.sum())
    return right / total if total else 0.0
