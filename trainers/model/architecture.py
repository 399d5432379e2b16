"""The shape of a (possibly pruned, possibly multiplexed) encoder classifier, as plain data.

The encoder family (BERT, ELECTRA, RoBERTa / XLM-R, DistilBERT) is read from a checkpoint's
``config.model_type`` (never from its name): all four run the same post-LayerNorm Transformer
layers and differ in their embeddings (ELECTRA's projection, RoBERTa's positions, DistilBERT's
missing token types), in their classification head, and in their parameter names.

A dense model has the same number of heads and FFN units in every layer; a pruned one has its
own per layer (0 heads: the attention block is gone; 0 units: the FFN block is gone) and a
hidden size that may be smaller than the embedding tables' original width. The architecture is
saved as JSON next to the weights, so a model can be rebuilt from the file alone.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
from dataclasses import dataclass, field
from typing import Any

from autoprumux.core.errors import FieldError, parse_choice


class Family(enum.Enum):
    """The encoder family, from ``config.model_type`` (xlm-roberta computes as roberta)."""

    BERT = "bert"
    ELECTRA = "electra"  # embeddings of embedding_size, projected to hidden_size if they differ
    ROBERTA = "roberta"  # positions count from padding_idx + 1 over non-padding tokens
    DISTILBERT = "distilbert"  # no token types; its own parameter names


# config.model_type -> family; anything else is refused in one line
MODEL_TYPES: dict[str, Family] = {
    "bert": Family.BERT,
    "electra": Family.ELECTRA,
    "roberta": Family.ROBERTA,
    "xlm-roberta": Family.ROBERTA,
    "distilbert": Family.DISTILBERT,
}


def family_of(config: dict[str, Any]) -> Family:
    """The family of a Hugging Face ``config.json``, or a FieldError naming the supported ones."""
    model_type = config.get("model_type")
    if not isinstance(model_type, str) or model_type not in MODEL_TYPES:
        raise FieldError(
            "model_type",
            f"{model_type!r} is not supported; supported model types: {', '.join(MODEL_TYPES)}",
        )
    return MODEL_TYPES[model_type]


class MuxStyle(enum.Enum):
    """How the multiplexer feeds the encoder."""

    # As the released MUX-BERT checkpoints: [CLS] forced at position 0, attention and token-type
    # masks ignored, embeddings applied twice (before mixing, and to the mixed vectors).
    PUBLISHED = "published"
    # Embeddings once, instances mixed, then the encoder; a position is attended if any
    # instance has a token there.
    STANDARD = "standard"


class Pooling(enum.Enum):
    """What the classifier of a multiplexed model reads, per instance."""

    CLS = "cls"  # the demultiplexed position 0 (MUX-BERT)
    MEAN = "mean"  # the mean of the instance's demultiplexed outputs over its own tokens
    # the demultiplexed mean of the mixed hidden states over the instance's own tokens: one
    # demultiplexer pass per instance, as cheap as CLS
    MEAN_HIDDEN = "mean_hidden"


class DemuxKind(enum.Enum):
    INDEX_POS = "index_pos"  # learned instance keys concatenated with the hidden state (MUX-BERT)
    MLP = "mlp"  # one small MLP per instance


@dataclass(frozen=True, kw_only=True)
class Architecture:
    vocab_size: int
    hidden_size: int  # width of the residual stream (pruned: the kept hidden dims)
    num_heads: int  # heads of the dense model; the width of a head is head_dim
    head_dim: int
    heads: tuple[int, ...]  # heads kept per layer
    intermediate: tuple[int, ...]  # FFN units kept per layer
    max_positions: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_dropout: float = 0.1
    attention_dropout: float = 0.1
    num_labels: int = 2
    cls_token_id: int = 101  # [CLS] of the BERT uncased vocabularies; MUX-BERT forces it first
    # Multiplexing: N = 1 is a plain BERT classifier (pooler + classifier).
    mux_width: int = 1
    mux_style: MuxStyle = MuxStyle.STANDARD
    key_norm: float = 1.0  # L2 norm of each fixed instance key row (MUX-BERT: 1); 0: sqrt(H)
    demux: DemuxKind = DemuxKind.INDEX_POS
    demux_depth: int = 3  # MUX-BERT's num_hidden_demux_layers; depth - 1 dense layers are used
    pooling: Pooling = Pooling.CLS  # N > 1 only
    head_size: int = 0  # width of the pooler or demultiplexer; 0: hidden_size (of the dense model)
    # Fields below are written to architecture.json only when they differ from their default,
    # so that a BERT's file (and every cache key derived from it) is unchanged.
    family: Family = Family.BERT
    # width of the embedding tables where the model projects them to hidden_size after their
    # LayerNorm (ELECTRA whose embedding_size differs from hidden_size); kept when hidden dims
    # are pruned (the projection's outputs are). 0: no projection, the tables are hidden_size
    # wide and follow hidden-dim pruning
    embedding_size: int = 0
    padding_idx: int = 0  # RoBERTa: the pad token id, from which positions count
    extra: dict[str, Any] = field(default_factory=dict, compare=False)  # provenance, free-form

    def __post_init__(self) -> None:
        if len(self.heads) != len(self.intermediate):
            raise FieldError("heads", "heads and intermediate must list the same number of layers")
        if self.mux_width < 1:
            raise FieldError("mux_width", f"{self.mux_width} is not >= 1")
        if self.demux_depth < 2:
            raise FieldError("demux_depth", f"{self.demux_depth} is not >= 2")
        if not self.head_size:
            object.__setattr__(self, "head_size", self.hidden_size)

    @property
    def num_layers(self) -> int:
        return len(self.heads)

    @property
    def embedding_width(self) -> int:
        """Width of the embedding tables and their LayerNorm."""
        return self.embedding_size or self.hidden_size

    @property
    def projects_embeddings(self) -> bool:
        return self.embedding_size > 0

    @property
    def max_tokens(self) -> int:
        """The longest input the position table holds: RoBERTa's positions start at
        ``padding_idx + 1`` (514 rows hold 512 tokens)."""
        if self.family is Family.ROBERTA:
            return self.max_positions - self.padding_idx - 1
        return self.max_positions

    @property
    def is_multiplexed(self) -> bool:
        return self.mux_width > 1

    @property
    def ignores_padding(self) -> bool:
        """Whether padding columns that no example uses can be cut from a batch without changing
        any output: attention reads real tokens only, except in a PUBLISHED multiplexed model
        (it attends to every position, padding included, as the released checkpoints did)."""
        return not (self.is_multiplexed and self.mux_style is MuxStyle.PUBLISHED)

    @classmethod
    def dense(
        cls,
        *,
        num_layers: int,
        hidden_size: int,
        num_heads: int,
        intermediate_size: int,
        vocab_size: int,
        **kwargs: Any,
    ) -> Architecture:
        if hidden_size % num_heads:
            raise FieldError(
                "num_heads", f"hidden size {hidden_size} is not a multiple of {num_heads}"
            )
        return cls(
            vocab_size=vocab_size,
            hidden_size=hidden_size,
            num_heads=num_heads,
            head_dim=hidden_size // num_heads,
            heads=(num_heads,) * num_layers,
            intermediate=(intermediate_size,) * num_layers,
            **kwargs,
        )

    @classmethod
    def from_hf_config(cls, config: dict[str, Any], **kwargs: Any) -> Architecture:
        """From a Hugging Face ``config.json`` of a supported family (MUX-BERT fields included)."""
        family = family_of(config)
        if family is Family.DISTILBERT:
            return cls.dense(**{**_distilbert_values(config), **kwargs})
        if config.get("hidden_act", "gelu") != "gelu":
            raise FieldError(
                "hidden_act", f"{config['hidden_act']!r} is not supported; only 'gelu'"
            )
        if config.get("position_embedding_type", "absolute") != "absolute":
            raise FieldError("position_embedding_type", "only 'absolute' positions are supported")
        mux: dict[str, Any] = {}
        width = _whole_number(config, "num_instances", default=1)
        if width > 1:
            if config.get("muxing_variant", "gaussian_hadamard") != "gaussian_hadamard":
                raise FieldError("muxing_variant", "only 'gaussian_hadamard' is supported")
            demux = config.get("demuxing_variant", "index_pos")
            mux = {
                "mux_width": width,
                "mux_style": MuxStyle.PUBLISHED,
                "key_norm": float(_number(config, "gaussian_hadamard_norm", 1.0, 0, math.inf)),
                "demux": parse_choice(DemuxKind, demux, "demuxing_variant"),
                # the released DataMUX code reads a config without the key as depth 2
                "demux_depth": _whole_number(config, "num_hidden_demux_layers", 2, minimum=2),
            }
        hidden_size = _whole_number(config, "hidden_size")
        own: dict[str, Any] = {}  # the family's fields, only where they are not BERT's
        if family is Family.ELECTRA:
            size = _whole_number(config, "embedding_size", default=hidden_size)
            own = {"embedding_size": size if size != hidden_size else 0}
        elif family is Family.ROBERTA:
            own = {"padding_idx": _whole_number(config, "pad_token_id", 1, minimum=0)}
        values = {
            "num_layers": _whole_number(config, "num_hidden_layers"),
            "hidden_size": hidden_size,
            "num_heads": _whole_number(config, "num_attention_heads"),
            "intermediate_size": _whole_number(config, "intermediate_size"),
            "vocab_size": _whole_number(config, "vocab_size"),
            "max_positions": _whole_number(config, "max_position_embeddings", 512),
            # 0: no token-type table (token types are ignored)
            "type_vocab_size": _whole_number(config, "type_vocab_size", 2, minimum=0),
            "layer_norm_eps": _number(config, "layer_norm_eps", 1e-12, 0, math.inf),
            "hidden_dropout": _number(config, "hidden_dropout_prob", 0.1, 0, 1),
            "attention_dropout": _number(config, "attention_probs_dropout_prob", 0.1, 0, 1),
            "num_labels": _num_labels(config),
            **({"family": family} if family is not Family.BERT else {}),
            **own,
            **mux,
            **kwargs,  # the caller's overrides win
        }
        return cls.dense(**values)

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        # family fields at their default are left out: a BERT's JSON is as it always was
        if self.family is Family.BERT:
            del data["family"]
        else:
            data["family"] = self.family.value
        if self.embedding_size == 0:
            del data["embedding_size"]
        if self.padding_idx == 0:
            del data["padding_idx"]
        data["mux_style"] = self.mux_style.value
        data["demux"] = self.demux.value
        data["pooling"] = self.pooling.value
        data["heads"], data["intermediate"] = list(self.heads), list(self.intermediate)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Architecture:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise FieldError(
                sorted(unknown)[0],
                f"is not an architecture field; allowed: {', '.join(sorted(known))}",
            )
        values = dict(data)
        values["heads"] = tuple(values["heads"])
        values["intermediate"] = tuple(values["intermediate"])
        values["mux_style"] = MuxStyle(values.get("mux_style", "standard"))
        values["demux"] = DemuxKind(values.get("demux", "index_pos"))
        values["pooling"] = Pooling(values.get("pooling", "cls"))
        values["family"] = Family(values.get("family", "bert"))
        return cls(**values)

    def with_mux(self, width: int, **kwargs: Any) -> Architecture:
        return dataclasses.replace(self, mux_width=width, **kwargs)


def with_layers(config: dict[str, Any], num_layers: int, name: str = "the model") -> dict[str, Any]:
    """A Hugging Face config keeping only its first ``num_layers`` layers (0: all of them);
    more layers than it has are refused in one line (``name``: the model's, for it)."""
    key = "n_layers" if config.get("model_type") == "distilbert" else "num_hidden_layers"
    if not num_layers or key not in config:
        return config
    layers = _whole_number(config, key)
    if num_layers > layers:
        raise FieldError(
            "model.num_layers",
            f"{num_layers} is more than the {layers} layers of {name}; give at most "
            f"{layers} (0: all of them)",
        )
    return {**config, key: num_layers}


def _whole_number(
    config: dict[str, Any], name: str, default: int | None = None, minimum: int = 1
) -> int:
    """``config[name]`` (``default`` where it is absent; None: the field is required), or a
    FieldError naming the field, its value and what is allowed: a whole number >= ``minimum``.
    JSON's ``2.0``, ``true`` and ``null`` are refused here, where they would otherwise fail
    later as a TypeError deep in the model (``true`` is an int to Python)."""
    allowed = "a positive whole number" if minimum == 1 else f"a whole number >= {minimum}"
    if default is None and name not in config:
        raise FieldError(name, f"is missing; give {allowed}")
    value = config.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise FieldError(name, f"{_as_json(value)} is not {allowed}")
    return value


def _number(config: dict[str, Any], name: str, default: float, low: float, high: float) -> float:
    """``config[name]`` (``default`` where it is absent) as given, once it is a finite number
    from ``low`` to ``high``; a FieldError naming the field, its value and the range otherwise.
    The value is not converted: an architecture.json (and the cache keys derived from it) keeps
    a config's ``0`` as ``0``."""
    allowed = f"a number >= {low:g}" if high == math.inf else f"a number from {low:g} to {high:g}"
    value = config.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FieldError(name, f"{_as_json(value)} is not {allowed}")
    if not (math.isfinite(value) and low <= value <= high):  # Python's JSON reads NaN, Infinity
        raise FieldError(name, f"{_as_json(value)} is not {allowed}")
    return value


def _as_json(value: Any) -> str:
    """A config value as config.json spells it (``null``, ``true``, ``"two"``)."""
    return json.dumps(value, default=repr)


def _num_labels(config: dict[str, Any]) -> int:
    id2label = config.get("id2label") or {}
    if not isinstance(id2label, dict):
        raise FieldError("id2label", f"{_as_json(id2label)} is not an object of label id: name")
    return _whole_number(config, "num_labels", len(id2label) or 2)


def _distilbert_values(config: dict[str, Any]) -> dict[str, Any]:
    """Architecture.dense's arguments from a DistilBERT config (its own field names)."""
    if config.get("sinusoidal_pos_embds", False) is not False:
        raise FieldError(
            "sinusoidal_pos_embds",
            f"{_as_json(config['sinusoidal_pos_embds'])} is not supported for distilbert; "
            "only false",
        )
    if config.get("activation", "gelu") != "gelu":
        raise FieldError("activation", f"{config['activation']!r} is not supported; only 'gelu'")
    return {
        "family": Family.DISTILBERT,
        "num_layers": _whole_number(config, "n_layers"),
        "hidden_size": _whole_number(config, "dim"),
        "num_heads": _whole_number(config, "n_heads"),
        "intermediate_size": _whole_number(config, "hidden_dim"),
        "vocab_size": _whole_number(config, "vocab_size"),
        "max_positions": _whole_number(config, "max_position_embeddings", 512),
        "type_vocab_size": 0,  # DistilBERT has no token-type table
        "layer_norm_eps": 1e-12,  # fixed in DistilBERT's code
        "hidden_dropout": _number(config, "dropout", 0.1, 0, 1),
        "attention_dropout": _number(config, "attention_dropout", 0.1, 0, 1),
        "num_labels": _num_labels(config),
    }


def prunable_params_per_layer(hidden: int, heads: int, head_dim: int, units: int) -> int:
    """Exact parameter count of one layer's prunable matrices and biases (LayerNorms excluded):
    Q, K, V, output (4 h d H + 3 h d + H) if it has heads; up, down (2 I H + I + H) if units."""
    attention = 4 * heads * head_dim * hidden + 3 * heads * head_dim + hidden if heads else 0
    ffn = 2 * units * hidden + units + hidden if units else 0
    return attention + ffn


def prunable_params(arch: Architecture) -> int:
    """The encoder's prunable parameters; sparsity is the fraction of the dense count removed."""
    return sum(
        prunable_params_per_layer(arch.hidden_size, h, arch.head_dim, i)
        for h, i in zip(arch.heads, arch.intermediate, strict=True)
    )


def sparsity_of(arch: Architecture, dense: Architecture) -> float:
    return 1.0 - prunable_params(arch) / prunable_params(dense)


def architecture_for_sparsity(dense: Architecture, sparsity: float) -> Architecture:
    """The training-free stand-in for a model pruned to ``sparsity``, for throughput estimates.

    Rule: every layer keeps round(heads * (1 - s)) heads and the same number of FFN units,
    chosen so that the exact prunable-parameter count is the closest to (1 - s) of the dense
    model's; the hidden size is kept. Speed depends on these shapes, not on the weights.
    """
    if sparsity == 0:
        return dense
    heads = round(dense.num_heads * (1.0 - sparsity))
    target = (1.0 - sparsity) * prunable_params(dense)
    width = dense.intermediate[0]

    def total(units: int) -> int:
        return dense.num_layers * prunable_params_per_layer(
            dense.hidden_size, heads, dense.head_dim, units
        )

    units = min(range(width + 1), key=lambda u: abs(total(u) - target))
    return dataclasses.replace(
        dense, heads=(heads,) * dense.num_layers, intermediate=(units,) * dense.num_layers
    )


def multiplexing_fields(settings: Any, width: int) -> dict[str, Any]:
    """Architecture fields of width N from a study's [multiplexing] section."""
    return {
        "mux_width": width,
        "mux_style": MuxStyle(settings.style),
        "key_norm": settings.key_norm,
        "demux": DemuxKind(settings.demux),
        "demux_depth": settings.demux_depth,
        "pooling": Pooling(settings.pooling),
    }
