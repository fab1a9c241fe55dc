"""``inspect``'s rules for vLLM 0.32.0 (:mod:`draftsmith.engines.vllm` restates its code): the
parameters it builds, the target states each of its runners feeds the draft, the options it runs,
and the draft's context."""

from __future__ import annotations

from draftsmith.engines import vllm
from draftsmith.inspect.aux import AuxTraining, capture_finding
from draftsmith.inspect.findings import VLLM, WRONG, Finding
from draftsmith.inspect.view import DraftView, engine_rope, expected_shapes, option_shapes, sizes
from draftsmith.model.rope import RopeConfigError

LABEL = f"vLLM {vllm.VERSION}"


def params(view: DraftView) -> dict[str, tuple[int, ...]]:
    """``Eagle3LlamaForCausalLM``'s parameters by checkpoint name: ``fc`` as wide as its
    ``num_aux_hidden_states`` (none in EAGLE-1 mode), biases where the config asks, ``input_norm`` /
    ``fc_norm.i`` where it turns them on."""
    c = view.config
    n_aux = vllm.num_aux_hidden_states(view.flags)
    shapes = expected_shapes(c, n_aux)
    s = sizes(c)
    if not vllm.use_aux_hidden_state(view.flags):
        shapes.pop("fc.weight")
    if c.get("attention_bias") or c.get("bias"):
        q, kv = s["heads"] * s["head_dim"], s["kv"] * s["head_dim"]
        shapes.update({"midlayer.self_attn.q_proj.bias": (q,), "midlayer.self_attn.k_proj.bias": (kv,),
                       "midlayer.self_attn.v_proj.bias": (kv,), "midlayer.self_attn.o_proj.bias": (s["hidden"],)})
    if c.get("mlp_bias"):
        shapes.update({"midlayer.mlp.gate_proj.bias": (s["inter"],), "midlayer.mlp.up_proj.bias": (s["inter"],),
                       "midlayer.mlp.down_proj.bias": (s["hidden"],)})
    return shapes | option_shapes(c, vllm.variants(view.flags), n_aux)


def skipper(view: DraftView):
    """vLLM's ``load_weights`` drops ``input_norm.*`` unless ``norm_before_fc`` (and ``fc.*`` in EAGLE-1
    mode) without a word; its AutoWeightsLoader raises on any other weight it has no parameter for."""
    prefixes = vllm.skipped_weight_prefixes(view.flags)
    return lambda name: name.removeprefix("model.").startswith(prefixes)


def findings(view: DraftView, training: AuxTraining, target_max_len: int | None) -> list[Finding]:
    """Aux states per runner, weightless options and context, as vLLM 0.32.0 runs them."""
    out = []
    for runner in vllm.RUNNERS:
        capture = vllm.aux_capture(view.flags, training.num_layers, runner)
        found = capture_finding(VLLM, f"{LABEL}'s {runner} runner", capture, training, view.fc_inputs)
        if found:
            out.append(found)
    built = vllm.variants(view.flags)
    for name in ("norm_output", "norm_before_residual"):
        if built[name] != view.trained_variants[name]:
            out.append(Finding(f"variant.{name}", f"the draft was trained with {name}={view.trained_variants[name]}; "
                               f"{LABEL} runs it with {name}={built[name]} ({vllm.DRAFT_RULE})", {VLLM: WRONG}))
    out.extend(_context(view, target_max_len))
    return out


def _context(view: DraftView, target_max_len: int | None) -> list[Finding]:
    """vLLM 0.32.0 raises a draft's smaller ``max_position_embeddings`` to the target's context and
    drafts at every position; releases before that change (#49343, 2026-07) capped the draft at the
    context derived from its own config and drafted nothing past it."""
    positions = view.config.get("max_position_embeddings")
    if not positions:
        return []
    try:
        own = vllm.max_model_len(engine_rope(view.config), positions)
    except RopeConfigError:
        return []
    if target_max_len is None or own < target_max_len:
        raised = vllm.draft_max_position_embeddings(positions, target_max_len) if target_max_len else None
        limit = "the target's context" if raised is None else f"the target's {raised}"
        return [Finding("context.older_vllm", f"the draft's config gives vLLM a {own}-token context; {LABEL} raises "
                        f"it to {limit} ({vllm.MAX_POSITIONS_RULE}), but vLLM releases before #49343 (2026-07) "
                        f"draft nothing once a sequence passes {own} tokens",
                        severity="warning" if target_max_len is not None else "info")]
    return []
