"""``inspect``: what SGLang and vLLM do with an EAGLE-3 draft checkpoint, and a verdict per engine.

``report`` runs the checks: ``format`` (what both engines share), ``sglang`` and ``vllm`` (each
engine's own rules), ``aux`` (the trained aux states and the shared doubts about them),
``fidelity`` (the draft against its target); ``findings`` is their vocabulary and ``view`` the
checkpoint as the engines see it.
"""

from draftsmith.inspect.findings import Finding, Report
from draftsmith.inspect.report import inspect_checkpoint, report_lines

__all__ = ["Finding", "Report", "inspect_checkpoint", "report_lines"]
