"""Loss masks cover exactly what the assistant emits, for Llama-3, Qwen3 (thinking) and harmony.

Each expected text below is written by hand from the template's rules, with the supervised
spans between ⟦ and ⟧; the test prints the rendered text with the computed spans marked the
same way and compares. The token mask is then checked against tokenizing each expected span
on its own, and the ids against ``apply_chat_template(tokenize=True)``.
"""

from __future__ import annotations

import re

import pytest
from tiny_tokenizers import load_tiny_tokenizer
from transformers import AutoTokenizer

from draftsmith.data import (
    ChatTemplateError,
    RecordError,
    RenderConfig,
    check_chat_template,
    parse_conversation,
    render_conversation,
    tokenize_conversation,
)
from draftsmith.data.samples import mask_from_spans

CALL = [{"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]
WEATHER_TOOLS = {"messages": [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the weather like in Paris?"},
    {"role": "assistant", "content": None, "reasoning_content": "I need the weather tool.", "tool_calls": CALL},
    {"role": "tool", "content": "sunny, 22 degrees", "tool_call_id": "c1"},
    {"role": "assistant", "content": "It is sunny and warm.", "reasoning_content": "Report the result."},
    {"role": "user", "content": "Thank you"},
    {"role": "assistant", "content": "Goodbye!"},
]}
TWO_QUESTIONS = {"messages": [
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "The capital of France is Paris.", "thinking": "The user asks about France."},
    {"role": "user", "content": "And of Germany?"},
    {"role": "assistant", "content": "Berlin.", "thinking": "Germany next."},
]}
AGENT = {"messages": [
    {"role": "user", "content": "What is the weather like in Paris?"},
    {"role": "assistant", "content": "", "reasoning_content": "I need the weather tool.", "tool_calls": CALL},
    {"role": "tool", "content": "sunny, 22 degrees"},
    {"role": "assistant", "content": "It is sunny and warm.", "reasoning_content": "Report the result."},
]}

LLAMA3_SYSTEM = (
    "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n\n"
)
HARMONY_SYSTEM = (
    "<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\nReasoning: medium\n\n"
    "# Valid channels: analysis, commentary, final. Channel must be included for every message.<|end|>"
)

CASES = {
    "llama3-tools": ("llama3", WEATHER_TOOLS, {},
        LLAMA3_SYSTEM + "You are a helpful assistant.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nWhat is the weather like in Paris?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
        '⟦{"name": "get_weather", "parameters": {"city": "Paris"}}<|eot_id|>⟧'
        "<|start_header_id|>ipython<|end_header_id|>\n\nsunny, 22 degrees<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n⟦It is sunny and warm.<|eot_id|>⟧"
        "<|start_header_id|>user<|end_header_id|>\n\nThank you<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n⟦Goodbye!<|eot_id|>⟧"),
    "llama3-two-questions": ("llama3", TWO_QUESTIONS, {},
        LLAMA3_SYSTEM + "<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nWhat is the capital of France?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n⟦The capital of France is Paris.<|eot_id|>⟧"
        "<|start_header_id|>user<|end_header_id|>\n\nAnd of Germany?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n⟦Berlin.<|eot_id|>⟧"),
    # Thinking before the last user query is dropped by the template; the last turn keeps it.
    "qwen3-two-questions": ("qwen3", TWO_QUESTIONS, {},
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
        "<|im_start|>assistant\n⟦The capital of France is Paris.<|im_end|>⟧\n"
        "<|im_start|>user\nAnd of Germany?<|im_end|>\n"
        "<|im_start|>assistant\n⟦<think>\nGermany next.\n</think>\n\nBerlin.<|im_end|>⟧\n"),
    # After the last query every turn keeps its thinking, tool calls included.
    "qwen3-agent": ("qwen3", AGENT, {},
        "<|im_start|>user\nWhat is the weather like in Paris?<|im_end|>\n"
        "<|im_start|>assistant\n⟦<think>\nI need the weather tool.\n</think>\n\n"
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>⟧\n'
        "<|im_start|>user\n<tool_response>\nsunny, 22 degrees\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n⟦<think>\nReport the result.\n</think>\n\nIt is sunny and warm.<|im_end|>⟧\n"),
    # A later query drops both thinking blocks, so the shorter prefixes render differently from
    # the whole conversation; the last turn gets an empty think block.
    "qwen3-agent-then-chat": ("qwen3", {"messages": WEATHER_TOOLS["messages"][1:]}, {},
        "<|im_start|>user\nWhat is the weather like in Paris?<|im_end|>\n"
        '<|im_start|>assistant\n⟦<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n'
        "</tool_call><|im_end|>⟧\n"
        "<|im_start|>user\n<tool_response>\nsunny, 22 degrees\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n⟦It is sunny and warm.<|im_end|>⟧\n"
        "<|im_start|>user\nThank you<|im_end|>\n"
        "<|im_start|>assistant\n⟦<think>\n\n</think>\n\nGoodbye!<|im_end|>⟧\n"),
    # With thinking disabled the empty think block is part of the prompt, not of the answer.
    "qwen3-no-thinking": ("qwen3", {"messages": TWO_QUESTIONS["messages"][:1] + [
        {"role": "assistant", "content": "Paris."}]}, {"enable_thinking": False},
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
        "<|im_start|>assistant\n<think>\n\n</think>\n\n⟦Paris.<|im_end|>⟧\n"),
    # Harmony: an earlier turn's analysis is dropped once its final answer is there; the last
    # turn has analysis + final, both supervised, ending <|return|>.
    "harmony-two-questions": ("harmony", {"messages": [
        {"role": "system", "content": "You are a helpful assistant."}] + TWO_QUESTIONS["messages"]}, {},
        HARMONY_SYSTEM + "<|start|>developer<|message|># Instructions\n\nYou are a helpful assistant.<|end|>"
        "<|start|>user<|message|>What is the capital of France?<|end|>"
        "<|start|>assistant⟦<|channel|>final<|message|>The capital of France is Paris.<|end|>⟧"
        "<|start|>user<|message|>And of Germany?<|end|>"
        "<|start|>assistant⟦<|channel|>analysis<|message|>Germany next.<|end|>"
        "<|start|>assistant<|channel|>final<|message|>Berlin.<|return|>⟧"),
    "harmony-two-questions-final-only": ("harmony", TWO_QUESTIONS, {"channels": "final"},
        HARMONY_SYSTEM + "<|start|>user<|message|>What is the capital of France?<|end|>"
        "<|start|>assistant⟦<|channel|>final<|message|>The capital of France is Paris.<|end|>⟧"
        "<|start|>user<|message|>And of Germany?<|end|>"
        "<|start|>assistant<|channel|>analysis<|message|>Germany next.<|end|>"
        "<|start|>assistant⟦<|channel|>final<|message|>Berlin.<|return|>⟧"),
    # The tool call's analysis is dropped (a final follows); the call ends <|call|>.
    "harmony-agent": ("harmony", AGENT, {},
        HARMONY_SYSTEM + "<|start|>user<|message|>What is the weather like in Paris?<|end|>"
        '<|start|>assistant⟦ to=functions.get_weather<|channel|>commentary json<|message|>{"city": "Paris"}<|call|>⟧'
        '<|start|>functions.get_weather to=assistant<|channel|>commentary<|message|>"sunny, 22 degrees"<|end|>'
        "<|start|>assistant⟦<|channel|>analysis<|message|>Report the result.<|end|>"
        "<|start|>assistant<|channel|>final<|message|>It is sunny and warm.<|return|>⟧"),
    # The same call twice with the same result: each turn is matched at its own place.
    "harmony-repeated-call": ("harmony", {"messages": AGENT["messages"][:3] + [
        {"role": "assistant", "content": "", "reasoning_content": "Once more.", "tool_calls": CALL},
        {"role": "tool", "content": "sunny, 22 degrees"}]}, {},
        HARMONY_SYSTEM + "<|start|>user<|message|>What is the weather like in Paris?<|end|>"
        "<|start|>assistant⟦<|channel|>analysis<|message|>I need the weather tool.<|end|>"
        '<|start|>assistant to=functions.get_weather<|channel|>commentary json<|message|>{"city": "Paris"}<|call|>⟧'
        '<|start|>functions.get_weather to=assistant<|channel|>commentary<|message|>"sunny, 22 degrees"<|end|>'
        "<|start|>assistant⟦<|channel|>analysis<|message|>Once more.<|end|>"
        '<|start|>assistant to=functions.get_weather<|channel|>commentary json<|message|>{"city": "Paris"}<|call|>⟧'
        '<|start|>functions.get_weather to=assistant<|channel|>commentary<|message|>"sunny, 22 degrees"<|end|>'),
    "harmony-agent-final-only": ("harmony", AGENT, {"channels": "final"},
        HARMONY_SYSTEM + "<|start|>user<|message|>What is the weather like in Paris?<|end|>"
        '<|start|>assistant to=functions.get_weather<|channel|>commentary json<|message|>{"city": "Paris"}<|call|>'
        '<|start|>functions.get_weather to=assistant<|channel|>commentary<|message|>"sunny, 22 degrees"<|end|>'
        "<|start|>assistant<|channel|>analysis<|message|>Report the result.<|end|>"
        "<|start|>assistant⟦<|channel|>final<|message|>It is sunny and warm.<|return|>⟧"),
}


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    root = tmp_path_factory.mktemp("tokenizers")
    return {kind: load_tiny_tokenizer(kind, root / kind) for kind in ("llama3", "qwen3", "harmony")}


def marked(text: str, spans) -> str:
    pieces, last = [], 0
    for start, end in spans:
        pieces += [text[last:start], "⟦", text[start:end], "⟧"]
        last = end
    return "".join(pieces + [text[last:]])


def render_config(options: dict) -> RenderConfig:
    template_kwargs = {k: v for k, v in options.items() if k != "channels"}
    return RenderConfig(channels=options.get("channels", "all"), template_kwargs=template_kwargs)


@pytest.mark.parametrize("case", sorted(CASES))
def test_masked_spans_are_the_assistant_output(case, tokenizers):
    kind, record, options, expected = CASES[case]
    tokenizer = tokenizers[kind]
    conversation = parse_conversation(record, case)
    rendered = render_conversation(conversation, tokenizer, render_config(options))
    shown = marked(rendered.text, rendered.spans)
    print(f"--- {case}\n{shown}")
    assert shown == expected
    assert rendered.text == tokenizer.apply_chat_template(
        conversation.template_messages(), tokenize=False, **{k: v for k, v in options.items() if k != "channels"}
    )


@pytest.mark.parametrize("case", sorted(CASES))
def test_token_mask_matches_expected_spans(case, tokenizers):
    kind, record, options, expected = CASES[case]
    tokenizer = tokenizers[kind]
    conversation = parse_conversation(record, case)
    sample = tokenize_conversation(conversation, tokenizer, render_config(options))

    template_kwargs = {k: v for k, v in options.items() if k != "channels"}
    ids = tokenizer.apply_chat_template(conversation.template_messages(), tokenize=True, **template_kwargs)
    ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
    assert sample.input_ids == list(ids)

    supervised = [t for t, m in zip(sample.input_ids, sample.loss_mask) if m]
    pieces = re.findall("⟦(.*?)⟧", expected, flags=re.DOTALL)
    assert pieces
    assert supervised == [t for piece in pieces for t in tokenizer(piece, add_special_tokens=False)["input_ids"]]
    assert sample.document_ids == [1] * len(sample)
    assert sample.position_ids == list(range(len(sample)))


def test_token_straddling_a_span_start_belongs_to_the_prompt():
    offsets = [(0, 3), (3, 6), (6, 9), (9, 12)]
    assert mask_from_spans(offsets, [(4, 7)]) == [0, 0, 1, 0]
    assert mask_from_spans(offsets, [(3, 6), (9, 12)]) == [0, 1, 0, 1]
    assert mask_from_spans(offsets, []) == [0, 0, 0, 0]


def test_final_only_needs_a_harmony_template(tokenizers):
    conversation = parse_conversation(TWO_QUESTIONS)
    with pytest.raises(ChatTemplateError, match="harmony"):
        render_conversation(conversation, tokenizers["qwen3"], RenderConfig(channels="final"))


def test_template_without_assistant_output_is_an_error_naming_the_tokenizer(tokenizers, tmp_path):
    tokenizer = tokenizers["qwen3"]
    tokenizer.save_pretrained(tmp_path / "silent")
    silent = AutoTokenizer.from_pretrained(tmp_path / "silent")
    silent.chat_template = (
        "{% for m in messages %}{% if m.role != 'assistant' %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n"
        "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    with pytest.raises(ChatTemplateError, match=f"{re.escape(str(tmp_path / 'silent'))}.*renders no assistant tokens"):
        check_chat_template(silent)


def test_template_without_generation_prompt_is_an_error(tokenizers, tmp_path):
    tokenizers["llama3"].save_pretrained(tmp_path / "nogp")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "nogp")
    tokenizer.chat_template = "{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}"
    with pytest.raises(ChatTemplateError, match="generation prompt"):
        check_chat_template(tokenizer)


def test_template_that_rejects_a_record_is_a_record_error(tokenizers, tmp_path):
    tokenizers["llama3"].save_pretrained(tmp_path / "strict")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "strict")
    tokenizer.chat_template = (
        "{% for m in messages %}{% if m.role == 'tool' %}{{ raise_exception('no tools here') }}{% endif %}"
        "<|start_header_id|>{{ m.role }}<|end_header_id|>\n\n{{ m.content }}<|eot_id|>{% endfor %}"
        "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
    )
    check_chat_template(tokenizer)
    with pytest.raises(RecordError) as error:
        render_conversation(parse_conversation(AGENT), tokenizer)
    assert error.value.reason == "template_error" and "no tools here" in error.value.detail


def test_history_rendered_differently_before_the_turn(tokenizers, tmp_path):
    """A header that counts messages differs in every shorter render; the turn is still found."""
    tokenizers["llama3"].save_pretrained(tmp_path / "counting")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "counting")
    tokenizer.chat_template = (
        "<|start_header_id|>system<|end_header_id|>\n\n{{ messages | length }} messages<|eot_id|>"
        "{% for m in messages %}<|start_header_id|>{{ m.role }}<|end_header_id|>\n\n{{ m.content }}<|eot_id|>"
        "{% endfor %}{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
    )
    rendered = render_conversation(parse_conversation({"messages": TWO_QUESTIONS["messages"]}), tokenizer)
    assert marked(rendered.text, rendered.spans) == (
        "<|start_header_id|>system<|end_header_id|>\n\n4 messages<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nWhat is the capital of France?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n⟦The capital of France is Paris.<|eot_id|>⟧"
        "<|start_header_id|>user<|end_header_id|>\n\nAnd of Germany?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n⟦Berlin.<|eot_id|>⟧"
    )
