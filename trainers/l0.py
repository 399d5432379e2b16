"""CoFi's L0 masks: hard-concrete gates over heads, blocks, FFN units and hidden dims.

Constants and formulas follow CoFi (Xia et al., 2022) as DESIGN.md states them:
- a gate z = clamp(sigmoid((log u - log(1 - u) + log_alpha) / beta) * (b - a) + a, 0, 1),
  u ~ U(eps, 1 - eps), with a = -0.1, b = 1.1, beta = 2/3, eps = 1e-6;
- P(z > 0) = 1 - sigmoid(beta * log(-a / b) - log_alpha), clamped to [eps, 1 - eps];
- expected prunable size: every head carries (4H^2 + 4H) / heads parameters and every FFN unit
  2H + 1, each times the probability that it (and its layer) is kept, all times the expected
  fraction of kept hidden dims; expected sparsity = 1 - size / full prunable size, where the
  full size of one layer is 4H^2 + 4H (attention) + 2HI + I + H (FFN) - 85,017,600 for BERT-base;
- deterministic (evaluation) masks: in each row (the heads of a layer, the units of a layer,
  a layer's block gate, the hidden dims), the round(size - sum P(z > 0)) gates with the smallest
  sigmoid(log_alpha / beta * 0.8) are 0 and the others keep that soft value;
- Lagrangian: lambda_1 (s_hat - t) + lambda_2 (s_hat - t)^2, with the lambdas maximized.

CoFi's deterministic rule rounds each row on its own, so the exact sparsity of the pruned
model can differ from the expected sparsity by several points when the gates have not
polarized to 0 or 1 (short runs). :meth:`L0Module.calibrated` makes "sparsity s" mean s:
heads, FFN units and hidden dims are ranked by their soft mask value (a head's or unit's
times its block's) and removed in that order, each one only if it brings the exact sparsity
(from the materialized shapes) closer to the target. Gates the training drove to 0 have the
lowest soft values, so they go first; with polarized gates the result is CoFi's own.
"""

from __future__ import annotations

import enum
import math

import torch
from torch import Tensor, nn

from trainers.architecture import Architecture, prunable_params, prunable_params_per_layer
from trainers.masks import Masks

LIMIT_A, LIMIT_B, BETA, EPS = -0.1, 1.1, 2.0 / 3.0, 1e-6
SOFT_MASK_FACTOR = 0.8  # CoFi's "magical number" in the deterministic soft mask


class Gate(enum.Enum):
    HEAD = "head"  # [L, heads]
    ATTENTION = "attention"  # [L]
    INTERMEDIATE = "intermediate"  # [L, I]
    FFN = "ffn"  # [L]
    HIDDEN = "hidden"  # [H]


def keep_probability(log_alpha: Tensor) -> Tensor:
    """P(z > 0) of hard-concrete gates."""
    closed = torch.sigmoid(BETA * math.log(-LIMIT_A / LIMIT_B) - log_alpha)
    return (1.0 - closed).clamp(EPS, 1.0 - EPS)


def sample_gates(log_alpha: Tensor) -> Tensor:
    """One hard-concrete sample per gate (differentiable in log_alpha)."""
    u = torch.empty_like(log_alpha).uniform_(EPS, 1.0 - EPS)
    s = torch.sigmoid((torch.log(u) - torch.log(1.0 - u) + log_alpha) / BETA)
    return (s * (LIMIT_B - LIMIT_A) + LIMIT_A).clamp(0.0, 1.0)


def deterministic_gates(log_alpha: Tensor) -> Tensor:
    """Evaluation masks, row by row along the last dimension (see the module docstring)."""
    rows = log_alpha.reshape(-1, log_alpha.shape[-1])
    soft = torch.sigmoid(rows / BETA * SOFT_MASK_FACTOR)
    probability = keep_probability(rows)
    out = soft.clone()
    for index in range(rows.shape[0]):
        zeros = round(rows.shape[1] - float(probability[index].sum()))  # Python rounding
        if zeros > 0:
            out[index, torch.topk(soft[index], k=zeros, largest=False).indices] = 0.0
    return out.view_as(log_alpha)


