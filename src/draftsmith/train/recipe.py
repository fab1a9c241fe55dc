"""Training recipes: YAML with four sections, typed and validated before any model loads.

A recipe names the target, the data, the draft and the training settings. Unknown keys
and bad values are errors naming the file and the dotted key (``training.lr``), so a
typo costs seconds, not the minutes it takes to load a 120B target. ``--set key=value``
overrides are parsed as YAML scalars and validated the same way.

Paths inside a recipe file are relative to that file, so a recipe runs the same from any
working directory; ``--set`` values are relative to the working directory, as any
command-line path. :func:`check_inputs` then checks that what the paths name exists (and
that the device does), in a second, still cheap step before any model or data loads.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import yaml

from draftsmith.model.config import DraftConfigError, validate_aux_layer_ids


class RecipeError(ValueError):
    """A recipe that cannot run; the message names the file and the key."""


@dataclass
class TargetSection:
    """The frozen target. Not needed when training from offline features."""

    path: str | None = None
    dtype: str = "bfloat16"
    device: str | None = None  # default: cuda when available, else cpu
    device_map: Literal["auto", "balanced", "sequential"] | None = None  # prepare: spread over this node's GPUs
    trust_remote_code: bool = False
    logits_chunk: int = 512  # positions per lm_head chunk (full-vocab logits are never held at once)


@dataclass
class DataSection:
    train: list[str] = field(default_factory=list)
    validation: list[str] = field(default_factory=list)
    validation_fraction: float = 0.0  # held out from train when no validation files are given
    features: str | None = None  # directory written by `draftsmith prepare`: train without the target
    max_length: int = 4096
    overlong: Literal["truncate", "drop"] = "truncate"
    pack: bool = False
    supervise: Literal["all", "final"] = "all"  # harmony: analysis + final channels, or final only
    max_bad_fraction: float = 0.01
    tokenizer: str | None = None  # default: the target's
    # The rendered sample store (docs/data.md): keyed by tokenizer, data and settings, shared by ranks and runs.
    cache_dir: str | None = None  # default: ~/.cache/draftsmith/data; on a shared file system for multi-node runs
    num_workers: int | None = None  # processes rendering the data; default one per CPU core, at most 8


@dataclass
class DraftSection:
    init_from: str | None = None  # warm start from an existing EAGLE-3 draft checkpoint
    draft_vocab_size: int = 32000
    vocab_file: str | None = None  # default: ~/.cache/draftsmith/vocab/, validated by tokenizer + data fingerprints
    aux_layer_ids: list[int] | None = None  # aux layer k = output of target decoder layer k; any order
    intermediate_size: int | None = None
    norm_before_fc: bool = False  # architecture options of a fresh draft (see DraftConfig)
    fc_norm: bool = False
    norm_output: bool = False
    # The draft's rotary, default the target's; set only to study drafts that rotate differently.
    rope_parameters: dict | None = None
    max_position_embeddings: int | None = None


@dataclass
class TrainingSection:
    output_dir: str = "runs/draft"
    seed: int = 0
    ttt_steps: int = 7
    step_decay: float = 0.8
    epochs: int = 1
    max_steps: int | None = None  # optimizer steps; default: epochs over the data
    micro_batch_size: int | None = None  # samples per micro-batch; default 1 unless max_tokens is set
    max_tokens: int | None = None  # instead: padded tokens per micro-batch, samples grouped by length
    gradient_accumulation: int = 1
    dataloader_workers: int = 0  # DataLoader processes reading the store (a batch reads in microseconds)
    learning_rate: float = 1e-4
    min_learning_rate_ratio: float = 0.0  # cosine floor as a fraction of learning_rate
    warmup_steps: int = 0
    weight_decay: float = 0.0
    max_grad_norm: float = 0.5
    bf16: bool = True  # autocast on CUDA; CPU runs stay in fp32
    gradient_checkpointing: bool = False
    log_every: int = 10
    eval_every: int = 0  # 0: validate only at the end
    save_every: int = 500
    keep_last: int = 3
    tensorboard: bool = False


@dataclass
class EvaluationSection:
    """The real speculative decoding that ends a run (``OUTPUT/eval.json``, the model card's τ)."""

    prompts: int = 8  # held-out validation prompts decoded greedily; 0 skips the evaluation
    max_new_tokens: int = 64


@dataclass
class Recipe:
    target: TargetSection = field(default_factory=TargetSection)
    data: DataSection = field(default_factory=DataSection)
    draft: DraftSection = field(default_factory=DraftSection)
    training: TrainingSection = field(default_factory=TrainingSection)
    evaluation: EvaluationSection = field(default_factory=EvaluationSection)
    source: str = "<recipe>"

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.pop("source")
        return out


_DTYPES = ("auto", "bfloat16", "float16", "float32")
# Recipe keys that name files or directories; the first three may also be hub ids.
_HUB_OR_PATH = {("target", "path"), ("data", "tokenizer"), ("draft", "init_from")}
_PATHS = _HUB_OR_PATH | {("data", "train"), ("data", "validation"), ("data", "features"), ("draft", "vocab_file"),
                         ("training", "output_dir"), ("data", "cache_dir")}

_POSITIVE = {"training.ttt_steps", "training.epochs", "training.micro_batch_size", "training.gradient_accumulation",
             "training.save_every", "training.keep_last", "training.log_every", "data.max_length",
             "draft.draft_vocab_size", "target.logits_chunk", "training.max_steps", "draft.intermediate_size",
             "draft.max_position_embeddings", "evaluation.max_new_tokens", "training.max_tokens", "data.num_workers"}
_FRACTIONS = {"data.validation_fraction", "data.max_bad_fraction", "training.min_learning_rate_ratio"}


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Check ``value`` against a dataclass field annotation (the few types recipes use)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return _coerce(value, option, where)
            except RecipeError as error:
                errors.append(str(error))
        raise RecipeError(errors[0])
    if origin is Literal:
        if value not in typing.get_args(annotation):
            raise RecipeError(f"{where}: {value!r} is not one of {list(typing.get_args(annotation))}")
        return value
    if origin is list:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise RecipeError(f"{where}: expected a list, got {value!r}")
        (item,) = typing.get_args(annotation)
        return [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if annotation is dict:
        if not isinstance(value, dict):
            raise RecipeError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if annotation is bool:
        if not isinstance(value, bool):
            raise RecipeError(f"{where}: expected true or false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise RecipeError(f"{where}: expected an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, str):  # YAML 1.1 reads 3e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RecipeError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise RecipeError(f"{where}: expected a string, got {value!r}")
        return str(value)
    raise TypeError(f"unsupported recipe annotation {annotation!r}")


def _section(cls: type, raw: Any, name: str, source: str) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise RecipeError(f"{source}: section '{name}' must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise RecipeError(f"{source}: unknown key(s) {', '.join(f'{name}.{k}' for k in unknown)}; "
                          f"'{name}' takes {', '.join(sorted(known))}")
    values = {}
    for key, value in raw.items():
        where = f"{source}: {name}.{key}"
        values[key] = _coerce(value, hints[key], where)
        if f"{name}.{key}" in _POSITIVE and values[key] is not None and values[key] <= 0:
            raise RecipeError(f"{where}: must be positive, got {value!r}")
        if f"{name}.{key}" in _FRACTIONS and not 0 <= values[key] < 1:
            raise RecipeError(f"{where}: must be in [0, 1), got {value!r}")
    return cls(**values)


def _validate(recipe: Recipe) -> Recipe:
    src, data, draft, training = recipe.source, recipe.data, recipe.draft, recipe.training
    if data.features is None and not data.train:
        raise RecipeError(f"{src}: data.train is empty; list conversation files or set data.features")
    if data.features is None and recipe.target.path is None:
        raise RecipeError(f"{src}: target.path is required unless data.features points at offline features")
    if training.max_tokens is not None and training.micro_batch_size is not None:
        raise RecipeError(f"{src}: training.max_tokens and training.micro_batch_size are mutually exclusive: a micro-batch "
                          f"is either a token budget or a sample count (drop one; --set training.micro_batch_size=null)")
    if training.max_tokens is None and training.micro_batch_size is None:
        training.micro_batch_size = 1
    if training.max_tokens is not None and training.max_tokens < data.max_length:
        raise RecipeError(f"{src}: training.max_tokens ({training.max_tokens}) must be at least data.max_length "
                          f"({data.max_length}), so that the longest sample fits a micro-batch")
    if training.dataloader_workers < 0:
        raise RecipeError(f"{src}: training.dataloader_workers must be >= 0, got {training.dataloader_workers}")
    if training.learning_rate <= 0:
        raise RecipeError(f"{src}: training.learning_rate must be positive, got {training.learning_rate}")
    if training.warmup_steps < 0 or training.weight_decay < 0 or training.max_grad_norm <= 0:
        raise RecipeError(f"{src}: training.warmup_steps and weight_decay must be >= 0, max_grad_norm > 0")
    if not 0 < training.step_decay <= 1:
        raise RecipeError(f"{src}: training.step_decay must be in (0, 1], got {training.step_decay}")
    if draft.aux_layer_ids is not None:
        try:
            validate_aux_layer_ids(draft.aux_layer_ids, None)
        except DraftConfigError as error:
            raise RecipeError(f"{src}: draft.{error}") from None
    if recipe.target.dtype not in _DTYPES:
        raise RecipeError(f"{src}: target.dtype: {recipe.target.dtype!r} is not one of {list(_DTYPES)}")
    if recipe.target.device is not None:
        try:
            torch.device(recipe.target.device)
        except (RuntimeError, ValueError):
            raise RecipeError(f"{src}: target.device: {recipe.target.device!r} is not a device "
                              f"(cpu, cuda, cuda:1, ...)") from None
    if recipe.target.device_map is not None and recipe.target.device is not None:
        raise RecipeError(f"{src}: target.device_map and target.device exclude each other: the map places the "
                          f"target's layers, the device holds all of it")
    if recipe.evaluation.prompts < 0:
        raise RecipeError(f"{src}: evaluation.prompts must be >= 0, got {recipe.evaluation.prompts}")
    return recipe


def _is_local(value: str, base: Path) -> bool:
    """Whether a recipe value names a local path rather than a hub id like ``openai/gpt-oss-20b``.

    Local: it exists, it is spelled as a path (absolute, ``./``, ``../``, ``~``), or its
    first component exists (``demo/target`` next to a ``demo/`` directory).
    """
    if value.startswith((".", "/", "~")) or os.path.isabs(value):
        return True
    path = base / value
    return path.exists() or (len(Path(value).parts) > 1 and (base / Path(value).parts[0]).exists())


def _resolve_paths(raw: dict[str, Any], base: Path) -> None:
    """Make the path values of a recipe file absolute, relative to the file's directory."""
    for section, key in _PATHS:
        values = raw.get(section)
        if not isinstance(values, dict) or not isinstance(values.get(key), (str, list)):
            continue
        value = values[key]
        items = value if isinstance(value, list) else [value]
        resolved = []
        for item in items:
            if isinstance(item, str) and ((section, key) not in _HUB_OR_PATH or _is_local(item, base)):
                item = str((base / Path(item).expanduser()).resolve())
            resolved.append(item)
        values[key] = resolved if isinstance(value, list) else resolved[0]


def check_inputs(recipe: Recipe) -> None:
    """Everything a recipe names exists, and its device is there: checked before any model or data loads."""
    src = recipe.source
    device = recipe.target.device
    if device is not None and torch.device(device).type == "cuda" and not torch.cuda.is_available():
        why = "this torch build has no CUDA" if torch.version.cuda is None else "no CUDA device is visible"
        raise RecipeError(f"{src}: target.device is {device!r}, but {why}; set target.device: cpu "
                          f"(or install a CUDA build of torch)")
    if recipe.target.device_map is not None and importlib.util.find_spec("accelerate") is None:
        raise RecipeError(f"{src}: target.device_map needs accelerate, which is not installed; "
                          f"pip install 'draftsmith[sharded]'")
    if recipe.data.features is not None:
        if not Path(recipe.data.features).is_dir():
            raise RecipeError(f"{src}: data.features: no such directory {recipe.data.features}")
    else:
        for key in ("train", "validation"):
            for name in getattr(recipe.data, key):
                if not Path(name).is_file():
                    raise RecipeError(f"{src}: data.{key}: no such file {name}")
        base = Path.cwd()
        for key, value in (("target.path", recipe.target.path), ("data.tokenizer", recipe.data.tokenizer)):
            if value is not None and _is_local(value, base) and not Path(value).expanduser().is_dir():
                raise RecipeError(f"{src}: {key}: no such target directory {value}")
    init_from = recipe.draft.init_from
    if init_from is not None and _is_local(init_from, Path.cwd()) and not Path(init_from).expanduser().is_dir():
        raise RecipeError(f"{src}: draft.init_from: no such draft directory {init_from}")


def _apply_override(raw: dict[str, Any], assignment: str) -> None:
    key, sep, text = assignment.partition("=")
    parts = key.strip().split(".")
    if not sep or len(parts) != 2 or not all(parts):
        raise RecipeError(f"--set {assignment!r}: expected section.key=value, e.g. training.learning_rate=3e-4")
    section, name = parts
    if section not in {f.name for f in dataclasses.fields(Recipe)} - {"source"}:
        raise RecipeError(f"--set {assignment!r}: unknown section '{section}'")
    raw.setdefault(section, {})
    if raw[section] is None:
        raw[section] = {}
    raw[section][name] = yaml.safe_load(text) if text.strip() else None


def recipe_from_dict(raw: dict[str, Any], source: str = "<recipe>", overrides: list[str] = ()) -> Recipe:
    raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in (raw or {}).items()}
    for assignment in overrides:
        _apply_override(raw, assignment)
    sections = {f.name: f.type for f in dataclasses.fields(Recipe) if f.name != "source"}
    unknown = sorted(set(raw) - set(sections))
    if unknown:
        raise RecipeError(f"{source}: unknown section(s) {unknown}; a recipe has {', '.join(sections)}")
    hints = typing.get_type_hints(Recipe)
    built = {name: _section(hints[name], raw.get(name), name, source) for name in sections}
    return _validate(Recipe(**built, source=source))


def load_recipe(path: str | os.PathLike, overrides: list[str] = ()) -> Recipe:
    """Read and validate a YAML recipe (paths inside it are relative to the recipe file)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: recipe not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise RecipeError(f"{path}: not valid YAML ({error})") from error
    if not isinstance(raw, dict):
        raise RecipeError(f"{path}: a recipe is a mapping of sections, got {type(raw).__name__}")
    raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    _resolve_paths(raw, path.resolve().parent)
    return recipe_from_dict(raw, str(path), overrides)
