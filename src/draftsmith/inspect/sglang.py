"""``inspect``'s rules for SGLang 0.5.23 (:mod:`draftsmith.engines.sglang` restates its code):
the parameters it builds, the target states it feeds the draft, the options it runs, its context."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from draftsmith.engines import sglang
from draftsmith.inspect.aux import AuxTraining, capture_finding
from draftsmith.inspect.findings import REFUSES, SGLANG, WRONG, Finding
from draftsmith.inspect.view import DraftView, expected_shapes, option_shapes

LABEL = f"SGLang {sglang.VERSION}"


def params(view: DraftView) -> dict[str, tuple[int, ...]]:
    """``LlamaForCausalLMEagle3``'s parameters by checkpoint name (``midlayer.*``): no biases; ``fc``
    as wide as its ``num_aux_hidden_states``; ``input_norm`` / ``fc_norm.i`` where it turns them on
    (``fc_norm.i`` under a legacy name where the checkpoint uses one); no ``lm_head`` when tied."""
    n_aux = sglang.num_aux_hidden_states(view.flags)
    shapes = expected_shapes(view.config, n_aux) | option_shapes(view.config, sglang.variants(view.flags), n_aux)
    if view.config.get("tie_word_embeddings"):
        shapes.pop("lm_head.weight")
    stored = set(view.canonical)
    for legacy, name in sglang.LEGACY_WEIGHT_NAMES.items():  # loaded under their legacy names too
        for key in [k for k in shapes if k.startswith(name + ".")]:
            if key.replace(name, legacy, 1) in stored:
                shapes[key.replace(name, legacy, 1)] = shapes.pop(key)
    return shapes


def skipper(view: DraftView):
    """SGLang's ``load_weights`` loads what it has a parameter for and drops every other name unsaid."""
    return lambda name: True


def findings(view: DraftView, training: AuxTraining, target_context: int | None) -> list[Finding]:
    """Aux states, weightless options and context, as SGLang 0.5.23 runs them."""
    out = []
    capture = sglang.aux_capture(view.raw, training.num_layers, training.family)
    found = capture_finding(SGLANG, LABEL, capture, training, view.fc_inputs)
    if found:
        out.append(found)
    width, buffers = sglang.num_aux_hidden_states(view.flags), sglang.input_aux_count(view.flags)
    if width != buffers:
        out.append(Finding("config.sglang_input_width", f"{LABEL} builds fc for {width} states but sizes the draft "
                           f"runner's input for {buffers} (top-level ids without nested ones; "
                           f"{sglang.INPUT_WIDTH_RULE}): the widths disagree at the first forward", {SGLANG: REFUSES}))
    built = sglang.variants(view.flags)
    for name in ("norm_output", "norm_before_residual"):
        if built[name] != view.trained_variants[name]:
            out.append(Finding(f"variant.{name}", f"the draft was trained with {name}={view.trained_variants[name]}; "
                               f"{LABEL} runs it with {name}={built[name]} ({sglang.DRAFT_RULE})", {SGLANG: WRONG}))
    if target_context is not None and sglang.refuses_draft_context(view.config, target_context):
        out.append(Finding("context.sglang", f"{LABEL} derives a {sglang.context_length(view.config)}-token context "
                           f"from the draft's config and builds the draft with the target's {target_context}: it "
                           f"raises at start-up unless SGLANG_ALLOW_OVERWRITE_LONGER_CONTEXT_LEN=1 "
                           f"({sglang.DRAFT_CONTEXT_RULE})", {SGLANG: REFUSES}))
    return out


def target_context(target_config: Mapping[str, Any]) -> int:
    """The target's context as SGLang derives it."""
    return sglang.context_length(target_config)
