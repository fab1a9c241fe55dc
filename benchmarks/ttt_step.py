"""Throughput, model FLOPs utilization and peak memory of one TTT training step: lean vs naive attention (vs NeMo).

One step is what training runs: the TTT-k objective (``ttt_objective``: the draft unrolled k
steps, soft cross-entropy against random target distributions over the draft vocabulary),
backward, gradient clipping and an AdamW update. The draft is gpt-oss-shaped but scaled down
so 8,192 tokens fit this machine: head_dim 64, GQA 8:1, the YaRN rotary of a ``GptOssConfig``,
MLP 6 x hidden, a small draft vocabulary (every size is a flag).

    python benchmarks/ttt_step.py [--lengths 512 1024 2048 4096 8192] [--steps 7] [--repeats 3]
                                  [--dtype fp32|bf16] [--shape gpt-oss|attention] [--device cpu|cuda]

``--shape attention`` is an attention-heavy draft (hidden 256, 16 heads / 2 KV heads of 64,
MLP 768, draft vocab 2000), where at 4,096 tokens attention is ~2/3 of the step's FLOPs
instead of ~1/5. ``--dtype bf16`` runs the step under ``torch.autocast`` in bfloat16 (weights,
gradients and AdamW state stay fp32), as ``training.bf16`` does.

Implementations, each in a fresh subprocess per sequence length:
- ``lean``: draftsmith as shipped (fused attention kernel for block 0, LSE-merged diagonal).
- ``lean+ckpt``: the same with the draft's gradient checkpointing on (recipe option
  ``gradient_checkpointing``), which recomputes the layer in backward.
- ``naive``: the lean draft with ``draftsmith.model.draft.ttt_attention`` replaced by an attention
  that materializes the ``[B, heads, T, T + j]`` scores, as tests/reference.py does.
- ``nemo``: NeMo AutoModel's ``Eagle3TrainerModule`` over its ``GptOssEagle3DraftModel``,
  built from the same ``GptOssConfig`` and fed the same supervision (its offline path:
  ``target_probs`` + ``position_mask``), when ``nemo_automodel`` is importable.

Model FLOPs utilization (MFU) = model FLOPs per token x tokens/s / the machine's matmul peak.
The peak is measured in the same run, same dtype and thread count: the best rate of square
``torch.mm`` (CPU: n = 1024, 2048; CUDA: 4096, 8192; CUDA fp32 without TF32, torch's default).
Model FLOPs count the matmuls the step must do, 2 per multiply-add, and nothing recomputed
(checkpointing, the loss's lm_head recompute), nor norms, softmax, cross-entropy or AdamW.
With hidden H, query heads Hq and KV heads Hkv of size D, MLP width I, draft vocab V, TTT-k,
T tokens per row and B rows:

- layer linears per token and step: q/k/v from the 2H-wide input, o, gate/up/down:
  ``L = 2*2H*Hq*D + 2*2*2H*Hkv*D + 2*Hq*D*H + 3*2*H*I``; forward, input grad and weight grad: ``3L``,
  k times: ``3kL``;
- fc (3H -> H, step 0 only; its input needs no gradient): ``2*2*3H*H``;
- lm_head on the ``T-2-j`` supervised slots of step j: ``3*2*H*V`` each;
- attention at step j: query t sees the ``t+1`` step-0 keys before it (``T(T+1)/2`` pairs per
  row and head) and ``j`` diagonal keys; ``4D`` FLOPs per (query head, key) for ``QK^T`` and
  ``PV`` forward, 3x that with backward (the kernel's recomputation of ``QK^T`` not counted):
  ``3*4*D*Hq*(T(T+1)/2 + T*j)`` per row.

Per token is the step's total / (B*T); at 4,096 tokens the default shape does ~0.50 GFLOP per
token (matmul 0.41, attention 0.09).

Peak memory is what the step adds on top of the built model, optimizer and inputs: on CPU
the process's resident-set high-water mark (``VmHWM``, reset through
``/proc/self/clear_refs`` just before the first step; ``ru_maxrss`` where that is not
possible) minus the resident set at that moment; on CUDA ``max_memory_allocated`` minus
``memory_allocated``. It includes gradients and the AdamW state made by the first step,
the same for every implementation. Time is the median of ``--repeats`` steps after
``--warmup`` untimed ones.

On a small shared CPU machine other processes distort timings badly (the CPU attention
kernels slow down many-fold when their threads must share cores), so before each cell the
script waits for the CPUs to be quiet, measures how much CPU other processes took while the
cell was timed, and reruns a cell that was disturbed. This is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IMPLS = ("lean", "lean+ckpt", "naive", "nemo")
OURS = ("lean", "lean+ckpt", "naive")
RESULT_TAG = "RESULT "
# Peak memory of the naive paths over lean, as a multiple of the fp32 scores they save for
# backward (measured here at 4,096 tokens: naive 1.6x, NeMo 1.75x); used to skip runs that
# would not fit instead of letting the kernel's OOM killer loose on a shared machine.
SCORE_OVERHEAD = 1.8


# ----------------------------------------------------------------------------- machine state


def _proc_status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _mem_available_bytes() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _cpu_busy_seconds() -> float | None:
    """Seconds all CPUs together spent busy since boot (``/proc/stat``)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def _cpu_share(seconds: float = 1.0) -> float | None:
    """Share of all CPUs busy over the next ``seconds`` (the caller sleeps meanwhile)."""
    b0 = _cpu_busy_seconds()
    time.sleep(seconds)
    b1 = _cpu_busy_seconds()
    return None if b0 is None or b1 is None else (b1 - b0) / (seconds * (os.cpu_count() or 1))


