"""``inspect``: what SGLang and vLLM do with an EAGLE-3 draft checkpoint, and a verdict per engine.

The checkpoint is read as the engines read it: the checks both share (``format``), then each
engine's own rules (``sglang``, ``vllm``, which restate the pinned releases through
:mod:`draftsmith.engines`); with a target, its fit to the target is judged apart
(``fidelity``). Each engine's verdict is ``ok``, ``limited``, ``wrong`` or ``refuses``
(``findings``), for the engine version it names. It works on checkpoints written by any tool;
nothing here trusts draftsmith's own writer.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from draftsmith.checkpoint.aux_ids import GPT_OSS, RECORD
from draftsmith.checkpoint.layout import read_config, read_weights
from draftsmith.engines import vllm as vllm_engine
from draftsmith.inspect import sglang as sglang_rules
from draftsmith.inspect import vllm as vllm_rules
from draftsmith.inspect.aux import aux_training, shared_aux_findings
from draftsmith.inspect.fidelity import fidelity_findings
from draftsmith.inspect.findings import ENGINES, SGLANG, VERSIONS, VLLM, Finding, Report
from draftsmith.inspect.format import (architecture_findings, config_findings, layer_count_findings,
                                       speculators_findings, weight_findings)
from draftsmith.inspect.view import ENGINE, DraftView, speculators_view
from draftsmith.model.rope import rope_parameters_from_config
from draftsmith.target.registry import load_target_config

# gpt-oss's o200k_harmony vocabulary: no other target family has this size.
GPT_OSS_VOCAB = 201088


def _family(view: DraftView, target: Any) -> str | None:
    """The target's model_type as far as it matters here (gpt-oss or not; None: unknown).

    --target first, then our own record, then a speculators verifier, then the gpt-oss
    vocabulary size (a draft's vocab_size is always its target's).
    """
    if target is not None:
        return target.model_type
    record = view.raw.get(RECORD)
    if isinstance(record, Mapping) and record.get("target_model_type"):
        return record["target_model_type"]
    verifier = (view.raw.get("speculators_config") or {}).get("verifier") or {}
    names = " ".join([str(verifier.get("name_or_path") or "")] + list(verifier.get("architectures") or []))
    if "gptoss" in names.lower().replace("-", "").replace("_", ""):
        return GPT_OSS
    return GPT_OSS if view.config.get("vocab_size") == GPT_OSS_VOCAB else None


def _depth(view: DraftView, target: Any) -> int | None:
    if target is not None:
        return target.num_hidden_layers
    record = view.raw.get(RECORD)
    return record.get("target_num_hidden_layers") if isinstance(record, Mapping) else None


def inspect_checkpoint(directory: str | os.PathLike, target: Any = None) -> Report:
    """Every finding for the draft checkpoint in ``directory``, and each engine's verdict.

    ``target``: the target's directory, hub id, config or config dict, to judge the
    draft's fit to it (RoPE, context, sizes, reachable aux layers).
    """
    raw = read_config(directory)
    weights = read_weights(directory)
    view = speculators_view(raw, weights) if "speculators_config" in raw else DraftView(ENGINE, raw, raw, weights)
    target_config = load_target_config(target) if target is not None else None
    findings: list[Finding] = architecture_findings(view) + config_findings(view)
    if not any(f.code == "config.missing_size" for f in findings):
        sglang_runs = view.layout == ENGINE  # SGLang has no loader for the speculators layout
        params = {VLLM: vllm_rules.params(view)} | ({SGLANG: sglang_rules.params(view)} if sglang_runs else {})
        skips = {VLLM: vllm_rules.skipper(view), SGLANG: sglang_rules.skipper(view)}
        findings += weight_findings(view, params, skips)
        if view.layout != ENGINE:
            findings += speculators_findings(view)
        family = _family(view, target_config)
        findings += layer_count_findings(view, family)
        training = aux_training(view, family, _depth(view, target_config))
        findings += shared_aux_findings(view, training)
        if sglang_runs:
            findings += sglang_rules.findings(view, training, None if target_config is None else
                                              sglang_rules.target_context(target_config.to_dict()))
        findings += vllm_rules.findings(view, training, None if target_config is None else vllm_engine.max_model_len(
            rope_parameters_from_config(target_config), target_config.max_position_embeddings))
        if target_config is not None:
            findings += fidelity_findings(view, target_config)
    return Report(str(directory), view.layout, None if target is None else str(target), tuple(findings))


def report_lines(report: Report) -> list[str]:
    """Human output: one line per finding, then one verdict line per engine."""
    lines = [str(f) for f in report.findings]
    for engine in ENGINES:
        codes = sorted({f.code for f in report.findings if engine in f.effects})
        lines.append(f"{engine} {VERSIONS[engine]}: {report.verdict(engine)}"
                     + (f" ({', '.join(codes)})" if codes else ""))
    return lines


__all__ = ["Finding", "Report", "inspect_checkpoint", "report_lines"]
