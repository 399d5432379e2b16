"""CoFi's L0 masks: hard-concrete gates over heads, blocks, FFN units and hidden dims.

Everything here follows CoFiPruning's ``L0Module`` (models/l0_module.py, Xia et al., 2022) and
its trainer, in CoFi's own conventions:

- gates: z = clamp(sigmoid((log u - log(1 - u) + log_alpha) / beta) * (b - a) + a, 0, 1),
  u ~ U(eps, 1 - eps), with a = -0.1, b = 1.1, beta = 2/3, eps = 1e-6;
- P(z > 0) = 1 - clamp(sigmoid(beta * log(-a / b) - log_alpha), eps, 1 - eps) (CoFi's
  ``1 - cdf_qz(0, log_alpha)``);
- initialisation (``reset_loga``): log_alpha ~ N(10, 0.01) for heads, whole attention layers,
  whole FFN layers and hidden dims (all kept at first); N(log(1 - d) - log(d), 0.01) with
  droprate d = 0.5 (mean 0, P(z > 0) = 0.83) for FFN units only;
- after every optimizer step the trainer clamps log_alpha to [ln 0.01, ln 100]
  (``constrain_parameters``): :meth:`L0Module.clamp_`;
- expected prunable size: a head carries (4H^2 + 4H) // heads parameters, an FFN unit 2H (no
  bias), each times the probability that it and its layer gate are kept, all times the expected
  fraction of kept hidden dims (``get_num_parameters_and_constraint_for_hidden``). Without a
  hidden-dim gate CoFi's other branch counts a unit as (2HI + 5H) // I and no hidden factor;
- full prunable size (CoFi's ``prunable_model_size``): L * heads * ((4H^2 + 4H) // heads)
  + L * (2HI + 5H) = 85,017,600 for BERT-base. It is CoFi's formula, not the model's exact count
  (``prunable_params``, 2HI + I + H per FFN), and the two agree only when I = 4H. The L*5H that
  no gate reaches is why all gates open give an expected sparsity of 5H / (4H^2 + 4H + 2HI + 5H)
  > 0. Expected sparsity = 1 - expected size / full size; the achieved sparsity of a pruned
  model is measured on its materialized shapes instead;
- deterministic (evaluation) masks: in each row (the heads of a layer, the units of a layer,
  a layer's block gate, the hidden dims), the round(size - sum P(z > 0)) gates (a float32 sum,
  Python's round-half-even) with the smallest sigmoid(log_alpha / beta * 0.8) are 0 and the
  others keep that soft value;
- Lagrangian: lambda_1 (s_hat - t) + lambda_2 (s_hat - t)^2, with the lambdas maximized.

CoFi's deterministic rule rounds each row on its own, so the exact sparsity of the pruned
model can differ from the expected sparsity by several points when the gates have not
polarized to 0 or 1 (short runs). :meth:`L0Module.calibrated` makes "sparsity s" mean s:
heads, FFN units and hidden dims are ranked by their soft mask value (a head's or unit's
times its block's) and removed in that order, each one only if it brings the exact sparsity
(from the materialized shapes) closer to the target. Gates the training drove to 0 have the
lowest soft values, so they go first; with polarized gates the result is CoFi's own.

Every tensor made here lives on the device of the module's parameters.
"""

from __future__ import annotations

import enum
import math

import torch
from torch import Tensor, nn

from trainers.model.architecture import (
    Architecture,
    prunable_params,
    prunable_params_per_layer,
)
from trainers.model.masks import Masks

