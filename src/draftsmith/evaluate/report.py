"""Turning decoded prompts into the evaluation report: τ, acceptance by depth, by context, speed.

τ counts tokens committed per target verification forward, the bonus token included
(the prefill's first token is not a verification). Acceptance at depth j is the share of
rounds that accepted depth j among the rounds that reached it (depth 1 is always reached;
depth j when depths 1..j-1 were accepted and j drafts were made).
"""

from __future__ import annotations

import io
import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

from draftsmith.atomic import atomic_write
from draftsmith.evaluate.decoding import Generation
from draftsmith.evaluate.prompts import Prompt


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def by_depth(generations: list[Generation], steps: int) -> list[dict[str, Any]]:
    reached, accepted = [0] * steps, [0] * steps
    for g in generations:
        for got, drafted in zip(g.accepted, g.drafted):
            for j in range(min(got + 1, drafted)):
                reached[j] += 1
            for j in range(got):
                accepted[j] += 1
    return [{"depth": j + 1, "reached": reached[j], "accepted": accepted[j], "rate": _ratio(accepted[j], reached[j])}
            for j in range(steps)]


def _totals(generations: list[Generation]) -> dict[str, Any]:
    rounds = sum(g.rounds for g in generations)
    committed = sum(g.committed for g in generations)
    return {"tau": _ratio(committed, rounds), "rounds": rounds, "committed": committed}


def _decode_rate(generations: list[Generation]) -> float | None:
    return _ratio(sum(len(g.tokens) - 1 for g in generations), sum(g.decode_seconds for g in generations))


def draft_report(name: str, steps: int, runs: list[tuple[Prompt, Generation]], plain: list[Generation],
                 check_greedy: bool, extra: dict[str, Any]) -> dict[str, Any]:
    """One draft's section of the report; ``plain[i]`` is the plain decode of ``runs[i]``'s prompt."""
    generations = [g for _, g in runs]
    matches = [g.tokens == p.tokens for g, p in zip(generations, plain)] if check_greedy else None
    speed, plain_speed = _decode_rate(generations), _decode_rate(plain)
    overall = {
        **_totals(generations),
        "tokens": sum(len(g.tokens) for g in generations),
        "draft_seconds": sum(g.draft_seconds for g in generations),
        "target_seconds": sum(g.target_seconds for g in generations),
        "tokens_per_s": speed,
        "plain_tokens_per_s": plain_speed,
        "speedup": _ratio(speed or 0.0, plain_speed or 0.0),
        "greedy_mismatches": None if matches is None else matches.count(False),
    }
    buckets: dict[Any, list[tuple[Prompt, Generation]]] = defaultdict(list)
    for prompt, g in runs:
        buckets[prompt.context].append((prompt, g))
    contexts = [{"context": key, "prompts": len(items),
                 "mean_start": sum(p.input_ids.__len__() for p, _ in items) / len(items),
                 **_totals([g for _, g in items])}
                for key, items in sorted(buckets.items(), key=lambda kv: -1 if kv[0] is None else kv[0])]
    prompts = [{"source": p.source, "context": p.context, "start": len(p.input_ids), "generated_ids": g.tokens,
                "accepted": g.accepted, "tau": _totals([g])["tau"],
                "matches_plain": None if matches is None else matches[i]}
               for i, (p, g) in enumerate(runs)]
    return {"name": name, "steps": steps, **extra, "overall": overall, "by_depth": by_depth(generations, steps),
            "by_context": contexts, "prompts": prompts}


def format_table(report: dict[str, Any]) -> str:
    """The printed summary: one row per draft, then τ by context bucket."""
    drafts = report["drafts"]
    lines = [f"{'draft':<28} {'k':>2} {'tau':>6} {'rounds':>7} {'draft s':>8} {'target s':>9} {'tok/s':>8} "
             f"{'plain':>8} {'speedup':>7} {'mismatch':>8}  acceptance by depth"]
    for d in drafts:
        o = d["overall"]
        rates = " ".join("-" if x["rate"] is None else f"{x['rate']:.2f}" for x in d["by_depth"])
        lines.append(f"{d['name'][-28:]:<28} {d['steps']:>2} {_num(o['tau'], 2):>6} {o['rounds']:>7} "
                     f"{o['draft_seconds']:>8.2f} {o['target_seconds']:>9.2f} {_num(o['tokens_per_s'], 1):>8} "
                     f"{_num(o['plain_tokens_per_s'], 1):>8} {_num(o['speedup'], 2):>7} "
                     f"{'-' if o['greedy_mismatches'] is None else o['greedy_mismatches']:>8}  {rates}")
    contexts = [c["context"] for c in drafts[0]["by_context"]] if drafts else []
    if contexts != [None]:
        lines.append("")
        lines.append(f"{'context':>8} {'start':>8} " + " ".join(f"{d['name'][-16:]:>16}" for d in drafts))
        for i, key in enumerate(contexts):
            row = drafts[0]["by_context"][i]
            taus = " ".join(f"{_num(d['by_context'][i]['tau'], 2):>16}" for d in drafts)
            lines.append(f"{'prompt' if key is None else key:>8} {row['mean_start']:>8.0f} {taus}")
    for warning in report.get("warnings", []):
        lines.append(f"warning: {warning}")
    skipped = report["prompts"]["skipped"]
    if skipped:
        lines.append("skipped prompts: " + ", ".join(f"{k} {v}" for k, v in sorted(skipped.items())))
    return "\n".join(lines)


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def plot_series(report: dict[str, Any]) -> dict[str, dict[str, tuple[list, list]]]:
    """The numbers the plot draws, read from the report: τ vs mean start position, acceptance vs depth."""
    return {
        "tau_by_context": {d["name"]: ([c["mean_start"] for c in d["by_context"]], [c["tau"] for c in d["by_context"]])
                           for d in report["drafts"]},
        "acceptance_by_depth": {d["name"]: ([x["depth"] for x in d["by_depth"]], [x["rate"] for x in d["by_depth"]])
                                for d in report["drafts"]},
    }


PLOT_HINT = "no plot: install matplotlib (pip install 'draftsmith[plot]') to draw τ by context and by depth"


def plot_available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def write_plot(report: dict[str, Any], path: str | os.PathLike, overwrite: bool = False) -> Path:
    """PNG with τ vs context position (one line per draft) and acceptance by depth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = plot_series(report)
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for name, (x, y) in series["tau_by_context"].items():
        left.plot(x, [float("nan") if v is None else v for v in y], marker="o", label=name)
    left.set(xlabel="generation start (tokens of context)", ylabel="τ (tokens per target forward)",
             title="acceptance length by context position")
    for name, (x, y) in series["acceptance_by_depth"].items():
        right.plot(x, [float("nan") if v is None else v for v in y], marker="o", label=name)
    right.set(xlabel="depth", ylabel="P(accepted | reached)", title="acceptance by depth", ylim=(0, 1.02))
    left.legend(fontsize=8)
    figure.tight_layout()
    png = io.BytesIO()
    figure.savefig(png, format="png", dpi=120)
    plt.close(figure)
    return atomic_write(path, png.getvalue(), overwrite=overwrite)


def write_json(report: dict[str, Any], path: str | os.PathLike, overwrite: bool = False) -> Path:
    return atomic_write(path, json.dumps(report, indent=2) + "\n", overwrite=overwrite)
