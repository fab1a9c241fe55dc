"""How faithfully a draft fits its target (``inspect --target``), apart from how engines load it.

Both engines rotate with the draft config's own RoPE, which is what every trainer trains
with, so a schedule that differs from the target's loads and runs as trained: what it
costs is acceptance at long positions, where the two rotations drift apart. Sizes that
differ (hidden size, vocabulary) break the draft outright.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from draftsmith.inspect.view import DraftView, engine_rope, sizes
from draftsmith.inspect.findings import FIDELITY, REFUSES, SGLANG, VLLM, WRONG, Finding
from draftsmith.model.rope import RopeConfigError, rope_parameters_from_config

_ROPE_FIELDS = ("rope_theta", "rope_scaling", "rope_parameters")


def fidelity_findings(view: DraftView, target: Any) -> list[Finding]:
    """Rotary schedule, hidden size and vocabulary of the draft against the target config."""
    out = []
    c = view.config
    s = sizes(c)
    if s["target_hidden"] != target.hidden_size:
        field = ("target_hidden_size" if c.get("target_hidden_size") is not None
                 else "hidden_size (no target_hidden_size)")
        out.append(Finding("target.hidden_size", f"fc takes 3 x {s['target_hidden']} ({field}) but the target's "
                           f"hidden states are {target.hidden_size} wide: both engines fail at the first forward",
                           {SGLANG: REFUSES, VLLM: REFUSES}, kind=FIDELITY))
    if s["vocab"] != target.vocab_size:
        out.append(Finding("target.vocab_size", f"vocab_size {s['vocab']} but the target's is {target.vocab_size}: "
                           "d2t and the shared embedding index another vocabulary", {SGLANG: WRONG, VLLM: WRONG},
                           kind=FIDELITY))
    try:
        target_rope = rope_parameters_from_config(target)
        draft_rope = engine_rope(c)
    except RopeConfigError as error:
        return out + [Finding("target.rope", f"cannot compare RoPE: {error}", severity="warning", kind=FIDELITY)]
    if draft_rope != target_rope:
        differing = sorted(k for k in set(draft_rope) | set(target_rope) if draft_rope.get(k) != target_rope.get(k))
        what = ("the draft config has no RoPE fields, so the engines rotate it with plain RoPE at theta 10000"
                if not any(c.get(k) for k in _ROPE_FIELDS) else f"the draft's RoPE differs in {differing}")
        out.append(Finding("target.rope", f"{what}; the target uses {_describe(target_rope)}, the draft "
                           f"{_describe(draft_rope)}. Both engines rotate with the draft's schedule, which it was "
                           "trained with, so it loads and runs as trained; acceptance may fall at long positions "
                           "where the two schedules drift apart", severity="warning", kind=FIDELITY))
    return out


def _describe(rope: Mapping[str, Any]) -> str:
    extras = ", ".join(f"{k} {v}" for k, v in rope.items() if k not in ("rope_type", "rope_theta"))
    return f"{rope['rope_type']} (theta {rope['rope_theta']:g}{', ' + extras if extras else ''})"
