"""A laptop-sized gpt-oss to try draftsmith on: ``draftsmith demo DIR``.

No model hub is needed. The command builds a tiny gpt-oss target of the real architecture
(MoE, alternating sliding/full attention, sinks, YaRN factor 32), a small byte-level BPE
tokenizer with the harmony chat format, and a few hundred synthetic chats; it then trains
the target on those chats briefly (seconds on a CPU) so that its next-token distributions carry real
structure for a draft to learn. ``draftsmith train examples/tiny-gpt-oss.yaml`` then
trains a draft against it on a CPU in well under a minute.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from tqdm.auto import tqdm
from transformers import GptOssConfig, GptOssForCausalLM, PreTrainedTokenizerFast

from draftsmith.atomic import atomic_directory, refuse_overwrite

HARMONY_SPECIAL_TOKENS = ["<|startoftext|>", "<|endoftext|>", "<|start|>", "<|end|>", "<|message|>", "<|channel|>",
                          "<|constrain|>", "<|return|>", "<|call|>"]
HARMONY_NAMED_TOKENS = {"bos_token": "<|startoftext|>", "eos_token": "<|return|>", "pad_token": "<|endoftext|>"}

# The shape of gpt-oss's own template: system header, developer instructions, analysis dropped
# from earlier turns once a final answer follows, the last generated message ending <|return|>.
HARMONY_TEMPLATE = r"""
{{- '<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\nReasoning: ' + (reasoning_effort | default('medium')) }}
{{- '\n\n# Valid channels: analysis, commentary, final. Channel must be included for every message.' }}
{%- if tools %}{{- "\nCalls to these tools must go to the commentary channel: 'functions'." }}{%- endif %}
{{- '<|end|>' }}
{%- if messages and messages[0].role in ['system', 'developer'] %}
  {{- '<|start|>developer<|message|># Instructions\n\n' + messages[0].content + '<|end|>' }}
  {%- set loop_messages = messages[1:] %}
{%- else %}
  {%- set loop_messages = messages %}
{%- endif %}
{%- set last_call = namespace(name='') %}
{%- for message in loop_messages %}
  {%- set later = namespace(final=false) %}
  {%- for other in loop_messages[loop.index0 + 1:] %}
    {%- if other.role == 'assistant' and 'tool_calls' not in other %}{%- set later.final = true %}{%- endif %}
  {%- endfor %}
  {%- if message.role == 'assistant' and 'tool_calls' in message %}
    {%- set call = message.tool_calls[0].function %}
    {%- if message.thinking and not later.final %}
      {{- '<|start|>assistant<|channel|>analysis<|message|>' + message.thinking + '<|end|>' }}
    {%- endif %}
    {{- '<|start|>assistant to=functions.' + call.name + '<|channel|>commentary json<|message|>' + call.arguments | tojson + '<|call|>' }}
    {%- set last_call.name = call.name %}
  {%- elif message.role == 'assistant' and loop.last and not add_generation_prompt %}
    {%- if 'thinking' in message %}
      {{- '<|start|>assistant<|channel|>analysis<|message|>' + message.thinking + '<|end|>' }}
    {%- endif %}
    {{- '<|start|>assistant<|channel|>final<|message|>' + message.content + '<|return|>' }}
  {%- elif message.role == 'assistant' %}
    {{- '<|start|>assistant<|channel|>final<|message|>' + message.content + '<|end|>' }}
  {%- elif message.role == 'tool' %}
    {{- '<|start|>functions.' + last_call.name + ' to=assistant<|channel|>commentary<|message|>' + message.content | tojson + '<|end|>' }}
  {%- elif message.role == 'user' %}
    {{- '<|start|>user<|message|>' + message.content + '<|end|>' }}
  {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
  {{- '<|start|>assistant' }}
{%- endif %}
""".strip()


def byte_level_bpe(corpus: list[str], vocab_size: int) -> Tokenizer:
    """A byte-level BPE trained on ``corpus``: every string encodes, common words become one id."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    return tokenizer


def chat_tokenizer(backend: Tokenizer, template: str, specials: list[str], named: dict[str, str],
                   plain: list[str] = ()) -> PreTrainedTokenizerFast:
    """Wrap a trained backend with special tokens (highest ids, as in real tokenizers) and a chat template."""
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, **named)
    tokenizer.add_tokens(list(plain))
    tokenizer.add_special_tokens({"additional_special_tokens": [t for t in specials if t not in named.values()]})
    tokenizer.add_special_tokens(dict(named))
    tokenizer.chat_template = template
    return tokenizer


