"""Live conformance with released vLLM: drafts trained and exported by draftsmith, decoded by vLLM.

For each draft variant (aux layers, norms, the speculators export) of a tiny gpt-oss and a tiny
Llama target, `draftsmith eval` and vLLM (its own venv, `vllm_driver.py`) decode the same
token-id prompts greedily in fp32, near the start and past 16x the draft's training length.
vLLM must produce the same tokens, the same number of verification rounds and the same accepted
count per draft position: then it runs the draft exactly as draftsmith trained and measures it.
Each slip that `draftsmith inspect` calls `wrong` for vLLM is then made by hand in a copy of a
faithful gpt-oss export, and vLLM must accept fewer tokens with it than with the faithful one: the
verdict is real. A config vLLM rejects at load time must be called `refuses`.

Prompts: `draftsmith eval --contexts 0,LONG_CONTEXT` builds them (earlier chats as history for the
late ones); the same ids are rebuilt here with its own prompt functions and handed to vLLM.
Counting: both sides count a verification round whenever drafts were proposed, and count the
final round whole even when `max_tokens` cuts its tokens (vLLM's scheduler records acceptance
before its stop check; draftsmith records `accepted` per round before trimming), and both stop
at the same `max_tokens` or end-of-sequence token, so the numbers compare exactly.

Needs the vLLM venv from `scripts/vllm-venv.sh` (`$DRAFTSMITH_VLLM_VENV`, default `.venv-vllm`).
Without it the tests skip, unless `CI` is set: there a missing venv fails, so that a skipped
engine test never passes for coverage. `DRAFTSMITH_ENGINE_REPORT=FILE` writes the side-by-side
table (also printed at the end of the session).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file
from transformers import AutoTokenizer, GptOssForCausalLM, LlamaForCausalLM

from draftsmith.cli import main
from draftsmith.data import DataConfig, build_dataset
from draftsmith.demo import demo_conversations
from draftsmith.demo.builders import train_demo_target
from draftsmith.evaluate.prompts import PromptSet, build_prompts, read_prompt_conversations
from tiny_models import tiny_gpt_oss_config, tiny_llama_config
from tiny_tokenizers import save_tiny_tokenizer

pytestmark = pytest.mark.engine

REPO = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name("vllm_driver.py")
STEPS = 3  # drafted tokens per round, as trained (TTT steps)
TRAIN_LENGTH = 256  # the drafts' training length (data.max_length): whole chats, answers included
LONG_CONTEXT = 17 * TRAIN_LENGTH  # the late prompts start past 16x the training length, below this
MAX_NEW_TOKENS = 48
PROMPT_CONVERSATIONS = 3  # each prompted near the start and near LONG_CONTEXT
MAX_MODEL_LEN = LONG_CONTEXT + 512
TARGET_STEPS = 400  # enough for the target to answer the chats in their fixed phrasing
WRONG, REFUSES = "wrong", "refuses"


@dataclass(frozen=True)
class Family:
    """A tiny target shape (head_dim 32: vLLM's CPU attention takes 32..512) and its chat format."""

    model_class: type
    config: Callable[..., Any]
    tokenizer: str
    cases: dict[str, dict[str, Any]]  # case -> recipe `draft` section entries


SHAPE = dict(hidden_size=64, num_attention_heads=2, num_key_value_heads=1, head_dim=32, num_hidden_layers=8,
             max_position_embeddings=8192)
# With 8 layers the default aux layers are the engines' own default, so the default draft names no engine ids.
COMMON_CASES = {"default": {}, "aux-without-final": {"aux_layer_ids": [0, 3, 5]},
                "norm-before-fc": {"norm_before_fc": True}, "fc-norm": {"fc_norm": True},
                "norm-output": {"norm_output": True}}
FAMILIES = {
    # MoE, attention sinks, sliding/full layers (window 32), YaRN 256 -> 8192.
    "gpt-oss": Family(GptOssForCausalLM, tiny_gpt_oss_config, "harmony",
                      {**COMMON_CASES, "aux-with-final": {"aux_layer_ids": [1, 4, 7]}}),
    # llama3 rope scaling. draftsmith refuses the last layer's output for Llama (SGLang cannot capture it).
    "llama": Family(LlamaForCausalLM, tiny_llama_config, "llama3", COMMON_CASES),
}
SPECULATORS = "speculators"  # the default draft exported in vLLM's speculators format


# Slips: name -> (faithful case copied, edit of its config.json / weights given the target's config).
def _other_aux_ids(config: dict, weights: dict, target: dict) -> None:
    """vLLM reads top-level ids as hidden-state indices; our record keeps the trained ones."""
    trained = config["draftsmith"]["aux_hidden_state_indices"]
    config["eagle_aux_hidden_state_layer_ids"] = [i for i in (1, 6, 8) if i not in trained]


def _target_window(config: dict, weights: dict, target: dict) -> None:
    """The target's window on the draft's one layer (its first layer type, sliding for gpt-oss)."""
    config.update(sliding_window=target["sliding_window"], layer_types=target["layer_types"][:1])


def _target_layer_types(config: dict, weights: dict, target: dict) -> None:
    """Copied verbatim: one layer type per target layer, for a one-layer draft."""
    config.update(sliding_window=target["sliding_window"], layer_types=target["layer_types"])


def _no_d2t(config: dict, weights: dict, target: dict) -> None:
    assert config["draft_vocab_size"] < config["vocab_size"]
    del weights["d2t"]


def _norm_before_fc_off(config: dict, weights: dict, target: dict) -> None:
    """Off where vLLM reads it: the nested flag first, then the top-level one."""
    assert "input_norm.weight" in weights
    config["norm_before_fc"] = False
    config.get("eagle_config", {}).pop("norm_before_fc", None)


def _eagle1(config: dict, weights: dict, target: dict) -> None:
    """``use_aux_hidden_state: false``: vLLM feeds the target's last hidden state and builds no fc."""
    config["eagle_config"] = {**config.get("eagle_config", {}), "use_aux_hidden_state": False}


def _float_d2t(config: dict, weights: dict, target: dict) -> None:
    """SGLang cannot index with a float d2t; vLLM copies it into its int64 mapping."""
    weights["d2t"] = weights["d2t"].float()


SLIPS = {"aux-ids": ("default", _other_aux_ids), "target-window": ("default", _target_window),
         "no-d2t": ("default", _no_d2t), "norm-before-fc-off": ("norm-before-fc", _norm_before_fc_off),
         "eagle1": ("default", _eagle1)}
# Edits inspect calls harmless for vLLM (whatever it says for SGLang): vLLM must run them exactly as the source.
HARMLESS = {"float-d2t": ("default", _float_d2t)}
SLIP_FAMILY = "gpt-oss"


def _two_layers(config: dict, weights: dict, target: dict) -> None:
    """A second draft layer with no weights: on gpt-oss vLLM puts the two in different KV cache groups."""
    config["num_hidden_layers"] = 2


# vLLM 0.32's transformers rejects the config ("num_hidden_layers (1) must be equal to the number of layer_types").
# A second draft layer on gpt-oss: "All drafting layers should belong to the same kv cache group".
REFUSED = {"target-layer-types": ("default", _target_layer_types), "two-layers": ("default", _two_layers)}


def vllm_python() -> Path | None:
    venv = Path(os.environ.get("DRAFTSMITH_VLLM_VENV", REPO / ".venv-vllm"))
    python = venv / "bin" / "python"
    return python if python.is_file() else None


def cli(*args: str) -> str:
    """Run a draftsmith command in this process (the console script's own entry point); its stdout."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(args))
    assert code in (0, 1), f"draftsmith {' '.join(args)} exited {code}:\n{out.getvalue()}"
    return out.getvalue()


def build_target(family: Family, root: Path, data: Path) -> Path:
    """A tiny target trained on the chats, so its greedy answers are predictable for a briefly trained draft."""
    directory = root / "target"
    save_tiny_tokenizer(family.tokenizer, directory)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    ids = {k: getattr(tokenizer, k) for k in ("pad_token_id", "bos_token_id", "eos_token_id")}
    torch.manual_seed(0)
    model = family.model_class(family.config(**SHAPE, **ids, vocab_size=len(tokenizer)))
    samples, _ = build_dataset([data], tokenizer, DataConfig(max_length=512))
    train_demo_target(model, [list(s.input_ids) for s in samples], TARGET_STEPS, progress=False)
    model.save_pretrained(directory)
    return directory


def train_draft(root: Path, target: Path, data: Path, name: str, draft: dict[str, Any]) -> Path:
    """`draftsmith train` on a tiny recipe; the run's exported draft directory."""
    recipe = {
        "target": {"path": str(target), "dtype": "float32", "device": "cpu"},
        "data": {"train": [str(data)], "max_length": TRAIN_LENGTH, "cache_dir": str(root / "cache")},
        "draft": {"draft_vocab_size": 256, "vocab_file": str(root / "vocab.safetensors"), **draft},
        "training": {"output_dir": str(root / name), "ttt_steps": STEPS, "micro_batch_size": 4,
                     "learning_rate": 3e-3, "warmup_steps": 2, "max_steps": 80, "log_every": 40,
                     "save_every": 1000, "seed": 0},
        "evaluation": {"prompts": 0},
    }
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    cli("train", str(path), "--no-progress")
    return root / name / "draft"


def write_slip(source: Path, out: Path, edit: Callable[[dict, dict, dict], None], target: Path) -> Path:
    shutil.copytree(source, out)
    config = json.loads((out / "config.json").read_text())
    weights = load_file(out / "model.safetensors")
    edit(config, weights, json.loads((target / "config.json").read_text()))
    (out / "config.json").write_text(json.dumps(config, indent=2))
    save_file(weights, out / "model.safetensors")
    return out


def eval_prompts(data: Path, target: Path) -> list[list[int]]:
    """The token ids `draftsmith eval` builds from ``data`` with the same options (its own functions)."""
    tokenizer = AutoTokenizer.from_pretrained(target)
    limit = json.loads((target / "config.json").read_text())["max_position_embeddings"]
    found = PromptSet([])
    build_prompts(read_prompt_conversations(data, found), tokenizer, [0, LONG_CONTEXT], limit, found,
                  PROMPT_CONVERSATIONS)
    return [p.input_ids for p in found.prompts]


def run_vllm(python: Path, root: Path, target: Path, drafts: dict[str, Path], prompts: list[list[int]]
             ) -> tuple[str, dict[str, dict]]:
    """All drafts through one vLLM process (vllm_driver.py): its version and each draft's result by name."""
    request = {"target": str(target), "max_model_len": MAX_MODEL_LEN, "max_tokens": MAX_NEW_TOKENS,
               "prompts": prompts,
               "drafts": [{"name": n, "dir": str(d), "num_speculative_tokens": STEPS} for n, d in drafts.items()]}
    (root / "vllm-request.json").write_text(json.dumps(request))
    log = root / "vllm.log"
    # KV cache in GiB; on CPU gpu_memory_utilization is the share of RAM vLLM may reserve.
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
    with open(log, "w") as f:
        done = subprocess.run([str(python), str(DRIVER), str(root / "vllm-request.json"), str(root / "vllm.json")],
                              env=env, stdout=f, stderr=subprocess.STDOUT, cwd=root, timeout=900)
    assert done.returncode == 0, f"vLLM driver failed ({log}):\n{log.read_text()[-4000:]}"
    result = json.loads((root / "vllm.json").read_text())
    return result["vllm_version"], {d["name"]: d for d in result["drafts"]}


@dataclass(frozen=True)
class Decoded:
    """One prompt's greedy speculative decode as both sides can state it."""

    tokens: list[int]
    rounds: int  # verification rounds with drafts
    accepted_per_pos: list[int]  # rounds whose draft at position j was accepted

    @classmethod
    def from_draftsmith(cls, prompt: dict) -> Decoded:
        per_round = prompt["accepted"]
        return cls(prompt["generated_ids"], len(per_round), [sum(a > j for a in per_round) for j in range(STEPS)])

    @classmethod
    def from_vllm(cls, prompt: dict) -> Decoded:
        return cls(prompt["tokens"], prompt["num_drafts"], prompt["accepted_per_pos"])


@dataclass
class FamilyRun:
    name: str
    target: Path
    starts: list[int]  # prompt lengths
    drafts: dict[str, Path]
    ours: dict[str, list[Decoded]]  # faithful cases only
    vllm: dict[str, list[Decoded]]  # faithful cases and slips
    vllm_errors: dict[str, str]  # drafts vLLM refused to load: its error
    vllm_version: str
    verdicts: dict[str, str] = field(default_factory=dict)  # inspect's vLLM verdict, filled in by the tests

    def vllm_verdict(self, case: str) -> str:
        """`draftsmith inspect --json`'s vLLM verdict, kept for the report table."""
        report = json.loads(cli("inspect", str(self.drafts[case]), "--target", str(self.target), "--json"))
        self.verdicts[case] = report["engines"]["vllm"]["verdict"]
        return self.verdicts[case]


def totals(decoded: list[Decoded]) -> tuple[int, list[int]]:
    return sum(d.rounds for d in decoded), [sum(col) for col in zip(*(d.accepted_per_pos for d in decoded))]


def describe(decoded: list[Decoded]) -> str:
    rounds, accepted = totals(decoded)
    return f"{'/'.join(map(str, accepted))} of {rounds}"


def table(runs: list[FamilyRun]) -> str:
    """Markdown: per case, accepted per draft position of all rounds, draftsmith next to vLLM."""
    lines = [f"| target | draft | inspect (vLLM) | draftsmith eval: accepted at positions 1/2/3 of rounds | "
             f"vLLM {runs[0].vllm_version}: the same | same tokens |",
             "|---|---|---|---:|---:|---|"]
    for run in runs:
        for case in run.drafts:
            ours, vllm = run.ours.get(case), run.vllm.get(case)
            theirs = describe(vllm) if vllm else "refused to load"
            same = "-" if not ours else "yes" if ours == vllm else "no"
            lines.append(f"| {run.name} | {case} | {run.verdicts.get(case, '-')} | {describe(ours) if ours else '-'} | "
                         f"{theirs} | {same} |")
    return "\n".join(lines)


@pytest.fixture(scope="session")
def engine_report(request):
    """Collects every family's run; at the end writes the side-by-side table and prints it."""
    runs: list[FamilyRun] = []
    yield runs
    if not runs:
        return
    text = table(runs)
    if os.environ.get("DRAFTSMITH_ENGINE_REPORT"):
        Path(os.environ["DRAFTSMITH_ENGINE_REPORT"]).write_text(text + "\n")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        print("\nlive vLLM conformance (pytest -m engine):\n" + text)


def build_family_run(name: str, root: Path, python: Path) -> FamilyRun:
    """Target, drafts, exports, `draftsmith eval`, hand-made slips, and one vLLM run over all of them."""
    family = FAMILIES[name]
    data, prompt_data = root / "train.jsonl", root / "prompts.jsonl"
    for path, count, seed in ((data, 200, 0), (prompt_data, 8, 1)):
        path.write_text("".join(json.dumps(chat) + "\n" for chat in demo_conversations(count, seed)))
    target = build_target(family, root, data)
    drafts = {case: train_draft(root, target, data, case, draft) for case, draft in family.cases.items()}
    drafts[SPECULATORS] = root / SPECULATORS
    cli("export", str(drafts["default"]), str(drafts[SPECULATORS]), "--verifier", str(target),
        "--speculative-tokens", str(STEPS))

    report = root / "eval.json"
    cli("eval", "--target", str(target), *(a for d in drafts.values() for a in ("--draft", str(d))),
        "--data", str(prompt_data), "--contexts", f"0,{LONG_CONTEXT}", "--max-prompts", str(PROMPT_CONVERSATIONS),
        "--steps", str(STEPS), "--max-new-tokens", str(MAX_NEW_TOKENS), "--dtype", "float32", "--json", str(report),
        "--no-progress")
    sections = {s["name"]: s for s in json.loads(report.read_text())["drafts"]}
    ours = {case: [Decoded.from_draftsmith(p) for p in sections[str(d)]["prompts"]] for case, d in drafts.items()}
    starts = [p["start"] for p in sections[str(drafts["default"])]["prompts"]]
    prompts = eval_prompts(prompt_data, target)
    assert [len(p) for p in prompts] == starts, "the prompts rebuilt here are not the ones draftsmith eval decoded"

    if name == SLIP_FAMILY:  # after the faithful drafts, in one vLLM process with them; the refused one last
        for slip, (source, edit) in {**SLIPS, **HARMLESS, **REFUSED}.items():
            drafts[slip] = write_slip(drafts[source], root / slip, edit, target)
    version, result = run_vllm(python, root, target, drafts, prompts)
    vllm = {case: [Decoded.from_vllm(p) for p in r["prompts"]] for case, r in result.items() if "error" not in r}
    errors = {case: r["error"] for case, r in result.items() if "error" in r}
    return FamilyRun(name, target, starts, drafts, ours, vllm, errors, version)


@pytest.fixture(scope="session")
def family_run(tmp_path_factory, engine_report) -> Callable[[str], FamilyRun]:
    """``family_run(name)``: that family's run, built once per session (a failed build is not repeated)."""
    python = vllm_python()
    if python is None:
        message = "no vLLM venv: run scripts/vllm-venv.sh (or set DRAFTSMITH_VLLM_VENV)"
        if os.environ.get("CI"):
            pytest.fail(message + "; CI must run the engine tests, not skip them")
        pytest.skip(message)
    built: dict[str, FamilyRun | Exception] = {}

    def get(name: str) -> FamilyRun:
        if name not in built:
            try:
                built[name] = build_family_run(name, tmp_path_factory.mktemp(name), python)
                engine_report.append(built[name])
            except Exception as error:
                built[name] = error
        if isinstance(built[name], Exception):
            raise built[name]
        return built[name]

    return get


CONFORMANCE = [(f, c) for f, family in FAMILIES.items() for c in [*family.cases, SPECULATORS]]


@pytest.mark.parametrize("family, case", CONFORMANCE, ids=[f"{f}-{c}" for f, c in CONFORMANCE])
def test_vllm_decodes_as_draftsmith_evaluates(family_run, family, case):
    """Same tokens, rounds and accepted count per position, prompt by prompt, near the start and past 16x."""
    run = family_run(family)
    ours, theirs = run.ours[case], run.vllm[case]
    verdict = run.vllm_verdict(case)
    late = [i for i, start in enumerate(run.starts) if start > 16 * TRAIN_LENGTH]
    early = [i for i, start in enumerate(run.starts) if start <= TRAIN_LENGTH]
    assert late and early and len(late) + len(early) == len(ours)
    for group in (early, late):  # real acceptance at both ends, or equality would prove little
        assert totals([ours[i] for i in group])[1][0] > 0
    assert theirs == ours
    assert verdict not in (WRONG, REFUSES)


@pytest.mark.parametrize("slip", list(SLIPS))
def test_a_slip_inspect_calls_wrong_costs_vllm_acceptance(family_run, slip):
    """What inspect calls wrong for vLLM loads there without an error and drafts worse.

    The greedy output is the faithful draft's, so accepted tokens = generated - 1 - rounds: fewer
    accepted tokens is more target forwards for the same text. Greedy fp32 decoding is
    deterministic, so any shortfall is the slip's doing, not noise; the table shows its size.
    """
    run = family_run(SLIP_FAMILY)
    verdict = run.vllm_verdict(slip)
    slipped, faithful = run.vllm[slip], run.vllm[SLIPS[slip][0]]
    assert [d.tokens for d in slipped] == [d.tokens for d in faithful]
    assert sum(totals(slipped)[1]) < sum(totals(faithful)[1]), describe(slipped) + " against " + describe(faithful)
    assert verdict == WRONG


@pytest.mark.parametrize("slip", list(REFUSED))
def test_a_draft_vllm_refuses_is_called_refuses(family_run, slip):
    """A config vLLM rejects at load time is `refuses`, not `wrong`: the user sees an error, not a slow draft."""
    run = family_run(SLIP_FAMILY)
    verdict = run.vllm_verdict(slip)
    assert slip in run.vllm_errors
    assert verdict == REFUSES, run.vllm_errors[slip]


@pytest.mark.parametrize("edit", list(HARMLESS))
def test_an_edit_inspect_calls_ok_for_vllm_runs_as_the_source(family_run, edit):
    """What inspect calls ok for vLLM (a float d2t, which SGLang refuses) decodes exactly as the faithful draft."""
    run = family_run(SLIP_FAMILY)
    assert run.vllm_verdict(edit) == "ok"
    assert run.vllm[edit] == run.vllm[HARMLESS[edit][0]]
