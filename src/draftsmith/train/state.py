"""Training checkpoints that resume exactly.

A checkpoint holds everything the next optimizer step depends on: draft weights,
optimizer and scheduler state, every RNG, and the data position (epoch and batches
consumed). The weights are stored as a draft in the engine layout (``config.json`` +
``model.safetensors``, without the frozen embedding, which the engines take from the
target), so ``draftsmith inspect`` and ``draftsmith export`` read a mid-run checkpoint
as they read a finished draft. It is written to a hidden staging directory and renamed into place, so a
run killed mid-save leaves the previous checkpoint as the latest complete one. Only
the last ``keep_last`` are kept.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from draftsmith.atomic import atomic_directory
from draftsmith.checkpoint.layout import CONFIG_NAME, WEIGHTS_NAME, engine_config

CHECKPOINT_PATTERN = re.compile(r"^step-(\d{8})$")
STATE_FILE = "trainer_state.json"
RUN_FILE = "run.json"
# The frozen copy of the target's embedding is restored from the target, not stored (2.3 GB for gpt-oss).
FROZEN = ("embed_tokens.weight",)


class ResumeMismatchError(ValueError):
    """Resuming with a recipe, data or world size that differs from the interrupted run."""


@dataclass
class Progress:
    """Where training stands: optimizer steps taken and the data position."""

    step: int = 0
    epoch: int = 0
    batches_in_epoch: int = 0  # micro-batches of this epoch already consumed
    tokens_seen: int = 0


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}"


def list_checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints, oldest first (staging directories are hidden and never match)."""
    root = Path(output_dir) / "checkpoints"
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if CHECKPOINT_PATTERN.match(p.name) and (p / STATE_FILE).is_file())


def rng_state() -> dict[str, Any]:
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_training_state(
    output_dir: str | os.PathLike,
    draft: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    progress: Progress,
    run: dict[str, Any],
    keep_last: int,
) -> Path:
    """Write ``checkpoints/step-N`` atomically and prune all but the newest ``keep_last``.

    ``run`` describes what the run depends on (recipe, data and vocabulary fingerprints,
    world size); a resume must match it.
    """
    target = Path(output_dir) / "checkpoints" / checkpoint_name(progress.step)
    weights = {k: v.detach().contiguous().cpu() for k, v in draft.state_dict().items() if k not in FROZEN}
    with atomic_directory(target, overwrite=True) as staging:
        save_file(weights, staging / WEIGHTS_NAME, metadata={"format": "pt"})
        (staging / CONFIG_NAME).write_text(json.dumps(engine_config(draft.config, draft.fc.weight.dtype), indent=2)
                                           + "\n")
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng_state()},
                   staging / "optimizer.pt")
        (staging / RUN_FILE).write_text(json.dumps(run, indent=2) + "\n")
        (staging / STATE_FILE).write_text(json.dumps(asdict(progress), indent=2) + "\n")
    for old in list_checkpoints(output_dir)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def check_resumable(checkpoint: str | os.PathLike, run: dict[str, Any], only: tuple[str, ...] | None = None) -> None:
    """Refuse to resume when anything the run depends on changed since the checkpoint.

    ``only`` compares just those keys of ``run`` (the recipe and world size are known before
    any data renders, the data fingerprints only after).
    """
    saved = json.loads((Path(checkpoint) / RUN_FILE).read_text())
    if only is not None:
        saved, run = {k: saved.get(k) for k in only}, {k: run.get(k) for k in only}
    changed = sorted(_differences(saved, run))
    if changed:
        raise ResumeMismatchError(
            f"{checkpoint} was written by a run with different {', '.join(changed)}; resuming would not continue "
            f"it exactly (start a new output_dir, or restore the original recipe and data)"
        )


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        return [d for key in set(old) | set(new)
                for d in _differences(old.get(key), new.get(key), f"{prefix}{key}.")]
    return [] if old == new else [prefix.rstrip(".")]


def load_training_state(
    checkpoint: str | os.PathLike,
    draft: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> Progress:
    """Restore a checkpoint written by :func:`save_training_state` into live objects."""
    checkpoint = Path(checkpoint)
    missing, unexpected = draft.load_state_dict(load_file(checkpoint / WEIGHTS_NAME), strict=False)
    if unexpected or set(missing) - set(FROZEN):
        raise ValueError(f"{checkpoint}: draft weights do not fit this draft (missing {sorted(missing)}, "
                         f"unexpected {sorted(unexpected)})")
    extra = torch.load(checkpoint / "optimizer.pt", map_location="cpu", weights_only=True)
    optimizer.load_state_dict(extra["optimizer"])
    scheduler.load_state_dict(extra["scheduler"])
    set_rng_state(extra["rng"])
    return Progress(**json.loads((checkpoint / STATE_FILE).read_text()))


def remove_stale_staging(output_dir: str | os.PathLike) -> None:
    """Delete the half-written staging directories a killed save leaves behind (never a complete checkpoint)."""
    root = Path(output_dir) / "checkpoints"
    for stale in root.glob(".step-*.tmp-*") if root.is_dir() else ():
        shutil.rmtree(stale, ignore_errors=True)
