"""What a draft was trained on and the target depth to judge its aux ids at; the findings that
hold for both engines, and how one engine's capture becomes a finding.

Each engine's capture comes from :mod:`draftsmith.engines` (the released code, restated);
:mod:`draftsmith.inspect.sglang` and :mod:`draftsmith.inspect.vllm` call :func:`capture_finding`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from draftsmith.checkpoint.aux_ids import trained_hidden_state_source
from draftsmith.engines.fields import AuxCapture, nested_ids, top_level_ids
from draftsmith.inspect.findings import FIDELITY, REFUSES, WRONG, Finding
from draftsmith.inspect.view import DraftView
from draftsmith.model.config import engine_default_hidden_state_indices


@dataclass(frozen=True)
class AuxTraining:
    """The states the draft was trained on (``how``: the field that says so), and the target depth
    ``num_layers`` to judge the engines at: the target's, else a guess (``depth_known`` false)."""

    trained: tuple[int, ...]
    how: str
    explicit: bool
    num_layers: int
    depth_known: bool
    family: str | None


def _default_depth(indices: Sequence[int]) -> int | None:
    """The target depth L for which ``indices`` are the engines' default, if any."""
    L = max(indices) + 3
    return L if tuple(sorted(indices)) == engine_default_hidden_state_indices(L) else None


def aux_training(view: DraftView, family: str | None, num_layers: int | None) -> AuxTraining:
    """What ``view``'s draft was trained on, for a target of ``family`` with ``num_layers`` (None: unknown)."""
    trained, how = trained_hidden_state_source(view.raw, family, num_layers)
    if num_layers is None:
        lists = [ids for ids in (trained, nested_ids(view.raw), top_level_ids(view.raw)) if ids]
        guesses = [L for ids in lists if (L := _default_depth(ids)) is not None]
        num_layers = guesses[0] if guesses else max((max(ids) for ids in lists), default=0) + 3
        depth_known = False
    else:
        depth_known = True
    explicit = trained is not None
    if trained is None:
        trained = engine_default_hidden_state_indices(num_layers)
    return AuxTraining(tuple(sorted(trained)), how, explicit, num_layers, depth_known, family)


def shared_aux_findings(view: DraftView, training: AuxTraining) -> list[Finding]:
    """Doubts about the ids that no engine settles: a listed order the trainer may have followed,
    a convention or a depth inspect had to assume."""
    out: list[Finding] = []
    ours = training.how == "recorded by draftsmith"
    written = top_level_ids(view.raw) or nested_ids(view.raw)
    if written and list(written) != sorted(written) and not ours:
        out.append(Finding("aux.order", f"aux ids {list(written)} are not ascending: both engines feed the states in "
                           "ascending layer order, so a trainer that concatenated them in the listed order trained "
                           "fc on a permuted input", severity="warning"))
    if nested_ids(view.raw) and not top_level_ids(view.raw) and not ours:
        out.append(Finding("aux.convention_assumed", f"only eagle_config ids {list(nested_ids(view.raw))}: the file "
                           "does not say which states they name; read as SGLang reads them for "
                           f"{'this target family' if training.family else 'a target family not named'}: hidden "
                           f"states {list(training.trained)} ({training.how})", severity="info"))
    if training.explicit and not training.depth_known and _default_depth(training.trained) is not None:
        out.append(Finding("aux.depth_assumed", f"the draft's aux states {list(training.trained)} equal the engines' "
                           f"default only for a {training.num_layers}-layer target; pass --target to check",
                           severity="warning"))
    return out


def capture_finding(engine: str, label: str, capture: AuxCapture, training: AuxTraining,
                    fc_inputs: int | None) -> Finding | None:
    """None when ``engine`` (``label``: its name and version, or runner) feeds the trained states; else
    ``aux.out_of_reach`` (refuses: fc gets fewer inputs than it has columns), ``aux.eagle1`` or
    ``aux.mismatch`` (wrong)."""
    fits = fc_inputs is None or not capture.indices or len(capture.indices) == fc_inputs
    if fits and (capture.indices == training.trained or (not training.explicit and capture.source == "engine default")):
        return None
    got = f"captures hidden states {list(capture.indices)} ({capture.source}; {capture.rule})"
    trained = f"the draft was trained on hidden states {list(training.trained)} ({training.how})"
    if not capture.indices:
        return Finding("aux.eagle1", f"{label} feeds the draft no aux states ({capture.source}): it runs it as "
                       f"EAGLE-1, on the target's last hidden state; {trained}", {engine: WRONG})
    if not capture.complete or not fits:
        depth = "" if training.depth_known else f", assuming a {training.num_layers}-layer target"
        return Finding("aux.out_of_reach", f"{label} is asked for hidden states {list(capture.requested)} and "
                       f"{got}{depth}: fc gets another number of inputs than it has columns and the engine fails at "
                       "the first forward", {engine: REFUSES}, kind=FIDELITY)
    if not training.depth_known and capture.source == "engine default":
        return Finding("aux.mismatch", f"{label} feeds its default states while {trained}: different states for "
                       "any target depth", {engine: WRONG})
    return Finding("aux.mismatch", f"{label} {got}; {trained}", {engine: WRONG})