def wait_quiet(limit: float, threshold: float) -> float | None:
    """Wait up to ``limit`` seconds for other processes to use under ``threshold`` of the CPUs."""
    deadline = time.monotonic() + limit
    while True:
        share = _cpu_share()
        if share is None or share < threshold or time.monotonic() >= deadline:
            return share
        time.sleep(4)


class PeakMeter:
    """Peak memory added by the measured region, in bytes."""

    def __init__(self, device):
        self.device = device
        self._ru = None

    def start(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
            self.how = "torch.cuda.max_memory_allocated - memory_allocated"
            return
        self.base = (_proc_status_kib("VmRSS") or 0) * 1024
        try:  # "5": reset the resident-set high-water mark to the current RSS (Linux >= 4.0)
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.how = "VmHWM - VmRSS at start"
        except OSError:
            import resource

            self._ru = resource
            self.how = "ru_maxrss - VmRSS at start (a lower bound if setup peaked higher)"

    def peak(self) -> int:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated() - self.base
        if self._ru is not None:
            return self._ru.getrusage(self._ru.RUSAGE_SELF).ru_maxrss * 1024 - self.base
        return (_proc_status_kib("VmHWM") or 0) * 1024 - self.base


# ----------------------------------------------------------------------------- shapes


def target_config(a):
    """The scaled-down gpt-oss target whose draft is benchmarked (YaRN rope as gpt-oss ships it)."""
    from transformers import GptOssConfig

    return GptOssConfig(
        hidden_size=a.hidden,
        num_attention_heads=a.heads,
        num_key_value_heads=a.kv_heads,
        head_dim=a.head_dim,
        intermediate_size=a.intermediate,
        vocab_size=a.vocab,
        num_hidden_layers=24,
        num_local_experts=4,
        attention_bias=False,  # the draft has no biases (docs/checkpoint-format.md); NeMo's draft reads this flag
    )


SHAPES = {  # sizes a --shape fills in (each size flag overrides its own)
    "gpt-oss": dict(hidden=512, heads=8, kv_heads=1, head_dim=64, intermediate=3072, draft_vocab=8000),
    "attention": dict(hidden=256, heads=16, kv_heads=2, head_dim=64, intermediate=768, draft_vocab=2000),
}


def step_flops(a, T: int) -> tuple[float, float]:
    """Model FLOPs of one training step on ``a.batch`` rows of ``T`` tokens: ``(matmul, attention)``.

    The formula is the module docstring's (and docs/benchmarks.md's).
    """
    H, Hq, KV, D, I, V, B, k = a.hidden, a.heads, a.kv_heads, a.head_dim, a.intermediate, a.draft_vocab, a.batch, a.steps
    layer = 2 * 2 * H * Hq * D + 2 * 2 * 2 * H * KV * D + 2 * Hq * D * H + 3 * 2 * H * I
    matmul = B * T * (3 * k * layer + 2 * 2 * 3 * H * H)
    matmul += sum(B * max(T - 2 - j, 0) * 3 * 2 * H * V for j in range(k))
    attention = sum(B * 3 * 4 * D * Hq * (T * (T + 1) / 2 + T * j) for j in range(k))
    return float(matmul), float(attention)


def matmul_peak(device, dtype, seconds: float) -> tuple[float, str]:
    """Best FLOP/s of square ``torch.mm`` in ``dtype`` on ``device`` within about ``seconds``."""
    import torch

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sizes, reps = ((4096, 8192), 10) if device.type == "cuda" else ((1024, 2048), 1)
    best, best_n = 0.0, 0
    for n in sizes:
        x, y = torch.randn(n, n, device=device).to(dtype), torch.randn(n, n, device=device).to(dtype)
        out = torch.mm(x, y)
        deadline = time.perf_counter() + seconds / len(sizes)
        for i in range(1000):
            sync()
            t0 = time.perf_counter()
            for _ in range(reps):
                torch.mm(x, y, out=out)
            sync()
            rate = reps * 2 * n**3 / (time.perf_counter() - t0)
            if rate > best:
                best, best_n = rate, n
            if i >= 2 and time.perf_counter() > deadline:
                break
    return best, f"best of {' and '.join(f'{n}x{n}' for n in sizes)} torch.mm (n={best_n})"


def shape_line(a) -> str:
    return (
        f"draft: hidden {a.hidden}, {a.heads} heads / {a.kv_heads} KV heads (GQA {a.heads // a.kv_heads}:1), "
        f"head_dim {a.head_dim}, MLP {a.intermediate}, draft vocab {a.draft_vocab}, target vocab {a.vocab}, "
        f"aux 3 x {a.hidden}; YaRN rope from GptOssConfig (theta 150000, factor 32, 4096 -> 131072); "
        f"batch {a.batch}, TTT-{a.steps}, {a.dtype}{' autocast' if a.dtype == 'bf16' else ''}, AdamW"
    )


# ----------------------------------------------------------------------------- naive attention


def naive_ttt_attention(q, k0, v0, diag_k=None, diag_v=None, visible=None):
    """Drop-in for ``draftsmith.model.draft.ttt_attention``: tests/reference.py's attention, which
    materializes ``[B, H, T, T + j]`` scores. Causal only, the one case this benchmark runs."""
    if visible is not None:
        raise ValueError("the benchmark runs single causal documents; packed masks are not timed")
    sys.path.insert(0, str(REPO / "tests"))
    from reference import naive_ttt_attention as reference_attention

    return reference_attention(q, k0, v0, diag_k, diag_v)


# ----------------------------------------------------------------------------- inputs and models


def make_inputs(a, T, device, seed=0):
    """Random tokens and target supervision (softmax over the draft vocabulary), one document per row."""
    import torch

    g = torch.Generator().manual_seed(seed)
    B, V = a.batch, a.draft_vocab
    ids = torch.randint(0, V, (B, T), generator=g)
    probs = torch.randn(B, T, V, generator=g).softmax(-1)
    return {
        "input_ids": ids.to(device),
        "loss_mask": torch.ones(B, T, dtype=torch.long, device=device),
        "document_ids": torch.ones(B, T, dtype=torch.long, device=device),
        "position_ids": torch.arange(T, device=device).expand(B, T).contiguous(),
        "aux": torch.randn(B, T, 3 * a.hidden, generator=g).to(device),
        "target_probs": probs.to(device),
        "target_argmax": probs.argmax(-1).to(device),  # draft id == target id: d2t is all zeros
        "in_draft_vocab": torch.ones(B, T, dtype=torch.bool, device=device),
    }


def build_ours(a, x, device, impl):
    """Our draft, optimizer and a closure computing the training loss."""
    import torch

    sys.path.insert(0, str(REPO / "src"))
    import draftsmith.model.draft
    from draftsmith import build_draft
    from draftsmith.train import objective

    if impl == "naive":
        draftsmith.model.draft.ttt_attention = naive_ttt_attention
    torch.manual_seed(0)
    draft = build_draft(target_config(a), draft_vocab_size=a.draft_vocab, intermediate_size=a.intermediate).to(device)
    draft.gradient_checkpointing = impl == "lean+ckpt"
    supervision_cls = getattr(objective, "Supervision", None)
    if supervision_cls is None:  # the target wrapper's class took its place
        from draftsmith.target.capture import TargetOutputs as supervision_cls
    batch = objective.TokenBatch(x["input_ids"], x["loss_mask"], x["document_ids"], x["position_ids"])
    supervision = supervision_cls(
        aux_hidden_states=x["aux"],
        target_probs=x["target_probs"],
        target_argmax=x["target_argmax"],
        in_draft_vocab=x["in_draft_vocab"],
    )
    params = [p for p in draft.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.95), weight_decay=0.0, fused=True)  # as training

    def loss_fn():
        with autocast(a, device):
            return objective.ttt_objective(draft, batch, supervision, a.steps)[0]

    return draft, opt, params, loss_fn


