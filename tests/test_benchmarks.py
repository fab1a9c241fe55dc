"""The benchmark scripts' plumbing: gpu_check.sh's dry run, ttt_step.py's FLOP count, the data benchmark's inputs."""

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import data_bench  # noqa: E402
import synthetic_chats  # noqa: E402
import ttt_step  # noqa: E402


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None, reason="needs bash and timeout")
def test_gpu_check_dry_run_passes_on_cpu(tmp_path):
    env = dict(os.environ, PYTHON=sys.executable, TMPDIR=str(tmp_path))
    env.pop("PYTHONPATH", None)  # the script must find the sources itself
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--dry-run", "--out", str(tmp_path / "out")],
                          env=env, capture_output=True, text=True, timeout=600)
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert proc.returncode == 0, summary
    for stage in ("install", "environment", "cuda_tests", "demo", "ttt_step"):
        assert f"| {stage} | PASS |" in summary
    assert "cuda tests selected:" in summary and "lean MFU" in summary and "demo training: 1 steps" in summary


def test_step_flops_match_torch_flop_counter():
    """The matmul part of the FLOP formula against torch's own count of a lean step's matmuls.

    The counter also sees the loss's lm_head recomputed in backward (activation
    checkpointing), which model FLOPs leave out; the fused attention kernel it does not see.
    """
    a = argparse.Namespace(batch=2, steps=3, vocab=256, hidden=64, heads=4, kv_heads=2, head_dim=16, intermediate=96,
                           draft_vocab=50, dtype="fp32")
    T = 24
    device = torch.device("cpu")
    _, _, _, loss_fn = ttt_step.build_ours(a, ttt_step.make_inputs(a, T, device), device, "lean")
    with FlopCounterMode(display=False) as counter:
        loss_fn().backward()
    counted = counter.get_flop_counts()["Global"][torch.ops.aten.mm]
    recomputed_lm_head = sum(a.batch * (T - 2 - j) * 2 * a.hidden * a.draft_vocab for j in range(a.steps))
    matmul, attention = ttt_step.step_flops(a, T)
    assert counted == matmul + recomputed_lm_head
    pairs = sum(T * (T + 1) / 2 + T * j for j in range(a.steps))  # causal keys plus j diagonal keys per query
    assert attention == a.batch * a.heads * 12 * a.head_dim * pairs


def test_synthetic_chats_are_deterministic_conversations(tmp_path):
    a = synthetic_chats.write_chats(tmp_path / "a.jsonl", 20)
    b = synthetic_chats.write_chats(tmp_path / "b.jsonl", 20)
    other = synthetic_chats.write_chats(tmp_path / "c.jsonl", 20, seed=1)
    assert a.read_bytes() == b.read_bytes() != other.read_bytes()
    from draftsmith.data import parse_conversation

    for line in a.read_text().splitlines():
        roles = [m.role for m in parse_conversation(json.loads(line)).messages]
        assert roles[-1] == "assistant" and roles.count("assistant") in (1, 2, 3)


def test_data_bench_paths_measure_the_same_samples(tmp_path):
    data = synthetic_chats.write_chats(tmp_path / "chats.jsonl", 30)
    lists = data_bench.measure("lists", str(data), str(tmp_path / "cache"), 1, 0)
    store = data_bench.measure("store", str(data), str(tmp_path / "cache"), 1, 0)
    assert lists["samples"] == store["samples"] == 30 and lists["tokens"] == store["tokens"]
    assert store["disk_bytes"] > 3 * store["tokens"]  # uint16 ids + uint8 mask, plus offsets and sources
