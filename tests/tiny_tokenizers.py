"""Tiny chat tokenizers built with the ``tokenizers`` library and saved with ``save_pretrained``.

No machine here downloads from a model hub, so tests build byte-level BPE tokenizers trained
on a few sentences (under 512 ids, so every id fits the tiny targets in ``tiny_models.py``),
give them the special tokens and a chat template of the same shape as the real family, save
them, and load them back through ``AutoTokenizer.from_pretrained`` as a user's tokenizer is.

Kinds:
- ``llama3``: Llama-3.1 headers (``<|start_header_id|>role<|end_header_id|>\\n\\n ... <|eot_id|>``),
  a default system block, tool calls as JSON, tool results under the ``ipython`` role.
- ``qwen3``: ChatML with ``<think>`` blocks; reasoning is kept only after the last user query,
  the last assistant message always gets a (possibly empty) think block, tool results are
  grouped into one user turn, and ``enable_thinking=False`` adds an empty think block to the
  generation prompt.
- ``harmony``: gpt-oss messages ``<|start|>{role}<|channel|>{channel}<|message|>{text}<|end|>``;
  the analysis of an assistant turn is dropped once a later final answer exists, the last
  turn ends ``<|return|>`` in training renders, tool calls end ``<|call|>``.

Special tokens get the highest ids, as in the real tokenizers, so "special tokens are always in
the draft vocabulary" is tested against rare, high ids.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from tokenizers import Tokenizer
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from draftsmith.demo import (HARMONY_NAMED_TOKENS, HARMONY_SPECIAL_TOKENS, HARMONY_TEMPLATE, byte_level_bpe,
                             chat_tokenizer)

MAX_VOCAB = 512

CORPUS = [
    "Hello! How can I help you today?",
    "What is the weather like in Paris? It is sunny and warm, about 22 degrees.",
    "The answer is 42. Two plus two is four; three times seven is twenty-one.",
    "Let me think about this step by step. First, the user asks about the capital of France.",
    "The capital of France is Paris, and the capital of Germany is Berlin.",
    "You are a helpful assistant. Answer briefly and politely.",
    "Please write a short poem about the sea, the wind and the stars.",
    'Call get_weather with {"city": "Paris", "unit": "celsius"} and report the result.',
    "Thank you very much, that was useful. Goodbye and have a nice day.",
    "Cutting Knowledge Date: December 2023. Reasoning: medium. Valid channels: analysis, commentary, final.",
    "The user wants a number. I should compute it carefully and then answer.",
    "Sure, here is a list: apples, bananas, cherries, dates and figs.",
    "system user assistant developer tool ipython analysis commentary final functions",
]

LLAMA3_TEMPLATE = r"""
{{- bos_token }}
{%- if messages and messages[0].role == 'system' %}
  {%- set system_text = messages[0].content | trim %}
  {%- set rest = messages[1:] %}
{%- else %}
  {%- set system_text = '' %}
  {%- set rest = messages %}
{%- endif %}
{{- '<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n\n' + system_text + '<|eot_id|>' }}
{%- for message in rest %}
  {%- if message.role == 'assistant' and message.tool_calls %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
    {%- for call in message.tool_calls %}
      {{- '{"name": "' + call.function.name + '", "parameters": ' + call.function.arguments | tojson + '}' }}
    {%- endfor %}
    {{- '<|eot_id|>' }}
  {%- elif message.role == 'tool' %}
    {{- '<|start_header_id|>ipython<|end_header_id|>\n\n' + message.content + '<|eot_id|>' }}
  {%- else %}
    {{- '<|start_header_id|>' + message.role + '<|end_header_id|>\n\n' + message.content | trim + '<|eot_id|>' }}
  {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
  {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}
"""

QWEN3_TEMPLATE = r"""
{%- if tools %}
  {{- '<|im_start|>system\n' }}
  {%- if messages[0].role == 'system' %}{{- messages[0].content + '\n\n' }}{%- endif %}
  {{- '# Tools\n\n<tools>' }}
  {%- for tool in tools %}{{- '\n' + tool | tojson }}{%- endfor %}
  {{- '\n</tools><|im_end|>\n' }}
{%- elif messages[0].role == 'system' %}
  {{- '<|im_start|>system\n' + messages[0].content + '<|im_end|>\n' }}
{%- endif %}
{%- set ns = namespace(last_query=messages | length - 1, searching=true) %}
{%- for message in messages[::-1] %}
  {%- if ns.searching and message.role == 'user' and not (message.content.startswith('<tool_response>') and message.content.endswith('</tool_response>')) %}
    {%- set ns.searching = false %}
    {%- set ns.last_query = messages | length - 1 - loop.index0 %}
  {%- endif %}
{%- endfor %}
{%- for message in messages %}
  {%- if message.role == 'user' or (message.role == 'system' and not loop.first) %}
    {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>\n' }}
  {%- elif message.role == 'assistant' %}
    {%- set content = message.content %}
    {%- set reasoning = '' %}
    {%- if message.reasoning_content is defined and message.reasoning_content is not none %}
      {%- set reasoning = message.reasoning_content %}
    {%- elif '</think>' in content %}
      {%- set reasoning = content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') %}
      {%- set content = content.split('</think>')[-1].lstrip('\n') %}
    {%- endif %}
    {%- if loop.index0 > ns.last_query and (loop.last or reasoning) %}
      {{- '<|im_start|>assistant\n<think>\n' + reasoning.strip('\n') + '\n</think>\n\n' + content.lstrip('\n') }}
    {%- else %}
      {{- '<|im_start|>assistant\n' + content }}
    {%- endif %}
    {%- for call in message.tool_calls or [] %}
      {%- if not loop.first or content %}{{- '\n' }}{%- endif %}
      {%- set arguments = call.function.arguments if call.function.arguments is string else call.function.arguments | tojson %}
      {{- '<tool_call>\n{"name": "' + call.function.name + '", "arguments": ' + arguments + '}\n</tool_call>' }}
    {%- endfor %}
    {{- '<|im_end|>\n' }}
  {%- elif message.role == 'tool' %}
    {%- if loop.first or messages[loop.index0 - 1].role != 'tool' %}{{- '<|im_start|>user' }}{%- endif %}
    {{- '\n<tool_response>\n' + message.content + '\n</tool_response>' }}
    {%- if loop.last or messages[loop.index0 + 1].role != 'tool' %}{{- '<|im_end|>\n' }}{%- endif %}
  {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
  {{- '<|im_start|>assistant\n' }}
  {%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\n\n</think>\n\n' }}{%- endif %}
{%- endif %}
"""


# kind -> (chat template, special tokens, named roles, plain added tokens)
KINDS = {
    "llama3": (
        LLAMA3_TEMPLATE,
        ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
         "<|eom_id|>", "<|python_tag|>", "<|finetune_right_pad_id|>"],
        {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "pad_token": "<|finetune_right_pad_id|>"},
        [],
    ),
    "qwen3": (
        QWEN3_TEMPLATE,
        ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
        ["<think>", "</think>", "<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>"],
    ),
    "harmony": (HARMONY_TEMPLATE, HARMONY_SPECIAL_TOKENS, HARMONY_NAMED_TOKENS, []),
}


@lru_cache(maxsize=None)
def _trained_bpe_json(added_count: int) -> str:
    """A byte-level BPE trained on ``CORPUS``, leaving ``added_count`` ids for added tokens."""
    return byte_level_bpe(CORPUS * 4, MAX_VOCAB - added_count).to_str()


def build_tiny_tokenizer(kind: str) -> PreTrainedTokenizerFast:
    """An in-memory tiny tokenizer of ``kind`` (``llama3``, ``qwen3`` or ``harmony``)."""
    if kind not in KINDS:
        raise ValueError(f"unknown tiny tokenizer kind {kind!r}; expected one of {sorted(KINDS)}")
    template, specials, named, plain = KINDS[kind]
    backend = Tokenizer.from_str(_trained_bpe_json(len(specials) + len(plain)))
    tokenizer = chat_tokenizer(backend, template.strip(), specials, named, plain)
    if len(tokenizer) > MAX_VOCAB:
        raise AssertionError(f"tiny {kind} tokenizer has {len(tokenizer)} ids, more than {MAX_VOCAB}")
    return tokenizer


def save_tiny_tokenizer(kind: str, directory: str | Path) -> Path:
    """Build the tiny ``kind`` tokenizer and ``save_pretrained`` it into ``directory``."""
    directory = Path(directory)
    build_tiny_tokenizer(kind).save_pretrained(directory)
    return directory


def load_tiny_tokenizer(kind: str, directory: str | Path):
    """Save the tiny ``kind`` tokenizer to ``directory`` and load it back with ``AutoTokenizer``."""
    return AutoTokenizer.from_pretrained(save_tiny_tokenizer(kind, directory))
