"""The README's API example runs as written, against the tiny gpt-oss shipped with draftsmith."""

from __future__ import annotations

import re
from pathlib import Path

import torch

README = Path(__file__).parents[1] / "README.md"


def _api_example() -> str:
    section = README.read_text().split("## API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_api_example_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(_api_example(), str(README), "exec"), namespace)
    tokens, logits, draft = namespace["tokens"], namespace["logits"], namespace["draft"]
    assert logits.shape == (7, 1, tokens.shape[1] - 1, draft.config.draft_vocab_size)
    assert not draft.training and (tmp_path / "my-draft" / "model.safetensors").is_file()
    assert namespace["cos"].shape == (1, 8, draft.config.head_dim)
    assert draft.config.aux_layer_ids == (0, 1, 2)  # what the example's comment says
    reloaded = draft.unroll(tokens[:, 1:], namespace["out"].aux_hidden_states[:, :-1], steps=1)[0]
    assert torch.allclose(reloaded, logits[0], atol=1e-5)  # the saved draft is the one that drafted
