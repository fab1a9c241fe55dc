"""The command lines that serve a target with a draft in SGLang and in vLLM (chain drafting, top-k 1).

One owner for the run summary, the model card and the demo, so the three never disagree.
"""

from __future__ import annotations

import json
import os
import shlex


def serve_commands(target: str | os.PathLike, draft: str | os.PathLike, steps: int) -> dict[str, str]:
    """``{"SGLang": ..., "vLLM": ...}``: serve ``target`` with ``draft`` proposing ``steps`` tokens per target forward."""
    target, draft = str(target), str(draft)
    vllm_config = json.dumps({"method": "eagle3", "model": draft, "num_speculative_tokens": steps})
    return {
        "SGLang": (f"python -m sglang.launch_server --model-path {shlex.quote(target)} --speculative-algorithm EAGLE3 "
                   f"--speculative-draft-model-path {shlex.quote(draft)} --speculative-num-steps {steps} "
                   f"--speculative-eagle-topk 1 --speculative-num-draft-tokens {steps + 1}"),
        "vLLM": f"vllm serve {shlex.quote(target)} --speculative-config {shlex.quote(vllm_config)}",
    }
