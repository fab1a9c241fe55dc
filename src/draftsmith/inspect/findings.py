"""The vocabulary of ``inspect``: per-engine effects, findings and the verdict they add up to.

A finding says what one engine does with one aspect of a checkpoint. Its ``effects`` map
an engine to ``limited`` (runs the draft as trained but stops or degrades somewhere),
``wrong`` (loads without an error but runs something other than what was trained) or
``refuses`` (fails to load or to run); an engine it does not name is unaffected. An
engine's verdict is the worst effect any finding has on it, ``ok`` when none has one.
The codes are stable and listed in docs/engines.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from draftsmith.engines import sglang, vllm

SGLANG, VLLM = "sglang", "vllm"
ENGINES = (SGLANG, VLLM)
# The engine release each verdict is for: the one whose code draftsmith.engines restates.
VERSIONS = {SGLANG: sglang.VERSION, VLLM: vllm.VERSION}
OK, LIMITED, WRONG, REFUSES = "ok", "limited", "wrong", "refuses"
VERDICTS = (OK, LIMITED, WRONG, REFUSES)  # in increasing order of harm
LOAD, FIDELITY = "load", "fidelity"
_SEVERITY = {OK: "info", LIMITED: "warning", WRONG: "error", REFUSES: "error"}


def worst(effects: Any) -> str:
    """The most harmful of some effects (``ok`` for none)."""
    return max(effects, key=VERDICTS.index, default=OK)


@dataclass(frozen=True)
class Finding:
    """One fact about a checkpoint and what each engine does with it.

    ``severity`` follows from the effects (error for wrong/refuses, warning for limited,
    info for none) unless given: a warning with no effect is a doubt the verdict does not
    settle, such as an assumption about how the draft was trained.
    """

    code: str
    message: str
    effects: Mapping[str, str] = field(default_factory=dict)
    kind: str = LOAD
    severity: str = ""

    def __post_init__(self) -> None:
        unknown = set(self.effects) - set(ENGINES) or {v for v in self.effects.values() if v not in VERDICTS}
        if unknown:
            raise ValueError(f"finding {self.code}: unknown engines or effects {sorted(unknown)}")
        object.__setattr__(self, "effects", {e: self.effects[e] for e in ENGINES if self.effects.get(e, OK) != OK})
        if not self.severity:
            object.__setattr__(self, "severity", _SEVERITY[worst(self.effects.values())])

    def __str__(self) -> str:
        effects = ", ".join(f"{engine}: {effect}" for engine, effect in self.effects.items())
        return f"{self.severity.upper()} {self.code}" + (f" [{effects}]" if effects else "") + f": {self.message}"

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "severity": self.severity, "kind": self.kind, "engines": dict(self.effects),
                "message": self.message}


@dataclass(frozen=True)
class Report:
    """Everything ``inspect`` found in one checkpoint, and each engine's verdict."""

    directory: str
    layout: str  # "engine" (SGLang/vLLM config.json) or "speculators"
    target: str | None
    findings: tuple[Finding, ...]

    def verdict(self, engine: str) -> str:
        return worst(f.effects[engine] for f in self.findings if engine in f.effects)

    def verdicts(self) -> dict[str, str]:
        return {engine: self.verdict(engine) for engine in ENGINES}

    def reasons(self, engine: str) -> list[str]:
        """The findings that decide ``engine``'s verdict, as ``code: message``, worst first."""
        hits = sorted((f for f in self.findings if engine in f.effects),
                      key=lambda f: -VERDICTS.index(f.effects[engine]))
        return [f"{f.code}: {f.message}" for f in hits]

    def to_json(self) -> dict[str, Any]:
        return {
            "directory": self.directory,
            "layout": self.layout,
            "target": self.target,
            "engines": {engine: {"verdict": self.verdict(engine), "version": VERSIONS[engine],
                                 "reasons": self.reasons(engine)} for engine in ENGINES},
            "findings": [f.to_json() for f in self.findings],
        }