LIMIT_A, LIMIT_B, BETA, EPS = -0.1, 1.1, 2.0 / 3.0, 1e-6
SOFT_MASK_FACTOR = 0.8  # CoFi's "magical number" in the deterministic soft mask
# log(x_n / (1 - x_n)) for the stretched point x_n of z = 0, as CoFi's cdf_qz computes it
_ZERO = (0.0 - LIMIT_A) / (LIMIT_B - LIMIT_A)
ZERO_LOGIT = math.log(_ZERO) - math.log(1.0 - _ZERO)  # = log(-a / b)
KEPT_INIT_MEAN = 10.0  # reset_loga(mean=10): heads, layer gates, hidden dims start kept
INIT_STD = 1e-2  # reset_loga's normal_(mean, 1e-2)
LOG_ALPHA_MIN, LOG_ALPHA_MAX = math.log(1e-2), math.log(1e2)  # constrain_parameters' clamp


class Gate(enum.Enum):
    HEAD = "head"  # [L, heads]
    ATTENTION = "attention"  # [L]
    INTERMEDIATE = "intermediate"  # [L, I]
    FFN = "ffn"  # [L]
    HIDDEN = "hidden"  # [H]


def keep_probability(log_alpha: Tensor) -> Tensor:
    """P(z > 0) of hard-concrete gates: CoFi's 1 - cdf_qz(0, log_alpha), clamp included."""
    closed = torch.sigmoid(ZERO_LOGIT * BETA - log_alpha).clamp(EPS, 1.0 - EPS)
    return 1.0 - closed


def sample_gates(log_alpha: Tensor) -> Tensor:
    """One hard-concrete sample per gate (differentiable in log_alpha)."""
    u = torch.empty_like(log_alpha).uniform_(EPS, 1.0 - EPS)
    s = torch.sigmoid((torch.log(u) - torch.log(1.0 - u) + log_alpha) / BETA)
    return (s * (LIMIT_B - LIMIT_A) + LIMIT_A).clamp(0.0, 1.0)


