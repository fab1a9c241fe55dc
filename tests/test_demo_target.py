"""The shipped target's build: its fused training attention equals gpt-oss's eager attention."""

import pytest
import torch
from transformers import GptOssForCausalLM

from draftsmith.demo import attention
from tiny_models import tiny_gpt_oss_config


@pytest.mark.parametrize("length", [7, 45])  # shorter than the window, and several windows with a ragged end
def test_packed_sink_attention_matches_eager_with_gradients(length):
    torch.manual_seed(0)
    model = GptOssForCausalLM(tiny_gpt_oss_config(sliding_window=8))
    for parameter in model.parameters():
        if parameter.dim() == 1:  # sinks and biases start at zero; make them matter
            torch.nn.init.normal_(parameter, std=0.5)
    ids = torch.randint(0, 512, (2, length))
    results = []
    for implementation in ("eager", attention.NAME):
        model.config._attn_implementation = implementation
        model.zero_grad()
        out = model(input_ids=ids, labels=ids)
        out.loss.backward()
        results.append((out.logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    (eager_logits, eager_grads), (packed_logits, packed_grads) = results
    torch.testing.assert_close(packed_logits, eager_logits, rtol=0, atol=1e-5)
    for name, grad in eager_grads.items():
        torch.testing.assert_close(packed_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)
    assert eager_grads["model.layers.0.self_attn.sinks"].abs().max() > 0

