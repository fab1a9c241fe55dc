"""The EAGLE-3 fields of a draft config that both engines read, and what a capture is."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

IDS = "eagle_aux_hidden_state_layer_ids"
NESTED = "eagle_config"


@dataclass(frozen=True)
class AuxCapture:
    """The target states one engine feeds a draft's ``fc``.

    ``indices``: hidden-state indices, ascending (every engine captures in layer order,
    whatever order the config lists); ``()`` when the engine runs the draft without aux
    states (EAGLE-1 mode). ``requested``: what the config made the engine ask for, in its
    own convention; a request it cannot capture is dropped from ``indices``, and ``fc``
    then gets fewer inputs than it has columns. ``source``: the field it took them from.
    """

    indices: tuple[int, ...]
    requested: tuple[int, ...]
    source: str
    rule: str

    @property
    def complete(self) -> bool:
        """Every requested state is captured."""
        return len(self.indices) == len(set(self.requested))


def int_list(value: Any) -> tuple[int, ...] | None:
    """A non-empty list of integers, else None (the engines treat an empty list as absent)."""
    if isinstance(value, (list, tuple)) and value and all(isinstance(i, int) and not isinstance(i, bool)
                                                          for i in value):
        return tuple(value)
    return None


def eagle_config(config: Mapping[str, Any]) -> Mapping[str, Any]:
    """The nested ``eagle_config`` (empty when absent or not an object)."""
    nested = config.get(NESTED)
    return nested if isinstance(nested, Mapping) else {}


def declared_aux_count(config: Mapping[str, Any], *, top_level_fallback: bool = False) -> int:
    """How many aux states a config declares, as both engines size ``fc``: ``num_aux_hidden_states``,
    else the nested id count, else 3; with ``top_level_fallback`` an absent nested list falls back
    to the top-level ids (SGLang's draft-runner input width)."""
    explicit = config.get("num_aux_hidden_states")
    if explicit is not None:
        return int(explicit)
    ids = eagle_config(config).get(IDS)
    if ids is None and top_level_fallback:
        ids = config.get(IDS)
    return len(ids) if ids else 3


def nested_ids(config: Mapping[str, Any]) -> tuple[int, ...] | None:
    return int_list(eagle_config(config).get(IDS))


def top_level_ids(config: Mapping[str, Any]) -> tuple[int, ...] | None:
    return int_list(config.get(IDS))