def demo_conversations(count: int, seed: int = 0) -> list[dict]:
    """Synthetic chats in OpenAI ``messages`` form, with reasoning on the assistant turns."""
    rng = random.Random(seed)
    capitals = {"France": "Paris", "Germany": "Berlin", "Italy": "Rome", "Spain": "Madrid", "Japan": "Tokyo"}
    fruits = ["apples", "bananas", "cherries", "dates", "figs", "grapes"]
    chats = []
    for _ in range(count):
        kind = rng.randrange(3)
        if kind == 0:
            a, b = rng.randint(1, 20), rng.randint(1, 20)
            user, thinking = f"What is {a} plus {b}?", f"The user wants a sum. {a} plus {b} is {a + b}."
            answer = f"The answer is {a + b}. Let me know if you need anything else."
        elif kind == 1:
            country = rng.choice(sorted(capitals))
            user, thinking = f"What is the capital of {country}?", f"The capital of {country} is {capitals[country]}."
            answer = f"The capital of {country} is {capitals[country]}. Have a nice day."
        else:
            picked = rng.sample(fruits, 3)
            user, thinking = "Please list three fruits.", "The user wants a short list of fruits."
            answer = f"Sure, here is a list: {picked[0]}, {picked[1]} and {picked[2]}."
        chats.append({"messages": [{"role": "user", "content": user},
                                   {"role": "assistant", "content": answer, "reasoning_content": thinking}]})
    return chats


def tiny_gpt_oss_config(**overrides) -> GptOssConfig:
    """The tiny gpt-oss of the demo and the tests: vocab 512, hidden 64, 4 heads / 2 KV heads of 16, 4 layers (sliding/full,
    window 32), 4 experts top-2, YaRN factor 32 from 256 to 8192 positions."""
    values = dict(
        vocab_size=512, hidden_size=64, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, sliding_window=32, num_local_experts=4, num_experts_per_tok=2,
        max_position_embeddings=8192,
        rope_parameters={"rope_type": "yarn", "rope_theta": 150000.0, "factor": 32.0, "beta_fast": 32.0,
                         "beta_slow": 1.0, "truncate": False, "original_max_position_embeddings": 256},
    )
    values.update(overrides)
    return GptOssConfig(**values)


def train_demo_target(model: GptOssForCausalLM, sequences: list[list[int]], steps: int, seed: int = 0,
                      progress: bool = True) -> None:
    """Plain next-token training, so the target has confident predictions for the draft to match.

    Deterministic kernels only: the MoE's multi-threaded scatter otherwise sums in a
    different order each run, and the same seed would give different weights.
    """
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        _train_steps(model, sequences, steps, generator, optimizer, progress)
    finally:
        torch.use_deterministic_algorithms(deterministic)
    model.eval()


def _train_steps(model: GptOssForCausalLM, sequences: list[list[int]], steps: int, generator: torch.Generator,
                 optimizer: torch.optim.Optimizer, progress: bool) -> None:
    for _ in tqdm(range(steps), desc="training the demo target", disable=not progress):
        picks = torch.randint(len(sequences), (8,), generator=generator).tolist()
        width = max(len(sequences[i]) for i in picks)
        ids = torch.tensor([sequences[i] + [model.config.pad_token_id] * (width - len(sequences[i])) for i in picks])
        labels = torch.tensor([sequences[i] + [-100] * (width - len(sequences[i])) for i in picks])
        loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()


def make_demo(directory: str | os.PathLike, *, records: int = 400, target_steps: int = 200, seed: int = 0,
              overwrite: bool = False, progress: bool = True) -> Path:
    """Write ``target/`` (model + tokenizer) and ``train.jsonl`` into ``directory``, atomically.

    An existing non-empty ``directory`` is refused before any work unless ``overwrite``. The
    same seed gives the same tokenizer, data and target weights (on a given number of CPU threads).
    """
    refuse_overwrite(directory, overwrite)
    torch.manual_seed(seed)
    chats = demo_conversations(records, seed)
    corpus = [m["content"] for chat in chats for m in chat["messages"]] + [HARMONY_TEMPLATE]
    backend = byte_level_bpe(corpus, 512 - len(HARMONY_SPECIAL_TOKENS))
    tokenizer = chat_tokenizer(backend, HARMONY_TEMPLATE, HARMONY_SPECIAL_TOKENS, HARMONY_NAMED_TOKENS)
    model = GptOssForCausalLM(tiny_gpt_oss_config(
        vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id))
    sequences = [tokenizer.apply_chat_template(
        [{"role": m["role"], "content": m["content"], **({"thinking": m["reasoning_content"]}
                                                         if "reasoning_content" in m else {})}
         for m in chat["messages"]], tokenize=True, return_dict=False) for chat in chats]
    train_demo_target(model, sequences, target_steps, seed, progress)
    with atomic_directory(directory, overwrite=overwrite) as staging:
        model.save_pretrained(staging / "target")
        tokenizer.save_pretrained(staging / "target")
        with open(staging / "train.jsonl", "w") as f:
            for chat in chats:
                f.write(json.dumps(chat) + "\n")
    return Path(directory)
