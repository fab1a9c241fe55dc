"""Run released vLLM with EAGLE-3 drafts on token-id prompts and report what it decoded and accepted.

Run with the vLLM venv's python, never imported by pytest (vLLM needs its own transformers, and
vLLM may spawn processes, hence the ``__main__`` guard):

    VENV/bin/python tests/engines/vllm_driver.py REQUEST.json RESULT.json

REQUEST: ``{"target": DIR, "max_model_len": N, "max_tokens": N, "prompts": [[ids]...],
"drafts": [{"name": S, "dir": DIR, "num_speculative_tokens": K}...]}``.
RESULT: ``{"vllm_version": V, "drafts": [{"name", "load_seconds", "generate_seconds",
"prompts": [{"tokens", "num_drafts", "accepted_per_pos"}]}...]}``; a draft vLLM cannot load gets
``{"name", "error"}``.

Drafts load one after another in this process, the engine in-process too (no engine-core and
worker processes: a draft then loads in ~3 s instead of ~20 s on a 2-core CPU; the model runner is
the same V1 CPU runner).
vLLM's spec-decode counters are process-wide Prometheus counters that keep counting across
``LLM`` instances, so each prompt is generated alone and its numbers are the counters' difference
across its ``generate`` call: ``num_drafts`` = verification rounds that carried drafts,
``accepted_per_pos[j]`` = rounds whose draft j was accepted.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time

DRAFTS_METRIC = "vllm:spec_decode_num_drafts"
ACCEPTED_METRIC = "vllm:spec_decode_num_accepted_tokens_per_pos"


def spec_counters(llm, k: int) -> tuple[int, list[int]]:
    """``(drafts, accepted per position)`` so far in this process."""
    drafts, accepted = 0, [0] * k
    for metric in llm.get_metrics():
        if metric.name == DRAFTS_METRIC:
            drafts += metric.value
        elif metric.name == ACCEPTED_METRIC:
            accepted = [a + v for a, v in zip(accepted, metric.values)]
    return drafts, accepted


def run_draft(request: dict, draft: dict) -> dict:
    """One draft over every prompt; a draft vLLM refuses to load gives ``{"name", "error"}`` instead."""
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    k = draft["num_speculative_tokens"]
    start = time.perf_counter()
    try:
        llm = LLM(model=request["target"], dtype="float32", enforce_eager=True, seed=0,
                  gpu_memory_utilization=0.1, max_model_len=request["max_model_len"],
                  disable_log_stats=False, max_num_seqs=1, distributed_executor_backend="uni",
                  speculative_config={"method": "eagle3", "model": draft["dir"], "num_speculative_tokens": k})
    except Exception as error:  # noqa: BLE001 - the refusal is the result
        return {"name": draft["name"], "error": f"{type(error).__name__}: {error}"}
    loaded = time.perf_counter()
    params = SamplingParams(temperature=0.0, max_tokens=request["max_tokens"], detokenize=False)
    prompts = []
    for ids in request["prompts"]:
        drafts_before, accepted_before = spec_counters(llm, k)
        (output,) = llm.generate([TokensPrompt(prompt_token_ids=ids)], params, use_tqdm=False)
        drafts_after, accepted_after = spec_counters(llm, k)
        prompts.append({"tokens": list(output.outputs[0].token_ids), "num_drafts": drafts_after - drafts_before,
                        "accepted_per_pos": [b - a for a, b in zip(accepted_before, accepted_after)]})
    generated = time.perf_counter()
    llm.llm_engine.engine_core.shutdown()
    del llm
    gc.collect()
    return {"name": draft["name"], "load_seconds": loaded - start, "generate_seconds": generated - loaded,
            "prompts": prompts}


def main(request_path: str, result_path: str) -> None:
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # before vLLM reads its environment
    import vllm

    with open(request_path) as f:
        request = json.load(f)
    result = {"vllm_version": vllm.__version__, "drafts": [run_draft(request, d) for d in request["drafts"]]}
    with open(result_path, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(*sys.argv[1:])