def deterministic_gates(log_alpha: Tensor) -> Tensor:
    """Evaluation masks, row by row along the last dimension (see the module docstring)."""
    rows = log_alpha.reshape(-1, log_alpha.shape[-1])
    soft = torch.sigmoid(rows / BETA * SOFT_MASK_FACTOR)
    expected_kept = keep_probability(rows).sum(dim=1).tolist()  # float32 sums, one host sync
    out = soft.clone()
    for index, kept in enumerate(expected_kept):
        zeros = round(rows.shape[1] - kept)  # Python's round: half to even, as CoFi
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
        hidden, intermediate = arch.hidden_size, arch.intermediate[0]
        shapes = {
            Gate.HEAD: (layers, heads),
            Gate.ATTENTION: (layers,),
            Gate.INTERMEDIATE: (layers, intermediate),
            Gate.FFN: (layers,),
            Gate.HIDDEN: (hidden,),
        }
        # reset_loga: only FFN units start at the droprate; every other gate starts kept
        unit_mean = math.log(1.0 - drop_init) - math.log(drop_init)
        self.log_alpha = nn.ParameterDict(
            {
                gate.value: nn.Parameter(
                    torch.empty(shapes[gate]).normal_(
                        unit_mean if gate is Gate.INTERMEDIATE else KEPT_INIT_MEAN, INIT_STD
                    )
                )
                for gate in gates
            }
        )
        self.lambda_1 = nn.Parameter(torch.zeros(()))
        self.lambda_2 = nn.Parameter(torch.zeros(()))
        # CoFi's parameter counts (integer division as CoFi's): parameters per head, per FFN
        # layer, per FFN unit when hidden dims are not pruned, and the full prunable size
        self.head_size = (4 * hidden * hidden + 4 * hidden) // heads
        self.ffn_layer_size = 2 * hidden * intermediate + 5 * hidden
        self.unit_size = self.ffn_layer_size // intermediate
        self.full_size = layers * heads * self.head_size + layers * self.ffn_layer_size

    @property
    def device(self) -> torch.device:
        return self.lambda_1.device

    @torch.no_grad()
    def clamp_(self) -> None:
        """Clamp every log_alpha to [ln 0.01, ln 100] in place, as CoFi's trainer does after
        every optimizer step (``constrain_parameters``): one launch each way for all gates."""
        log_alphas = list(self.log_alpha.values())
        torch._foreach_clamp_min_(log_alphas, LOG_ALPHA_MIN)
        torch._foreach_clamp_max_(log_alphas, LOG_ALPHA_MAX)

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
                (score, gate, row, index)
                for gate, values in soft.items()
                for row, scores in enumerate(values.tolist())  # one host sync per gate
                for index, score in enumerate(scores)
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

        removed = {  # [rows][index] -> removed, kept on the host while deciding
            gate: [[False] * values.shape[1] for _ in range(values.shape[0])]
            for gate, values in soft.items()
        }
        # First up to the target, skipping pieces that would overshoot it (finer ones follow);
        # then at most one more piece, if it lands closer to the target than staying below.
        for stay_below in (True, False):
            for _, gate, row, index in candidates:
                if removed[gate][row][index] or (gate is Gate.HIDDEN and counts[gate][0] == 1):
                    continue  # the residual stream keeps at least one dim
                before = sparsity()
                counts[gate][row] -= 1
                after = sparsity()
                if (
                    (after <= target)
                    if stay_below
                    else (abs(after - target) < abs(before - target))
                ):
                    removed[gate][row][index] = True
                    if not stay_below:
                        break
                else:
                    counts[gate][row] += 1
        values = {
            gate: torch.where(
                torch.tensor(removed[gate], device=self.device),
                0.0,
                self._soft(gate, soft[gate].shape).view_as(soft[gate]),
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
            return torch.ones(shape, device=self.device)
        return torch.sigmoid(self.log_alpha[gate.value].detach() / BETA * SOFT_MASK_FACTOR)

    def keep(self, gate: Gate) -> Tensor | None:
        """P(z > 0) of a gate's entries (differentiable); None if the gate is not learned."""
        return keep_probability(self.log_alpha[gate.value]) if gate in self.gates else None

    def _keep_or_ones(self, gate: Gate, shape: tuple[int, ...]) -> Tensor:
        kept = self.keep(gate)
        return torch.ones(shape, device=self.device) if kept is None else kept

    def expected_size(self) -> Tensor:
        """Expected prunable parameter count in CoFi's convention (differentiable)."""
        arch = self.arch
        layers, hidden = arch.num_layers, arch.hidden_size
        head = self._keep_or_ones(Gate.HEAD, (layers, arch.heads[0]))  # [L, heads]
        head = head * self._keep_or_ones(Gate.ATTENTION, (layers,)).unsqueeze(-1)
        unit = self._keep_or_ones(Gate.INTERMEDIATE, (layers, arch.intermediate[0]))  # [L, I]
        unit = unit * self._keep_or_ones(Gate.FFN, (layers,)).unsqueeze(-1)
        kept_hidden = self.keep(Gate.HIDDEN)  # [H]
        if kept_hidden is None:  # CoFi's get_num_parameters_and_constraint
            return head.sum() * self.head_size + unit.sum() * self.unit_size
        # get_num_parameters_and_constraint_for_hidden: sum(outer(hidden, head)) * per head / H
        # + sum(outer(hidden, unit)) * 2, i.e. the kept-hidden fraction times heads and 2H units
        return kept_hidden.sum() * (head.sum() * (self.head_size / hidden) + unit.sum() * 2)

    def expected_sparsity(self) -> Tensor:
        return 1.0 - self.expected_size() / self.full_size

    def lagrangian(self, target: float | Tensor) -> Tensor:
        """lambda_1 (s_hat - t) + lambda_2 (s_hat - t)^2; minimized in the model's parameters
        and maximized in the lambdas (give them a negated learning rate, or negate their grads).
        ``target`` may be a [] tensor on the gates' device (a compiled step's ramped target)."""
        gap = self.expected_sparsity() - target
        return self.lambda_1 * gap + self.lambda_2 * gap * gap