def nemo_importable() -> tuple[bool, str]:
    if importlib.util.find_spec("nemo_automodel") is None:
        return False, "nemo_automodel is not installed"
    try:
        from nemo_automodel.components.speculative.eagle.core import Eagle3TrainerModule  # noqa: F401
        from nemo_automodel.components.speculative.eagle.draft_gpt_oss import GptOssEagle3DraftModel  # noqa: F401
    except Exception as exc:  # one of its imports is missing: say which
        return False, f"nemo_automodel is installed but its EAGLE-3 modules do not import ({type(exc).__name__}: {exc})"
    import nemo_automodel

    return True, f"nemo_automodel {getattr(nemo_automodel, '__version__', '?')}"


def build_nemo(a, x, device):
    """NeMo AutoModel's EAGLE-3 trainer on the same config, fed the same supervision.

    Built as its ``train_eagle3`` recipe builds it for a gpt-oss target: the draft config is
    the target config plus draft fields, the draft class ``GptOssEagle3DraftModel`` (YaRN
    rope), embeddings frozen, fp32 on CPU, eager attention. Its inputs are aligned to ours so
    both optimize the same loss: slot t reads token t+1 and is supervised by the target
    distribution at t+1 (``run_check`` shows the two losses agree on shared weights).
    """
    import torch
    import torch.nn.functional as F
    from transformers import GptOssConfig

    from nemo_automodel.components.speculative.eagle.core import Eagle3TrainerModule
    from nemo_automodel.components.speculative.eagle.draft_gpt_oss import GptOssEagle3DraftModel

    cfg = target_config(a).to_dict()
    cfg.update(
        draft_vocab_size=a.draft_vocab,
        target_hidden_size=a.hidden,
        architectures=["LlamaEagle3DraftModel"],
        tie_word_embeddings=False,
        attn_implementation="eager",
        fc_norm=False,
        norm_output=False,
        parallel_drafting=False,
    )
    torch.manual_seed(0)
    draft = GptOssEagle3DraftModel(GptOssConfig.from_dict(cfg)).to(device=device, dtype=torch.float32)
    selected = torch.arange(a.draft_vocab)
    selected_mask = torch.zeros(a.vocab, dtype=torch.bool)
    selected_mask[selected] = True
    draft.set_vocab_mapping(selected)
    draft.freeze_embeddings()
    trainer = Eagle3TrainerModule(
        draft, selected_token_ids=selected, selected_token_mask=selected_mask, ttt_steps=a.steps
    ).to(device)

    T = x["input_ids"].shape[1]
    ids = F.pad(x["input_ids"][:, 1:], (0, 1))
    probs = F.pad(x["target_probs"][:, 1:], (0, 0, 0, 1))
    # Our step-0 trained slots: t + 2 < T, token t + 2 is an assistant token, target argmax at t + 1 in vocab.
    supervised = torch.zeros_like(x["in_draft_vocab"])
    supervised[:, : T - 2] = x["loss_mask"][:, 2:].bool() & x["in_draft_vocab"][:, 1 : T - 1]
    inputs = dict(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        loss_mask=F.pad(x["loss_mask"][:, 2:], (0, 2)),
        aux_hidden_states=x["aux"],
        target_probs=probs,
        position_mask=supervised.unsqueeze(-1),
        position_ids=x["position_ids"],
    )
    params = [p for p in trainer.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.95), weight_decay=0.0, fused=True)  # as training

    def loss_fn():
        with autocast(a, device):
            return trainer(**inputs).loss

    return draft, opt, params, loss_fn


