"""``inspect``'s findings on aux layers and architecture options, from ``engine_aux``'s rules.

``engine_aux`` is the one owner of what each engine version captures, what a draft was
trained on and where each option runs; this module only turns its verdicts into findings
with the codes docs/engines.md lists: a current engine version that runs the draft
otherwise is ``wrong`` (or ``refuses``, when it cannot capture a requested state), an
older version a warning without effect on the verdict.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from draftsmith.checkpoint.engine_aux import (VARIANT_SUPPORT, aux_verdicts, nested_ids, top_level_ids,
                                              trained_hidden_state_source, variant_verdicts)
from draftsmith.checkpoint.engine_rules import DraftView
from draftsmith.checkpoint.findings import FIDELITY, REFUSES, SGLANG, VLLM, WRONG, Finding
from draftsmith.model.config import engine_default_hidden_state_indices

_ENGINE = {"SGLang": SGLANG, "vLLM": VLLM}


def _default_depth(indices: Sequence[int]) -> int | None:
    """The target depth L for which ``indices`` are the engines' default, if any."""
    L = max(indices) + 3
    return L if tuple(sorted(indices)) == tuple(sorted(engine_default_hidden_state_indices(L))) else None


def _depth(raw: Mapping[str, Any], trained: tuple[int, ...] | None) -> tuple[int, bool]:
    """A target depth to judge the ids at when the target is unknown, and whether it is the only
    one that makes an explicit list the engines' default (else it just reaches every id)."""
    lists = [ids for ids in (trained, nested_ids(raw), top_level_ids(raw)) if ids]
    for ids in lists:
        if (L := _default_depth(ids)) is not None:
            return L, True
    return max((max(ids) for ids in lists), default=0) + 3, False


def aux_findings(raw: Mapping[str, Any], family: str | None, num_layers: int | None,
                 engines: Sequence[str] = (SGLANG, VLLM)) -> list[Finding]:
    """Per engine: wrong when its current version feeds other states than were trained, refuses when
    one is out of its reach; a warning per older version that would.

    ``family``: the target's model_type (None: unknown); ``num_layers``: its depth (None: unknown).
    """
    trained, how = trained_hidden_state_source(raw, family)
    n, t = nested_ids(raw), top_level_ids(raw)
    out: list[Finding] = []
    written = t or n
    if written and list(written) != sorted(written) and how != "recorded by draftsmith":
        out.append(Finding("aux.order", f"aux ids {list(written)} are not ascending: both engines feed the states in "
                           "ascending layer order, so a trainer that concatenated them in the listed order trained "
                           "fc on a permuted input", severity="warning"))
    if n and not t and how != "recorded by draftsmith":
        rule = "as current SGLang reads them for this target family" if family else (
            "by SGLang #25454's rule, the target family unknown (a list starting at 1 counts outputs of layers)")
        out.append(Finding("aux.convention_assumed", f"only eagle_config ids {list(n)}: the file does not say which "
                           f"states they name; read {rule}: hidden states {list(trained)} ({how})", severity="info"))
    if trained is None:  # no ids anywhere: every engine version captures its default, which the draft trained on
        return out
    L, is_default = (num_layers, False) if num_layers is not None else _depth(raw, trained)
    uses_default = (SGLANG in engines and not n) or (VLLM in engines and not n and not t)
    if num_layers is None and is_default and uses_default:
        out.append(Finding("aux.depth_assumed", f"the draft's aux states {list(trained)} equal the engines' default "
                           f"only for a {L}-layer target; pass --target to check", severity="warning"))
    for verdict in aux_verdicts(raw, L, family):
        capture = verdict.capture
        engine = _ENGINE[capture.engine]
        if engine not in engines:
            continue
        message = verdict.message
        if num_layers is None and not is_default and capture.source == "engine default":
            message = (f"{capture.engine} {capture.versions} feeds its default states while the draft was trained "
                       f"on {list(trained)} ({how}): different states for any target depth")
        if not capture.current:
            out.append(Finding("aux.older_versions", message, severity="warning"))
        elif capture.indices is None:
            out.append(Finding("aux.out_of_reach", f"{message} ({L}-layer target): fc gets fewer inputs than it has "
                               "columns and the engine fails at the first forward", {engine: REFUSES}, kind=FIDELITY))
        else:
            out.append(Finding("aux.mismatch", f"{message} ({how})", {engine: WRONG}))
    return out


def variant_findings(view: DraftView, engines: Sequence[str]) -> list[Finding]:
    """The architecture options the checkpoint turns on and where each runs: SGLang ``wrong`` where
    its current code runs another draft, a warning where only older engine versions do."""
    out = []
    for verdict in variant_verdicts(view.flags):
        name = verdict.message.partition(":")[0]
        effects = {} if VARIANT_SUPPORT[name].sglang_runs or SGLANG not in engines else {SGLANG: WRONG}
        out.append(Finding(f"variant.{name}", verdict.message, effects, severity="" if effects else "warning"))
    return out
