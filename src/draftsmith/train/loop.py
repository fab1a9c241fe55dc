"""The training run: one recipe in, one engine-ready draft out, resumable at every checkpoint.

``train(recipe, resume=False)`` validates the output directory before loading anything,
builds the samples, vocabulary, draft and supervision source (the live target, or
offline features), then runs AdamW with warmup + cosine decay, gradient accumulation and
clipping over the TTT objective. Metrics go to ``metrics.jsonl`` (and TensorBoard when
asked); checkpoints to ``checkpoints/step-N``; the final draft to ``draft/`` in the
layout SGLang and vLLM load.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from draftsmith.atomic import atomic_file
from draftsmith.checkpoint.layout import save_draft
from draftsmith.data import Sample, StoreView
from draftsmith.data.fingerprint import samples_fingerprint
from draftsmith.evaluate.card import TrainedDraftFacts, evaluate_after_training, write_model_card
from draftsmith.model.config import validate_aux_layer_ids
from draftsmith.model.draft import Eagle3Draft
from draftsmith.target.capture import draft_token_ids_from_d2t
from draftsmith.target.registry import load_target_config
from draftsmith.train.batches import budget_batches, epoch_order, evaluation_batches, rank_micro_batches, rank_token_batches
from draftsmith.train.distributed import DistContext, init_distributed, shutdown
from draftsmith.train.features import FeatureSet, check_manifest, read_manifest, vocab_fingerprint
from draftsmith.train.loader import load_batches
from draftsmith.train.objective import StepStats, TokenBatch, step_weights, trained_counts, ttt_objective
from draftsmith.train.recipe import Recipe, RecipeError, check_inputs
from draftsmith.train.setup import (build_run_draft, build_samples, copy_target_embedding, load_target, load_tokenizer,
                                    load_warm_start, vocab_mapping)
from draftsmith.train.state import (Progress, check_resumable, list_checkpoints, load_training_state,
                                    remove_stale_staging, save_training_state)
from draftsmith.vocab_mapping import capped_draft_vocab_size

log = logging.getLogger(__name__)


class TTTModule(nn.Module):
    """The draft with the TTT objective as its forward, so DDP can wrap it."""

    def __init__(self, draft: Eagle3Draft, steps: int, decay: float, context: DistContext):
        super().__init__()
        self.draft, self.steps, self.decay, self.context = draft, steps, decay, context

    def forward(self, batch: TokenBatch, supervision, counts: torch.Tensor) -> tuple[torch.Tensor, StepStats]:
        return ttt_objective(self.draft, batch, supervision, self.steps, self.decay, counts=counts,
                             world_size=self.context.world_size)


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run: how far it got, so the command can say how to continue."""

    def __init__(self, step: int, last_checkpoint: int | None):
        super().__init__(step)
        self.step, self.last_checkpoint = step, last_checkpoint


def cosine_schedule(total_steps: int, warmup_steps: int, floor: float):
    """Linear warmup to 1, then cosine decay to ``floor`` at ``total_steps``."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    return factor


_RUN_FILES = {"metrics.jsonl", "checkpoints", "tensorboard"}  # what a run writes before its first checkpoint


def check_output_dir(output_dir: Path, resume: bool) -> Path | None:
    """The checkpoint to resume from, or None for a run from step 0.

    ``--resume`` on a run stopped before its first checkpoint starts it again from step 0
    (its partial metrics are dropped), so an early Ctrl-C is never a dead end.
    """
    if resume:
        checkpoints = list_checkpoints(output_dir)
        if checkpoints:
            return checkpoints[-1]
        foreign = sorted(set(p.name for p in output_dir.iterdir()) - _RUN_FILES) if output_dir.is_dir() else []
        if foreign:
            raise FileNotFoundError(f"{output_dir}: no checkpoint to resume from (checkpoints/step-*), and it holds "
                                    f"files a run does not write ({', '.join(foreign[:3])})")
        log.warning("%s has no checkpoint yet; starting the run again from step 0", output_dir)
        return None
    if output_dir.exists() and any(output_dir.iterdir()):
        raise FileExistsError(f"{output_dir} is not empty; pass --resume to continue that run, or choose another "
                              f"training.output_dir")
    return None


def adamw(draft: nn.Module, learning_rate: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only: norms and other 1-D parameters are not decayed.

    Decaying an RMSNorm gain pulls it toward 0, i.e. toward switching the layer's input
    off; it is a scale, not a weight that overfits (the rule nanoGPT and most LLM trainers
    follow). The fused kernel (CPU and CUDA in torch >= 2.4) did the update in 1/5.5 of the
    default's time on a 2-core CPU (benchmarks/ttt_step.py).
    """
    params = [p for p in draft.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=learning_rate, fused=True)