def autocast(a, device):
    """bf16 autocast for ``--dtype bf16`` (weights and optimizer stay fp32), else nothing."""
    import contextlib

    import torch

    return torch.autocast(device.type, dtype=torch.bfloat16) if a.dtype == "bf16" else contextlib.nullcontext()


def build(a, impl, T, device):
    x = make_inputs(a, T, device)
    if impl == "nemo":
        return build_nemo(a, x, device)
    return build_ours(a, x, device, impl)


# ----------------------------------------------------------------------------- child processes


def run_child(a) -> dict:
    """Build one (implementation, length), run warmup + timed steps, report time and peak memory."""
    import torch

    device = torch.device(a.device)
    if a.threads:
        torch.set_num_threads(a.threads)
    _, opt, params, loss_fn = build(a, a.impl, a.length, device)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        return loss.detach()

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    meter = PeakMeter(device)
    meter.start()
    times, losses = [], []
    for i in range(a.warmup + a.repeats):
        if i == a.warmup:
            busy0, own0, wall0 = _cpu_busy_seconds(), sum(os.times()[:2]), time.perf_counter()
        sync()
        t0 = time.perf_counter()
        loss = step()
        sync()
        if i >= a.warmup:
            times.append(time.perf_counter() - t0)
        losses.append(float(loss))
    busy1, own1, wall1 = _cpu_busy_seconds(), sum(os.times()[:2]), time.perf_counter()
    others = None
    if busy0 is not None and busy1 is not None:  # CPU time other processes took while we were timed
        others = max(0.0, (busy1 - busy0) - (own1 - own0)) / ((wall1 - wall0) * (os.cpu_count() or 1))
    return {
        "impl": a.impl,
        "length": a.length,
        "batch": a.batch,
        "seconds": statistics.median(times),
        "all_seconds": times,
        "peak_bytes": meter.peak(),
        "how": meter.how,
        "losses": losses,
        "others_cpu_share": others,
        "threads": torch.get_num_threads(),
    }


