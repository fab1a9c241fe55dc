"""Which target hidden states each engine feeds a draft, against the ones it was trained on.

All indices are Hugging Face ``hidden_states`` indices (0 = embeddings, k + 1 = output of
decoder layer k, before the final norm). ``n`` are the ids in
``eagle_config.eagle_aux_hidden_state_layer_ids``, ``t`` the top-level
``eagle_aux_hidden_state_layer_ids``, ``D = (2, L//2, L-3)`` the default of both engines
for an ``L``-layer target. Current code (docs/engines.md cites each rule):

- vLLM (``_get_eagle3_aux_layers_from_config``, since #42764): ``t``, else ``n``, else ``D``;
  reachable 0..L (#36063). Before #42764 it ignored ``n``.
- SGLang (model_runner reads only ``n``; ``set_eagle3_layers_to_capture``): Llama-family
  targets ``n + 1``, reachable 1..L-1; gpt-oss since #32334 ``n`` as it is, reachable 1..L;
  else ``D``.

Both capture in ascending layer order. A state out of reach is not captured, and the
draft's ``fc`` then gets fewer inputs than it has columns: the engine fails at its first
forward.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from draftsmith.checkpoint.findings import REFUSES, SGLANG, VLLM, WRONG, Finding

IDS = "eagle_aux_hidden_state_layer_ids"
RECORD, RECORD_FIELD = "draftsmith", "aux_hidden_state_indices"
GPT_OSS = "gpt_oss"


def _ids(value: Any) -> tuple[int, ...] | None:
    if isinstance(value, (list, tuple)) and value and all(isinstance(i, int) and not isinstance(i, bool)
                                                          for i in value):
        return tuple(value)
    return None


def default_indices(num_layers: int) -> tuple[int, ...]:
    """What both engines capture with no ids, in the ascending order they capture it."""
    return tuple(sorted((2, num_layers // 2, num_layers - 3)))


def _default_depth(indices: Sequence[int]) -> int | None:
    """The target depth L for which ``indices`` are the engines' default, if any."""
    L = max(indices) + 3
    return L if tuple(sorted(indices)) == default_indices(L) else None


def written_ids(raw: Mapping[str, Any]) -> tuple[tuple[int, ...] | None, tuple[int, ...] | None]:
    nested = raw.get("eagle_config")
    return (_ids(nested.get(IDS)) if isinstance(nested, Mapping) else None), _ids(raw.get(IDS))


def trained_indices(raw: Mapping[str, Any], family: str) -> tuple[tuple[int, ...] | None, str]:
    """What the draft was trained on (None: no ids anywhere, i.e. the default) and how we know.

    Our own record first; then the top-level ids (vLLM's reading, shared by the speculators
    format and ModelOpt); then the nested ids in the convention current SGLang reads for
    the target family (gpt-oss: hidden-state indices; others: outputs of layers, + 1).
    """
    record = raw.get(RECORD)
    if isinstance(record, Mapping) and _ids(record.get(RECORD_FIELD)):
        return tuple(sorted(record[RECORD_FIELD])), "recorded by draftsmith"
    n, t = written_ids(raw)
    if t:
        return tuple(sorted(t)), "top-level ids"
    if n:
        shift = 0 if family == GPT_OSS else 1
        return tuple(sorted(i + shift for i in n)), "eagle_config ids" + (" + 1" if shift else "")
    return None, "no ids: the engines' default"


def _captures(raw: Mapping[str, Any], family: str) -> dict[str, tuple[tuple[int, ...] | None, str, int, int]]:
    """Per engine: the indices it requests (None: its default), where from, and its reach: the
    lowest index and how far below L the highest is."""
    n, t = written_ids(raw)
    vllm = (tuple(sorted(t)), "top-level ids", 0, 0) if t else (tuple(sorted(n)), "eagle_config ids", 0, 0) if n else (
        None, "its default", 0, 0)
    if not n:
        sglang = (None, "its default", 1, 1)
    elif family == GPT_OSS:
        sglang = (tuple(sorted(n)), "eagle_config ids as hidden-state indices (gpt-oss, #32334)", 1, 0)
    else:
        sglang = (tuple(sorted(i + 1 for i in n)), "eagle_config ids + 1", 1, 1)
    return {SGLANG: sglang, VLLM: vllm}


def aux_findings(raw: Mapping[str, Any], family: str, num_layers: int | None,
                 engines: Sequence[str] = (SGLANG, VLLM)) -> list[Finding]:
    """Per engine: wrong when it feeds other states than were trained, refuses when one is out of reach."""
    trained, how = trained_indices(raw, family)
    n, t = written_ids(raw)
    out: list[Finding] = []
    written = t or n
    if written and list(written) != sorted(written) and how != "recorded by draftsmith":
        out.append(Finding("aux.order", f"aux ids {list(written)} are not ascending: both engines feed the states in "
                           "ascending layer order, so a trainer that concatenated them in the listed order trained "
                           "fc on a permuted input", severity="warning"))
    if n and not t and how != "recorded by draftsmith":
        out.append(Finding("aux.convention_assumed", f"only eagle_config ids {list(n)}: the file does not say which "
                           f"states they name; read as current SGLang reads them for this target family "
                           f"({'hidden-state indices' if family == GPT_OSS else 'outputs of layers, + 1'})",
                           severity="info"))
    for engine, (requested, source, low, below) in _captures(raw, family).items():
        if engine not in engines:
            continue
        L = num_layers
        if requested is None and trained is None:
            continue
        if requested is None or trained is None:
            explicit = trained if requested is None else requested
            L = L or _default_depth(explicit)
            if L is None:
                out.append(Finding("aux.mismatch", f"{engine} feeds {'its default' if requested is None else source} "
                                   f"{list(explicit) if requested is not None else ''} while the draft was trained on "
                                   f"{'the default' if trained is None else list(trained)} ({how}); these are "
                                   "different states for any target depth", {engine: WRONG}))
                continue
            if num_layers is None:
                out.append(Finding("aux.depth_assumed", f"{engine}: the draft's aux states equal the engines' default "
                                   f"only for a {L}-layer target; pass --target to check", severity="warning"))
            requested = requested or default_indices(L)
            trained_here = trained or default_indices(L)
        else:
            trained_here = trained
        if L is not None and not all(low <= i <= L - below for i in requested):
            reach = f"{low}..{L - below}"
            out.append(Finding("aux.out_of_reach", f"{engine} is asked for hidden states {list(requested)} ({source}) "
                               f"of a {L}-layer target but reaches {reach}: it captures fewer states than fc takes "
                               "and fails at the first forward", {engine: REFUSES}, kind="fidelity"))
        elif tuple(requested) != tuple(trained_here):
            out.append(Finding("aux.mismatch", f"{engine} feeds hidden states {list(requested)} ({source}); the draft "
                               f"was trained on {list(trained_here)} ({how})", {engine: WRONG}))
    if n and not t and family != GPT_OSS and trained is not None:
        out.append(Finding("aux.vllm_before_42764", "vLLM before #42764 ignores eagle_config ids and captures its "
                           "default states instead", severity="info"))
    return out