class Supervisor:
    """Supervision for a batch: from the live target, or from offline features by sample index."""

    def __init__(self, target=None, draft_token_ids=None, features: FeatureSet | None = None):
        self.target, self.draft_token_ids, self.features = target, draft_token_ids, features

    def __call__(self, batch: TokenBatch, indices: list[int]):
        if self.features is not None:
            return self.features.supervision(indices, batch.input_ids.shape[1])
        return self.target(batch.input_ids, self.draft_token_ids, self.target.document_attention(batch.document_ids),
                           batch.position_ids)


class Trainer:
    def __init__(self, recipe: Recipe, resume: bool = False, progress: bool = True):
        self.recipe, self.cfg = recipe, recipe.training
        self.output_dir = Path(self.cfg.output_dir)
        self.resume_from = check_output_dir(self.output_dir, resume)
        check_inputs(recipe)
        if recipe.target.device_map is not None and recipe.data.features is None:
            raise RecipeError(f"{recipe.source}: target.device_map is for `draftsmith prepare`, which spreads the "
                              f"target over one node's GPUs; train from the features it writes (data.features)")
        if self.cfg.tensorboard:
            _require_tensorboard()  # on every rank, before any collective can wait for a failed rank 0
        self.context = init_distributed(recipe.target.device)
        if self.resume_from is not None:  # a changed recipe is refused before anything loads
            check_resumable(self.resume_from, {"recipe": _determining_settings(recipe),
                                               "world_size": self.context.world_size}, only=("recipe", "world_size"))
        self.progress_bars = progress and self.context.is_main
        torch.manual_seed(self.cfg.seed)
        self._build()

    def _build(self) -> None:
        recipe, device = self.recipe, self.context.device
        if recipe.data.features is not None:  # the manifest is checked before anything is loaded
            self._check_manifest(read_manifest(recipe.data.features))
        warm = load_warm_start(recipe)
        if recipe.data.features is not None:
            self._build_offline(warm)
        else:
            target_config = load_target_config(recipe.target.path)
            self.draft = build_run_draft(recipe, target_config, warm)  # aux ids checked before the data pass
            tokenizer = load_tokenizer(recipe)
            self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
            data = build_samples(recipe, tokenizer, self.progress_bars, self.context)
            self.train_samples, self.val_samples = data.train, data.validation
            d2t, t2d = vocab_mapping(recipe, tokenizer, target_config.vocab_size, warm, self.progress_bars,
                                     data.train_store)
            self.draft.set_vocab_mapping(d2t, t2d)
            target = load_target(recipe, self.draft, device)
            copy_target_embedding(self.draft, target.model.get_input_embeddings().weight.detach())
            draft_ids = draft_token_ids_from_d2t(self.draft.d2t).to(device)
            self.train_supervisor = self.val_supervisor = Supervisor(target, draft_ids)
        self.draft.to(device).train()
        self.draft.gradient_checkpointing = self.cfg.gradient_checkpointing
        self.module = TTTModule(self.draft, self.cfg.ttt_steps, self.cfg.step_decay, self.context)
        if self.context.enabled:
            # d2t/t2d never change, so there are no buffers to broadcast before each forward.
            self.module = nn.parallel.DistributedDataParallel(
                self.module, device_ids=[device.index] if device.type == "cuda" else None, broadcast_buffers=False)
        self.optimizer = adamw(self.draft, self.cfg.learning_rate, self.cfg.weight_decay)
        self.lengths = _lengths(self.train_samples)
        self.total_steps = self.cfg.max_steps or sum(
            len(self._epoch_batches(epoch)) // self.cfg.gradient_accumulation for epoch in range(self.cfg.epochs))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, cosine_schedule(self.total_steps, self.cfg.warmup_steps, self.cfg.min_learning_rate_ratio))
        self.progress = Progress()
        self.run_description = {
            "recipe": _determining_settings(self.recipe), "world_size": self.context.world_size,
            "data_fingerprint": _fingerprint(self.train_samples, self.val_samples),
            "vocab_fingerprint": vocab_fingerprint(self.draft.d2t),
        }
        if self.resume_from is not None:
            check_resumable(self.resume_from, self.run_description)
            remove_stale_staging(self.output_dir)
            self.progress = load_training_state(self.resume_from, self.draft, self.optimizer, self.scheduler)
            log.info("resumed from %s at step %d", self.resume_from, self.progress.step)

    def _check_manifest(self, manifest: dict[str, Any]) -> None:
        """What the recipe alone determines; the warm start's vocabulary is checked once it is loaded."""
        recipe = self.recipe
        source = str(Path(recipe.data.features) / "manifest.json")
        check_manifest(manifest, {
            "target_path": recipe.target.path, "max_length": recipe.data.max_length, "pack": recipe.data.pack,
            "supervise": recipe.data.supervise,
            "draft_vocab_size": None if recipe.draft.init_from else capped_draft_vocab_size(
                recipe.draft.draft_vocab_size, manifest["target_config"]["vocab_size"]),
            "aux_layer_ids": list(validate_aux_layer_ids(recipe.draft.aux_layer_ids, None))
            if recipe.draft.aux_layer_ids else None,
        }, source)

    def _build_offline(self, warm: Eagle3Draft | None) -> None:
        recipe, device = self.recipe, self.context.device
        self.features = FeatureSet(recipe.data.features, "train", device)
        manifest, source = self.features.manifest, str(Path(recipe.data.features) / "manifest.json")
        if warm is not None:
            check_manifest(manifest, {"vocab_fingerprint": vocab_fingerprint(warm.d2t)}, source)
        self.pad_id = manifest["pad_token_id"]
        self.train_samples = self.features.samples()
        validation = FeatureSet(recipe.data.features, "validation", device)
        self.val_samples = validation.samples()
        self.draft = build_run_draft(recipe, manifest["target_config"], warm)
        check_manifest(manifest, {"aux_layer_ids": list(self.draft.config.aux_layer_ids),
                                  "target_hidden_size": self.draft.config.target_hidden_size}, source)
        self.draft.set_vocab_mapping(self.features.d2t, self.features.t2d.cpu())
        copy_target_embedding(self.draft, self.features.embed_tokens)
        self.train_supervisor, self.val_supervisor = Supervisor(features=self.features), Supervisor(
            features=validation)

    def _autocast(self):
        device = self.context.device
        if device.type == "cuda" and self.cfg.bf16:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _epoch_batches(self, epoch: int) -> list[list[int]]:
        """This rank's micro-batches of ``epoch``: by sample count, or by token budget."""
        cfg, ctx = self.cfg, self.context
        if cfg.max_tokens is not None:
            return rank_token_batches(self.lengths, cfg.seed, epoch, cfg.max_tokens, ctx.world_size, ctx.rank,
                                      cfg.gradient_accumulation)
        return rank_micro_batches(epoch_order(len(self.train_samples), cfg.seed, epoch), cfg.micro_batch_size,
                                  ctx.world_size, ctx.rank, cfg.gradient_accumulation)

    def _supervised(self, loaded: tuple[list[int], TokenBatch], supervisor):
        indices, batch = loaded
        batch = batch.to(self.context.device)
        return batch, supervisor(batch, indices)

    def evaluate(self) -> dict[str, float]:
        """τ_sim and per-depth agreement on the validation set (all ranks, summed at the end).

        Ranks may hold different numbers of validation batches, so nothing here may issue a
        collective per batch: the objective runs without DDP and without global counts.
        """
        if not self.val_samples:
            return {}
        self.draft.eval()
        total = StepStats.zeros(self.cfg.ttt_steps, self.context.device)
        ctx = self.context
        if self.cfg.max_tokens is not None:
            batches = budget_batches(range(ctx.rank, len(self.val_samples), ctx.world_size),
                                     _lengths(self.val_samples), self.cfg.max_tokens)
        else:
            batches = evaluation_batches(len(self.val_samples), self.cfg.micro_batch_size, ctx.world_size, ctx.rank)
        for loaded in load_batches(self.val_samples, batches, self.pad_id, self.cfg.dataloader_workers):
            batch, supervision = self._supervised(loaded, self.val_supervisor)
            with self._autocast(), torch.no_grad():
                total = total + ttt_objective(self.draft, batch, supervision, self.cfg.ttt_steps,
                                              self.cfg.step_decay)[1]
        self.draft.train()
        return StepStats.from_flat(self.context.all_reduce_sum(total.flat())).summary()

    def run(self) -> Path:
        cfg, ctx, progress = self.cfg, self.context, self.progress
        writer = _MetricsWriter(self.output_dir, cfg.tensorboard, progress.step) if ctx.is_main else None
        bar = tqdm(total=self.total_steps, initial=progress.step, desc="training", unit="step",
                   disable=not self.progress_bars)
        window, window_tokens, window_start = None, 0, time.perf_counter()
        try:
            while progress.step < self.total_steps:
                batches = self._epoch_batches(progress.epoch)
                loader = load_batches(self.train_samples, batches[progress.batches_in_epoch:], self.pad_id,
                                      cfg.dataloader_workers)
                while progress.batches_in_epoch < len(batches) and progress.step < self.total_steps:
                    group = [next(loader) for _ in range(cfg.gradient_accumulation)]
                    stats, tokens = self._optimizer_step(group)
                    progress.batches_in_epoch += len(group)
                    progress.tokens_seen += tokens
                    window = stats if window is None else window + stats
                    window_tokens += tokens
                    bar.update(1)
                    if progress.step % cfg.log_every == 0 or progress.step == self.total_steps:
                        elapsed = time.perf_counter() - window_start
                        metrics = self._window_metrics(window, window_tokens, elapsed)
                        if writer:
                            writer.write("train", progress.step, metrics)
                            if not self.progress_bars:
                                log.info("step %d/%d: loss %.4f, tau_sim %.2f, %.0f tokens/s, lr %.2e",
                                         progress.step, self.total_steps, metrics["loss"], metrics["tau_sim"],
                                         metrics["tokens_per_s"], metrics["lr"])
                        bar.set_postfix(loss=f"{metrics['loss']:.3f}", tau=f"{metrics['tau_sim']:.2f}")
                        window, window_tokens, window_start = None, 0, time.perf_counter()
                    if cfg.eval_every and progress.step % cfg.eval_every == 0 and progress.step < self.total_steps:
                        self._validate(writer)
                    if progress.step % cfg.save_every == 0 and progress.step < self.total_steps:
                        self._save()
                if progress.batches_in_epoch >= len(batches):
                    progress.epoch, progress.batches_in_epoch = progress.epoch + 1, 0
            bar.close()
            self._validate(writer)
            self._save()
            final = self.output_dir / "draft"
            if ctx.is_main:
                save_draft(self.draft, final, overwrite=True)
                self._finish_draft(final)
            ctx.barrier()
            return final
        finally:
            if writer:
                writer.close()
            shutdown(ctx)

    def _optimizer_step(self, group: list[tuple[list[int], TokenBatch]]) -> tuple[StepStats, int]:
        """One optimizer step over a group of micro-batches.

        Every loss term is divided by the trained-slot count of the whole group on all
        ranks, so micro-batch 4 x accumulation 2 takes the same step as 8 x 1. That needs
        the counts before the first backward, hence the group's supervision (target
        outputs) is gathered first and held until its micro-batch has run.
        """
        micro = [self._supervised(loaded, self.train_supervisor) for loaded in group]
        counts = self.context.all_reduce_sum(sum(trained_counts(b, s, self.cfg.ttt_steps) for b, s in micro))
        total, tokens = None, 0
        for k in range(len(micro)):
            batch, supervision = micro[k]
            micro[k] = None  # free each micro-batch's supervision once it has been used
            last = k == len(group) - 1
            sync = contextlib.nullcontext() if last or not self.context.enabled else self.module.no_sync()
            with sync:
                with self._autocast():
                    loss, stats = self.module(batch, supervision, counts)
                loss.backward()
            total, tokens = (stats if total is None else total + stats), tokens + batch.real_tokens
        params = [p for p in self.draft.parameters() if p.requires_grad]
        self.grad_norm = float(torch.nn.utils.clip_grad_norm_(params, self.cfg.max_grad_norm))
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.progress.step += 1
        return total, tokens

    def _window_metrics(self, window: StepStats, tokens: int, elapsed: float) -> dict[str, float]:
        sums = window.flat()
        flat = self.context.all_reduce_sum(torch.cat([sums, sums.new_tensor([float(tokens)])]))
        summary = StepStats.from_flat(flat[:-1]).summary()
        tokens = flat[-1].item()
        weights = step_weights(self.cfg.ttt_steps, self.cfg.step_decay).tolist()
        summary["loss"] = sum(w * summary[f"loss_{j}"] for j, w in enumerate(weights))
        summary.update(tokens_per_s=tokens / max(elapsed, 1e-9),
                       lr=self.scheduler.get_last_lr()[0], grad_norm=self.grad_norm)
        return summary

    def _finish_draft(self, final: Path) -> None:
        """Real τ on held-out prompts (``eval.json``, with the live target only) and the model card."""
        settings, target = self.recipe.evaluation, self.train_supervisor.target
        tau_real = None
        if target is not None and settings.prompts and self.val_samples:
            report = evaluate_after_training(target.model, final, self.val_samples, settings.prompts,
                                             settings.max_new_tokens, self.cfg.ttt_steps,
                                             self.output_dir / "eval.json", self.progress_bars)
            tau_real = report["drafts"][0]["overall"]["tau"]
            log.info("real τ %s over %d held-out prompts (eval.json), τ_sim %s", tau_real,
                     report["prompts"]["evaluated"], self.validation.get("tau_sim"))
        target_path = self.recipe.target.path or self.features.manifest["target_path"]
        write_model_card(final, TrainedDraftFacts(target_path, self.recipe.data.train, self.cfg.ttt_steps,
                                                  self.validation.get("tau_sim"), tau_real))

    def _validate(self, writer) -> None:
        metrics = self.validation = self.evaluate()
        if metrics and writer:
            writer.write("validation", self.progress.step, metrics)

    def _save(self) -> None:
        if self.context.is_main:
            save_training_state(self.output_dir, self.draft, self.optimizer, self.scheduler, self.progress,
                                self.run_description, self.cfg.keep_last)
        self.context.barrier()


# Settings that may change between an interrupted run and its resume: they do not alter the weights.
_COSMETIC = {"target": ("device", "logits_chunk"), "evaluation": ("prompts", "max_new_tokens"),
             "data": ("cache_dir", "num_workers"),
             "training": ("output_dir", "log_every", "eval_every", "save_every", "keep_last", "tensorboard",
                          "dataloader_workers")}


def _determining_settings(recipe: Recipe) -> dict[str, Any]:
    settings = recipe.to_dict()
    for section, keys in _COSMETIC.items():
        for key in keys:
            settings[section].pop(key)
    return settings


def _require_tensorboard() -> None:
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError as error:
        raise ValueError("training.tensorboard needs `pip install draftsmith[tensorboard]`") from error


class _MetricsWriter:
    """Metrics as JSON lines (always) and TensorBoard scalars (when installed and asked for)."""

    def __init__(self, output_dir: Path, tensorboard: bool, step: int):
        """Append to ``metrics.jsonl`` after dropping the lines of steps past ``step`` (where a resume restarts)."""
        output_dir.mkdir(parents=True, exist_ok=True)
        path = output_dir / "metrics.jsonl"
        if path.exists():
            kept = [line for line in path.read_text().splitlines(keepends=True)
                    if line.strip() and json.loads(line)["step"] <= step]
            with atomic_file(path, overwrite=True) as staging:
                staging.write_text("".join(kept))
        self.file = open(path, "a")
        self.tensorboard = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tensorboard = SummaryWriter(output_dir / "tensorboard")

    def write(self, split: str, step: int, metrics: dict[str, Any]) -> None:
        self.file.write(json.dumps({"split": split, "step": step, **metrics}) + "\n")
        self.file.flush()
        if self.tensorboard:
            for name, value in metrics.items():
                self.tensorboard.add_scalar(f"{split}/{name}", value, step)

    def close(self) -> None:
        self.file.close()
        if self.tensorboard:
            self.tensorboard.close()


def _lengths(samples: Sequence[Sample]) -> Sequence[int]:
    """Tokens per sample: a store view's from its offsets, without reading the samples."""
    return samples.lengths if isinstance(samples, StoreView) else [len(s) for s in samples]


def _fingerprint(train_samples: Sequence[Sample], val_samples: Sequence[Sample]) -> str:
    """What a resumed run must see again: a store view's layout and content digest, or the samples' values."""
    if isinstance(train_samples, StoreView):
        return f"{train_samples.fingerprint()}+{val_samples.fingerprint()}"
    return samples_fingerprint(list(train_samples) + list(val_samples))


def train(recipe: Recipe, resume: bool = False, progress: bool = True) -> Path:
    """Run a recipe to completion; returns the directory of the exported draft.

    Ctrl-C raises :class:`TrainingInterrupted` (a ``KeyboardInterrupt``) carrying the steps
    done and the last checkpoint; ``resume=True`` continues from that checkpoint.
    """
    trainer = None
    try:
        trainer = Trainer(recipe, resume=resume, progress=progress)
        return trainer.run()
    except KeyboardInterrupt:
        step = trainer.progress.step if trainer is not None else 0
        checkpoints = list_checkpoints(recipe.training.output_dir)
        last = int(checkpoints[-1].name.removeprefix("step-")) if checkpoints else None
        raise TrainingInterrupted(step, last) from None