def run_check(a) -> dict:
    """At a small length: lean vs naive (loss, gradients), and NeMo's loss on our weights vs ours."""
    import torch

    device = torch.device(a.device)
    x = make_inputs(a, 96, device, seed=1)
    out = {}
    draft, _, params, loss_fn = build_ours(a, x, device, "lean")
    loss = loss_fn()
    grads = torch.autograd.grad(loss, params)
    loss = loss.detach()
    import draftsmith.model.draft

    lean_attention = draftsmith.model.draft.ttt_attention
    draftsmith.model.draft.ttt_attention = naive_ttt_attention
    try:
        naive_loss = loss_fn()
        naive_grads = torch.autograd.grad(naive_loss, params)
        naive_loss = naive_loss.detach()
    finally:
        draftsmith.model.draft.ttt_attention = lean_attention
    out["loss"] = float(loss)
    out["lean_naive_loss_diff"] = abs(float(loss) - float(naive_loss))
    out["lean_naive_grad_rel"] = max(
        float((g - n).abs().max() / n.abs().max().clamp(min=1e-30)) for g, n in zip(grads, naive_grads)
    )
    if "nemo" in a.impls and nemo_importable()[0]:
        nemo_draft, _, _, nemo_loss_fn = build_nemo(a, x, device)
        mapped = {}
        for k, v in draft.state_dict().items():
            if k in ("d2t", "t2d"):
                continue
            if k.startswith("midlayer."):
                k = "model.layers.0." + k[len("midlayer."):]
            elif k != "lm_head.weight":
                k = "model." + k
            mapped[k] = v
        result = nemo_draft.load_state_dict(mapped, strict=False)
        missing = [k for k in result.missing_keys if not k.endswith(("d2t", "t2d", "inv_freq"))]
        out["nemo_key_mismatch"] = list(result.unexpected_keys) + missing
        with torch.no_grad():
            out["nemo_loss"] = float(nemo_loss_fn())
        out["nemo_loss_diff"] = abs(out["nemo_loss"] - out["loss"])
    return out


