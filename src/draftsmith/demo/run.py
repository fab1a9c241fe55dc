"""``draftsmith demo``: the whole product on the shipped tiny gpt-oss, on a CPU, in minutes.

Trains an EAGLE-3 draft for the shipped target (``assets/target``) on the shipped harmony
chats, exports it (engine layout for SGLang and vLLM, plus vLLM's speculators layout),
inspects it against the target, and measures it by real speculative decoding on the
held-out validation prompts: τ overall, per depth and by context position, with a plot.
Everything lands in one directory, written atomically: a second run refuses an existing
output unless told to replace it.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from draftsmith.atomic import atomic_directory
from draftsmith.checkpoint.layout import load_draft
from draftsmith.inspect import inspect_checkpoint, report_lines
from draftsmith.checkpoint.serve import serve_commands
from draftsmith.checkpoint.speculators import export_speculators
from draftsmith.evaluate import EvalSettings, evaluate, format_table, write_json, write_plot
from draftsmith.evaluate.report import plot_available
from draftsmith.train.loop import train
from draftsmith.train.recipe import Recipe, recipe_from_dict

DEFAULT_OUT = "draftsmith-demo"
VERIFIER = "draftsmith/tiny-gpt-oss"  # the name the speculators export gives vLLM for the target


def assets() -> Path:
    """The shipped target and chat data (package data, so ``pip install`` users have them too)."""
    return Path(str(resources.files("draftsmith.demo") / "assets"))


@dataclass(frozen=True)
class DemoSettings:
    """How much the demo trains and measures; :data:`FULL` is the default, :data:`QUICK` keeps tests short."""

    train_steps: int = 150
    micro_batch_size: int = 4
    max_length: int = 512
    learning_rate: float = 3e-3
    draft_vocab_size: int = 1024
    ttt_steps: int = 7
    prompts: int = 4
    max_new_tokens: int = 64
    contexts: tuple[int, ...] = (0, 2048, 4096, 7936)
    chats: int | None = None  # use only the first N train chats (None: all)
    validation_chats: int | None = 48  # validation chats for tau_sim and the evaluation's prompts and contexts
    seed: int = 0  # the draft's initialization and data order; another seed measures run-to-run noise
    overrides: dict[str, Any] = field(default_factory=dict)


FULL = DemoSettings()
QUICK = DemoSettings(train_steps=2, micro_batch_size=2, max_length=128, draft_vocab_size=256, ttt_steps=3,
                     prompts=2, max_new_tokens=8, contexts=(0, 600), chats=8, validation_chats=8)


def chat_files(directory: Path, settings: DemoSettings) -> dict[str, Path]:
    """The shipped train / validation chats, or as many of their first lines as asked, copied under ``directory``."""
    files = {name: assets() / f"{name}.jsonl" for name in ("train", "validation")}
    counts = {"train": settings.chats, "validation": settings.validation_chats}
    for name, path in files.items():
        if counts[name] is None:
            continue
        (directory / "data").mkdir(parents=True, exist_ok=True)
        lines = path.read_text().splitlines(keepends=True)[: counts[name]]
        files[name] = directory / "data" / path.name
        files[name].write_text("".join(lines))
    return files


def demo_recipe(directory: Path, settings: DemoSettings) -> Recipe:
    """The draft recipe the demo trains (``examples/tiny-gpt-oss.yaml`` is the same for ``draftsmith train``)."""
    files = chat_files(directory, settings)
    raw = {
        "target": {"path": str(assets() / "target"), "dtype": "float32", "device": "cpu"},
        "data": {"train": [str(files["train"])], "validation": [str(files["validation"])],
                 "max_length": settings.max_length},
        "draft": {"draft_vocab_size": settings.draft_vocab_size, "vocab_file": str(directory / "vocab.safetensors")},
        "training": {"output_dir": str(directory / "run"), "ttt_steps": settings.ttt_steps,
                     "max_steps": settings.train_steps, "micro_batch_size": settings.micro_batch_size,
                     "learning_rate": settings.learning_rate, "warmup_steps": max(1, settings.train_steps // 20),
                     "min_learning_rate_ratio": 0.1, "bf16": False, "log_every": 10,
                     "save_every": 10 * settings.train_steps, "seed": settings.seed},
        "evaluation": {"prompts": 0},  # the demo measures the draft itself, at every context position
    }
    for dotted, value in settings.overrides.items():
        section, key = dotted.split(".")
        raw[section][key] = value
    return recipe_from_dict(raw, source="draftsmith demo")


@dataclass
class DemoResult:
    directory: Path
    draft: Path
    speculators: Path
    findings: list[str]  # inspect's lines: its findings, then one verdict per engine
    tau_sim: float | None
    evaluation: dict[str, Any]
    seconds: dict[str, float]


def _last_validation(metrics: Path) -> dict[str, Any]:
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    validation = [r for r in rows if r.get("split") == "validation"]
    return validation[-1] if validation else {}


def run_demo(out: str | os.PathLike = DEFAULT_OUT, *, settings: DemoSettings = FULL, overwrite: bool = False,
             progress: bool = True) -> DemoResult:
    """Train, export, inspect and evaluate a draft for the shipped target; everything under ``out``."""
    out = Path(out)
    seconds: dict[str, float] = {}
    started = time.time()
    with atomic_directory(out, overwrite=overwrite) as staging:
        final = train(demo_recipe(staging, settings), progress=progress)
        seconds["train"] = time.time() - started
        tau_sim = _last_validation(staging / "run" / "metrics.jsonl").get("tau_sim")
        draft = load_draft(final)
        export_speculators(draft, staging / "draft-speculators", verifier=VERIFIER)
        findings = report_lines(inspect_checkpoint(final, target=assets() / "target"))
        mark = time.time()
        evaluation = evaluate_demo(staging, final, settings, progress)
        seconds["evaluate"] = time.time() - mark
        seconds["total"] = time.time() - started
        (staging / "summary.json").write_text(json.dumps(
            {"tau_sim": tau_sim, "findings": findings, "seconds": seconds,
             "tau": evaluation["drafts"][0]["overall"]["tau"]}, indent=1) + "\n")
    return DemoResult(out, out / "run" / "draft", out / "draft-speculators", findings, tau_sim,
                      evaluation, seconds)


def eval_settings(settings: DemoSettings, progress: bool, **extra: Any) -> EvalSettings:
    return EvalSettings(steps=settings.ttt_steps, max_new_tokens=settings.max_new_tokens,
                        contexts=settings.contexts, progress=progress, **extra)


def evaluate_demo(directory: Path, draft: Path, settings: DemoSettings, progress: bool) -> dict[str, Any]:
    """Greedy speculative decoding on the validation prompts at every context position: eval.json, eval.png."""
    report = evaluate(assets() / "target", [draft], [str(chat_files(directory, settings)["validation"])],
                      eval_settings(settings, progress), max_prompts=settings.prompts)
    report["drafts"][0]["name"] = "demo draft"
    write_json(report, directory / "eval.json")
    if plot_available():
        write_plot(report, directory / "eval.png")
    return report


def summary_text(result: DemoResult) -> str:
    """What the command prints: τ, speedup, where the files are, how to serve such a draft."""
    overall = result.evaluation["drafts"][0]["overall"]
    tau_sim = "-" if result.tau_sim is None else f"{result.tau_sim:.2f}"
    speedup = "-" if overall["speedup"] is None else f"{overall['speedup']:.2f}x"
    lines = [format_table(result.evaluation), "",
             f"real tau = {overall['tau']:.2f} at {result.evaluation['drafts'][0]['steps']} drafted tokens per round "
             f"(teacher-forced tau_sim = {tau_sim}); speedup over plain decoding on this CPU: {speedup}",
             f"draft trained in {result.seconds['train']:.0f} s, evaluated in {result.seconds['evaluate']:.0f} s; "
             f"{result.seconds['total']:.0f} s in all",
             "inspect: " + "; ".join(result.findings)]
    lines += [f"engine layout (SGLang, vLLM): {result.draft}",
              f"speculators layout (vLLM):    {result.speculators}",
              f"report and plot:              {result.directory / 'eval.json'}, {result.directory / 'eval.png'}",
              "serve a draft like this one next to its target:"]
    steps = result.evaluation["drafts"][0]["steps"]
    lines += [f"  {command}" for command in serve_commands("TARGET", result.draft, steps).values()]
    return "\n".join(lines)
