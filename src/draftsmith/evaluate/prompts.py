"""Evaluation prompts: conversations rendered up to the answer, optionally behind earlier context.

A record's prompt is every message before its final assistant turn (a record without
an assistant turn is all prompt), rendered with the target's chat template and its
generation prompt, tokenized as training tokenizes. To start generation near context
position P, earlier conversations of the same data set are placed before the prompt's
messages, as history of one long chat in the target's own format, as many as keep the
rendered prompt at or below P (a data set too small for P is cycled through).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from draftsmith.data.conversation import Conversation, Message, RecordError, parse_conversation
from draftsmith.data.readers import Source, as_source_list, iter_records
from draftsmith.data.render import ChatTemplateError, tokenizer_name


@dataclass(frozen=True)
class Prompt:
    """Token ids to generate after, where they came from, and the context bucket they belong to."""

    input_ids: list[int]
    source: str
    context: int | None = None  # the grid position this prompt was built for (None: as in the data)


@dataclass
class PromptSet:
    prompts: list[Prompt]
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count (unreadable, empty, too_long)

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


def read_prompt_conversations(sources: Source | list[Source], skipped: PromptSet) -> list[Conversation]:
    """Conversations of the data files; records that cannot be read are counted as ``unreadable``."""
    out = []
    for source in as_source_list(sources):
        for location, record in iter_records(source):
            try:
                if isinstance(record, RecordError):
                    raise record
                out.append(_parse(record, location))
            except RecordError:
                skipped.skip("unreadable")
    return out


def _parse(record: Any, location: str) -> Conversation:
    try:
        return parse_conversation(record, location)
    except RecordError as error:
        if error.reason != "no_assistant_turn" or not isinstance(record, dict):
            raise
    # A prompt-only record: parse it as a conversation whose answer is still to come.
    if "messages" in record:
        record = {**record, "messages": [*record["messages"], {"role": "assistant", "content": ""}]}
    else:
        record = {**record, "conversations": [*record["conversations"], {"from": "gpt", "value": ""}]}
    conversation = parse_conversation(record, location)
    return Conversation(conversation.messages[:-1], location, conversation.tools)


def prompt_messages(conversation: Conversation) -> list[Message]:
    """The messages before the final assistant turn."""
    messages = list(conversation.messages)
    while messages and messages[-1].role == "assistant":
        messages.pop()
    return messages


def render_prompt(messages: Sequence[Message], tokenizer: Any, tools=None) -> list[int]:
    """Token ids of ``messages`` in the chat format, ending with the generation prompt."""
    if not getattr(tokenizer, "chat_template", None):
        raise ChatTemplateError(f"tokenizer {tokenizer_name(tokenizer)!r} has no chat template to render prompts with")
    text = tokenizer.apply_chat_template([m.to_template() for m in messages], tools=list(tools) if tools else None,
                                         tokenize=False, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def with_context(conversations: list[Conversation], index: int, tokenizer: Any, position: int) -> list[int]:
    """Prompt ``index`` behind as many earlier conversations as keep it at or below ``position`` tokens."""
    own = conversations[index]
    messages = prompt_messages(own)
    system = [m for m in messages if m.role in ("system", "developer")][:1]
    rest = [m for m in messages if m not in system]
    others = conversations[index + 1:] + conversations[:index]

    def render(count: int) -> list[int]:
        chosen = [others[i % len(others)] for i in range(count)]  # a small data set is cycled through
        history = [m for c in chosen for m in c.messages if m.role not in ("system", "developer")]
        return render_prompt(system + history + rest, tokenizer, own.tools)

    if not others:
        return render(0)
    # The most conversations whose render fits: lengths grow with the count, so double the count
    # until the render no longer fits, then bisect between the last fit and the first miss.
    low, best, high = 0, render(0), 1
    while high <= position:
        ids = render(high)
        if len(ids) > position:
            break
        low, best, high = high, ids, 2 * high
    high = min(high, position + 1)
    while high - low > 1:
        middle = (low + high) // 2
        ids = render(middle)
        if len(ids) <= position:
            low, best = middle, ids
        else:
            high = middle
    return best


def build_prompts(conversations: list[Conversation], tokenizer: Any, contexts: Sequence[int], max_length: int,
                  found: PromptSet, limit: int | None = None) -> PromptSet:
    """Every prompt as it is (no ``contexts``) or at each grid position; empty and over-long ones skipped.

    ``limit`` caps the conversations prompted (all of them still serve as context). A prompt
    is over-long when it leaves no room to generate before ``max_length``.
    """
    used = 0
    for index, conversation in enumerate(conversations):
        if limit is not None and used >= limit:
            break
        messages = prompt_messages(conversation)
        if not any(m.content.strip() for m in messages if m.role not in ("system", "developer")):
            found.skip("empty")
            continue
        for position in contexts or [None]:
            ids = (render_prompt(messages, tokenizer, conversation.tools) if position is None
                   else with_context(conversations, index, tokenizer, position))
            if len(ids) + 1 >= max_length:
                found.skip("too_long")
                continue
            found.prompts.append(Prompt(ids, conversation.source, position))
        used += 1
    return found