def child_main(a) -> None:
    result = run_check(a) if a.check else run_child(a)
    print(RESULT_TAG + json.dumps(result), flush=True)


def forwarded_args(a) -> list[str]:
    return [
        "--hidden", str(a.hidden), "--heads", str(a.heads), "--kv-heads", str(a.kv_heads),
        "--head-dim", str(a.head_dim), "--intermediate", str(a.intermediate),
        "--draft-vocab", str(a.draft_vocab), "--vocab", str(a.vocab), "--batch", str(a.batch),
        "--steps", str(a.steps), "--warmup", str(a.warmup), "--repeats", str(a.repeats), "--dtype", a.dtype,
        "--device", a.device, "--threads", str(a.threads), "--impls", *a.impls,
    ]


def spawn(a, extra: list[str]) -> tuple[dict | None, str]:
    cmd = [sys.executable, str(Path(__file__).resolve()), *forwarded_args(a), *extra]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=a.timeout)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {a.timeout:.0f}s"
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG):]), ""
    if proc.returncode < 0:
        return None, f"killed by signal {-proc.returncode}" + (" (out of memory?)" if proc.returncode == -9 else "")
    tail = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    return None, f"exit {proc.returncode}: {tail[-1] if tail else 'no output'}"


def measure(a, impl, T) -> tuple[dict | None, str]:
    """One cell; rerun (up to ``--retries`` times) when other processes took the CPUs meanwhile."""
    best, why = None, ""
    for _ in range(1 + a.retries):
        if a.device == "cpu":
            wait_quiet(a.wait_quiet, a.quiet_share)
        r, why = spawn(a, ["--_child", impl, "--_length", str(T)])
        if r is None:
            return best, why
        share = r.get("others_cpu_share")
        if best is None or (share or 0) < (best.get("others_cpu_share") or 0):
            best = r
        if share is None or share < a.quiet_share:
            break
    return best, ""


# ----------------------------------------------------------------------------- report


def saved_scores_bytes(a, T) -> int:
    """fp32 scores a materializing attention keeps for backward: ``[B, H, T, T + j]`` per TTT step."""
    return sum(a.batch * a.heads * T * (T + j) * 4 for j in range(a.steps))


def tokens_per_s(r):
    return r["length"] * r["batch"] / r["seconds"]


def fmt_rate(r):
    return f"{tokens_per_s(r):,.0f}" if r else "-"


def fmt_mfu(r):
    return f"{100 * r['mfu']:.0f}%" if r else "-"


def fmt_mib(r):
    return f"{r['peak_bytes'] / 2**20:,.0f}" if r else "-"