class L0Module(nn.Module):
    """The learnable log_alpha of every gate of a dense model, and the Lagrange multipliers."""

    def __init__(
        self, arch: Architecture, gates: tuple[Gate, ...] = tuple(Gate), drop_init: float = 0.5
    ) -> None:
        super().__init__()
        if len(set(arch.heads)) != 1 or len(set(arch.intermediate)) != 1:
            raise ValueError("L0 masks are defined on a dense (unpruned) architecture")
        self.arch = arch
        self.gates = gates
        layers, heads = arch.num_layers, arch.heads[0]
        shapes = {
            Gate.HEAD: (layers, heads),
            Gate.ATTENTION: (layers,),
            Gate.INTERMEDIATE: (layers, arch.intermediate[0]),
            Gate.FFN: (layers,),
            Gate.HIDDEN: (arch.hidden_size,),
        }
        mean = math.log(1.0 - drop_init) - math.log(drop_init)
        self.log_alpha = nn.ParameterDict(
            {
                gate.value: nn.Parameter(torch.empty(shapes[gate]).normal_(mean, 1e-2))
                for gate in gates
            }
        )
        self.lambda_1 = nn.Parameter(torch.zeros(()))
        self.lambda_2 = nn.Parameter(torch.zeros(()))
        hidden, intermediate = arch.hidden_size, arch.intermediate[0]
        self.full_size = layers * (
            4 * hidden * hidden + 4 * hidden + 2 * hidden * intermediate + intermediate + hidden
        )

    def sample(self) -> Masks:
        """Training masks: a fresh hard-concrete sample of every gate."""
        return Masks(**{g.value: sample_gates(self.log_alpha[g.value]) for g in self.gates})

    @torch.no_grad()
    def deterministic(self) -> Masks:
        """Evaluation masks. A layer gate ([L]) is a row of its own in every layer."""
        values = {}
        for gate in self.gates:
            log_alpha = self.log_alpha[gate.value]
            if gate in (Gate.ATTENTION, Gate.FFN):
                values[gate.value] = deterministic_gates(log_alpha.unsqueeze(-1)).squeeze(-1)
            else:
                values[gate.value] = deterministic_gates(log_alpha)
        return Masks(**values)

    @torch.no_grad()
    def calibrated(self, target: float) -> Masks:
        """Deterministic masks whose exact sparsity is as close to ``target`` as the model's
        granularity allows (see the module docstring). Kept gates hold their soft values."""
        arch = self.arch
        layers, width = (
            arch.num_layers,
            {Gate.HEAD: arch.heads[0], Gate.INTERMEDIATE: arch.intermediate[0]},
        )
        soft = {
            gate: self._soft(gate, (layers, size)) * self._soft(block, (layers,)).unsqueeze(-1)
            for gate, block, size in (
                (Gate.HEAD, Gate.ATTENTION, width[Gate.HEAD]),
                (Gate.INTERMEDIATE, Gate.FFN, width[Gate.INTERMEDIATE]),
            )
        }
        soft[Gate.HIDDEN] = self._soft(Gate.HIDDEN, (arch.hidden_size,)).unsqueeze(0)  # one row
        candidates = sorted(  # (score, gate, layer, index), lowest score first
            (
                (float(values[row, index]), gate, row, index)
                for gate, values in soft.items()
                for row in range(values.shape[0])
                for index in range(values.shape[1])
            ),
            key=lambda candidate: candidate[0],
        )
        counts = {
            Gate.HEAD: [width[Gate.HEAD]] * layers,
            Gate.INTERMEDIATE: [width[Gate.INTERMEDIATE]] * layers,
            Gate.HIDDEN: [arch.hidden_size],
        }
        full = prunable_params(arch)

        def sparsity() -> float:
            kept = sum(
                prunable_params_per_layer(counts[Gate.HIDDEN][0], h, arch.head_dim, u)
                for h, u in zip(counts[Gate.HEAD], counts[Gate.INTERMEDIATE], strict=True)
            )
            return 1.0 - kept / full

        removed = {
            gate: torch.zeros_like(values, dtype=torch.bool) for gate, values in soft.items()
        }
        # First up to the target, skipping pieces that would overshoot it (finer ones follow);
        # then at most one more piece, if it lands closer to the target than staying below.
        for stay_below in (True, False):
            for _, gate, row, index in candidates:
                if removed[gate][row, index] or (gate is Gate.HIDDEN and counts[gate][0] == 1):
                    continue  # the residual stream keeps at least one dim
                before = sparsity()
                counts[gate][row] -= 1
                after = sparsity()
                if (
                    (after <= target)
                    if stay_below
                    else (abs(after - target) < abs(before - target))
                ):
                    removed[gate][row, index] = True
                    if not stay_below:
                        break
                else:
                    counts[gate][row] += 1
        values = {
            gate: torch.where(
                removed[gate], 0.0, self._soft(gate, soft[gate].shape).view_as(soft[gate])
            )
            for gate in soft
        }
        return Masks(
            head=values[Gate.HEAD],
            attention=self._soft(Gate.ATTENTION, (layers,)),
            intermediate=values[Gate.INTERMEDIATE],
            ffn=self._soft(Gate.FFN, (layers,)),
            hidden=values[Gate.HIDDEN].squeeze(0),
        )

    def _soft(self, gate: Gate, shape: tuple[int, ...]) -> Tensor:
        """Deterministic soft values sigmoid(log_alpha / beta * 0.8) of a gate; ones if absent."""
        if gate not in self.gates:
            return torch.ones(shape)
        return torch.sigmoid(self.log_alpha[gate.value].detach() / BETA * SOFT_MASK_FACTOR)

    def keep(self, gate: Gate) -> Tensor | None:
        return keep_probability(self.log_alpha[gate.value]) if gate in self.gates else None

    def expected_size(self) -> Tensor:
        """Expected prunable parameter count under the gate probabilities (differentiable)."""
        arch = self.arch
        hidden, heads = arch.hidden_size, arch.heads[0]
        ones_layer = torch.ones(arch.num_layers)
        head = self.keep(Gate.HEAD)
        head = torch.ones(arch.num_layers, heads) if head is None else head
        unit = self.keep(Gate.INTERMEDIATE)
        unit = torch.ones(arch.num_layers, arch.intermediate[0]) if unit is None else unit
        attention = self.keep(Gate.ATTENTION)
        ffn = self.keep(Gate.FFN)
        head = head * (ones_layer if attention is None else attention).unsqueeze(-1)
        unit = unit * (ones_layer if ffn is None else ffn).unsqueeze(-1)
        kept_hidden = self.keep(Gate.HIDDEN)
        fraction = 1.0 if kept_hidden is None else kept_hidden.mean()
        per_head = (4 * hidden * hidden + 4 * hidden) / heads
        return fraction * (head.sum() * per_head + unit.sum() * (2 * hidden + 1))

    def expected_sparsity(self) -> Tensor:
        return 1.0 - self.expected_size() / self.full_size

    def lagrangian(self, target: float) -> Tensor:
        """lambda_1 (s_hat - t) + lambda_2 (s_hat - t)^2; minimized in the model's parameters
        and maximized in the lambdas (give them a negated learning rate, or negate their grads)."""
        gap = self.expected_sparsity() - target
        return self.lambda_1 * gap + self.lambda_2 * gap * gap