def ratio(num, den):
    return "-" if num is None or den is None or den <= 0 else f"{num / den:.2f}x"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lengths", type=int, nargs="+", default=[512, 1024, 2048, 4096, 8192])
    p.add_argument("--steps", type=int, default=7, help="TTT unroll depth")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--shape", choices=SHAPES, default="gpt-oss",
                   help="size preset: gpt-oss proportions scaled down, or attention-heavy (see the docstring)")
    p.add_argument("--hidden", type=int)
    p.add_argument("--heads", type=int)
    p.add_argument("--kv-heads", type=int)
    p.add_argument("--head-dim", type=int)
    p.add_argument("--intermediate", type=int, help="draft MLP width (gpt-oss drafts: 6 x hidden)")
    p.add_argument("--draft-vocab", type=int)
    p.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32", help="bf16: autocast, as training.bf16")
    p.add_argument("--peak-seconds", type=float, default=4.0, help="time spent measuring the matmul peak")
    p.add_argument("--vocab", type=int, default=201088, help="target vocabulary (gpt-oss: 201,088)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3, help="timed steps; the median is reported")
    p.add_argument("--impls", nargs="+", choices=IMPLS, default=list(IMPLS))
    p.add_argument("--device", default="cuda" if _cuda_available() else "cpu")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per (implementation, length) run")
    p.add_argument("--wait-quiet", type=float, default=300,
                   help="before each cell, wait up to this many seconds for other processes to leave the CPUs")
    p.add_argument("--quiet-share", type=float, default=0.15,
                   help="share of all CPUs other processes may use for a timing to count as undisturbed")
    p.add_argument("--retries", type=int, default=2, help="reruns of a cell that other processes disturbed")
    p.add_argument("--memory-margin", type=float, default=0.85,
                   help="skip a naive/nemo run predicted to need more than this share of the free memory")
    p.add_argument("--no-check", action="store_true", help="skip the small-length agreement check")
    p.add_argument("--json", type=Path, help="also write the raw results here")
    p.add_argument("--_child", dest="impl", choices=IMPLS, help=argparse.SUPPRESS)
    p.add_argument("--_length", dest="length", type=int, help=argparse.SUPPRESS)
    p.add_argument("--_check", dest="check", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    for key, value in SHAPES[a.shape].items():
        if getattr(a, key) is None:
            setattr(a, key, value)
    if a.impl or a.check:
        return child_main(a)

    import torch

    threads = a.threads or torch.get_num_threads()
    print(f"TTT-{a.steps} training step = ttt_objective forward + backward + grad clip + AdamW step; "
          f"{a.device}, torch {torch.__version__}, {threads} threads, {os.cpu_count()} CPUs")
    print(shape_line(a))
    if "nemo" in a.impls:
        ok, why = nemo_importable()
        print(f"NeMo AutoModel: {why}" + ("" if ok else " -> lean vs naive only"))
        if ok:
            precision = "bf16 autocast" if a.dtype == "bf16" else "fp32"
            print("  runs Eagle3TrainerModule over GptOssEagle3DraftModel (same GptOssConfig, no biases, frozen "
                  f"embeddings, offline target_probs/position_mask inputs), {precision} as ours, eager attention: "
                  "its flash_attention_2 option needs the CUDA-only flash-attn package, so on CPU it materializes "
                  "[B, heads, T, T+j] scores as our naive path does.")
        else:
            a.impls = [i for i in a.impls if i != "nemo"]
    peak, peak_how = measure_peak(a, torch)
    print(f"matmul peak: {peak / 1e9:,.0f} GFLOP/s {a.dtype} ({peak_how}); MFU = model FLOPs per token x tokens/s "
          f"/ peak (FLOPs counted as in the docstring)")
    for T in a.lengths:
        mm, att = step_flops(a, T)
        print(f"  {T} tokens: {(mm + att) / (a.batch * T) / 1e6:,.1f} MFLOP per token "
              f"(matmul {mm / (a.batch * T) / 1e6:,.1f}, attention {att / (a.batch * T) / 1e6:,.1f})")
    print(f"memory: peak added by the step over the built model, optimizer and inputs "
          f"({'max_memory_allocated' if a.device.startswith('cuda') else 'process RSS high-water mark'}, "
          f"incl. grads and AdamW state); time: median of {a.repeats} steps after {a.warmup} warmup; one "
          f"subprocess per cell; \"others\": the largest share of the CPUs other processes took while a cell "
          f"of the row was timed.")
    if not a.no_check:
        check, why = spawn(a, ["--_check"])
        if check is None:
            print(f"agreement check failed: {why}")
        else:
            line = (f"check at 96 tokens: lean vs naive |dloss| {check['lean_naive_loss_diff']:.1e}, max grad "
                    f"rel diff {check['lean_naive_grad_rel']:.1e}")
            if "nemo_loss" in check:
                line += (f"; NeMo on our weights: loss {check['nemo_loss']:.6f} vs ours {check['loss']:.6f}"
                         f" (|d| {check['nemo_loss_diff']:.1e})")
                if check["nemo_key_mismatch"]:
                    line += f", unmapped keys {check['nemo_key_mismatch']}"
            print(line)
    print(flush=True)

    names = {"lean": "lean", "lean+ckpt": "ckpt", "naive": "naive", "nemo": "nemo"}
    cols = ["tokens"]
    for impl in a.impls:
        cols += [f"{names[impl]} tok/s", f"{names[impl]} MFU", f"{names[impl]} MiB"]
    if "naive" in a.impls:
        cols += ["lean/naive tok/s", "naive/lean MiB"]
    if "nemo" in a.impls:
        cols += ["lean/nemo tok/s", "nemo/lean MiB"]
        if "lean+ckpt" in a.impls:
            cols += ["ckpt/nemo tok/s", "nemo/ckpt MiB"]
    cols += ["others"]
    widths = [max(len(c), 7) for c in cols]
    print("  ".join(c.rjust(w) for c, w in zip(cols, widths)), flush=True)

    results, notes = {}, []
    for T in a.lengths:
        row = {}
        for impl in IMPLS:
            if impl not in a.impls:
                continue
            if impl in ("naive", "nemo") and a.device == "cpu":
                free, lean = _mem_available_bytes(), row.get("lean")
                need = SCORE_OVERHEAD * saved_scores_bytes(a, T) + (lean["peak_bytes"] if lean else 0)
                if free is not None and need > a.memory_margin * free:
                    notes.append(f"{impl} at {T} tokens: not run, predicted to need ~{need / 2**30:.0f} GiB "
                                 f"({saved_scores_bytes(a, T) / 2**30:.1f} GiB of saved fp32 scores) with "
                                 f"{free / 2**30:.1f} GiB free")
                    row[impl] = None
                    continue
            r, why = measure(a, impl, T)
            if r is not None:
                r["mfu"] = sum(step_flops(a, T)) / r["seconds"] / peak
            if r is None:
                notes.append(f"{impl} at {T} tokens: {why}")
            elif (r.get("others_cpu_share") or 0) >= a.quiet_share:
                notes.append(f"{impl} at {T} tokens: other processes took {100 * r['others_cpu_share']:.0f}% of "
                             f"the CPUs while it was timed, even after {a.retries} reruns; its time is pessimistic")
            row[impl] = r
            print(f"  [{impl} {T}: " + (f"{r['seconds']:.2f} s/step (steps {', '.join(f'{s:.2f}' for s in r['all_seconds'])}), "
                                        f"+{r['peak_bytes'] / 2**20:.0f} MiB" if r else why) + "]",
                  file=sys.stderr, flush=True)
        results[T] = row
        sec = lambda k: row[k]["seconds"] if row.get(k) else None  # noqa: E731
        mem = lambda k: row[k]["peak_bytes"] if row.get(k) else None  # noqa: E731
        cells = [str(T)]
        for impl in a.impls:
            cells += [fmt_rate(row.get(impl)), fmt_mfu(row.get(impl)), fmt_mib(row.get(impl))]
        if "naive" in a.impls:
            cells += [ratio(sec("naive"), sec("lean")), ratio(mem("naive"), mem("lean"))]
        if "nemo" in a.impls:
            cells += [ratio(sec("nemo"), sec("lean")), ratio(mem("nemo"), mem("lean"))]
            if "lean+ckpt" in a.impls:
                cells += [ratio(sec("nemo"), sec("lean+ckpt")), ratio(mem("nemo"), mem("lean+ckpt"))]
        shares = [r["others_cpu_share"] for r in row.values() if r and r.get("others_cpu_share") is not None]
        cells += [f"{100 * max(shares):.0f}%" if shares else "-"]
        print("  ".join(c.rjust(w) for c, w in zip(cells, widths)), flush=True)

    for note in notes:
        print("note: " + note)
    if "nemo" in a.impls and 4096 in results and results[4096].get("nemo"):
        nemo = results[4096]["nemo"]
        for impl in ("lean", "lean+ckpt"):
            ours = results[4096].get(impl)
            if ours:
                speed, memory = nemo["seconds"] / ours["seconds"], nemo["peak_bytes"] / ours["peak_bytes"]
                print(f"aim at 4096 tokens ({impl}): tokens/s {speed:.2f}x NeMo's (aim >= 5x: "
                      f"{'met' if speed >= 5 else 'not met'}), peak memory 1/{memory:.2f} of NeMo's (aim <= 1/4: "
                      f"{'met' if memory >= 4 else 'not met'})")
    if a.json:
        a.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(a).items()}, "peak_flops": peak,
                                      "peak_how": peak_how, "results": results}, indent=1))


def measure_peak(a, torch) -> tuple[float, str]:
    """The matmul peak in ``--dtype`` with the cells' thread count, after waiting for quiet CPUs."""
    device = torch.device(a.device)
    if a.threads:
        torch.set_num_threads(a.threads)
    if device.type == "cpu":
        wait_quiet(a.wait_quiet, a.quiet_share)
    return matmul_peak(device, torch.bfloat16 if a.dtype == "bf16" else torch.float32, a.peak_seconds)


def _cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


if __name__ == "__main__":
    main()
