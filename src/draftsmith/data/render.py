"""Render a conversation with the tokenizer's own chat template and mark what the assistant emits.

Why not ``return_assistant_tokens_mask``: it needs ``{% generation %}`` markers, which the
real Llama-3, Qwen3 and gpt-oss templates do not have. The method here works on any template
that has a generation prompt:

1. Render the whole conversation ``F`` once: this is the text the draft trains on, so the
   mask is of what the template *actually* emits (gpt-oss drops the analysis of earlier
   turns; Qwen3 drops their thinking).
2. An assistant turn (a run of assistant messages) starts where the generation prompt ends:
   render the messages before it with ``add_generation_prompt=True``; that text is a prefix
   of ``F`` (or, when the template renders history differently, its tail is found in ``F``).
3. It ends where the turn's own text ends. That text comes from rendering the messages
   through the turn *as history* (``add_generation_prompt=True``, then the generation prompt
   cut off), because templates render a last assistant message differently in training
   renders (harmony ``<|return|>`` versus ``<|end|>``). It is matched in ``F`` from the turn
   start; where the two renders differ inside the turn (harmony drops a tool call's analysis
   once a final answer follows), its longest tail found from the turn start marks the end.
   Whitespace the template adds after the turn's closing special token (Qwen's
   ``<|im_end|>\\n``) is not emitted by the model and is left out.
4. Character spans become token positions through the fast tokenizer's offsets: a token is
   supervised when its first character lies inside a span.

For harmony templates ``channels="final"`` keeps only the ``final`` channel messages (from
``<|channel|>`` through ``<|end|>``/``<|return|>``) of each turn.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from draftsmith.data.conversation import Conversation, Message, RecordError

Channels = Literal["all", "final"]
CHANNELS = ("all", "final")

HARMONY_MESSAGE = re.compile(
    r"<\|channel\|>(?P<channel>[^<\s]+).*?<\|message\|>.*?(?:<\|end\|>|<\|return\|>|<\|call\|>)", re.DOTALL
)


class ChatTemplateError(ValueError):
    """The tokenizer's chat template cannot give assistant masks (a problem of the tokenizer, not a record)."""


@dataclass(frozen=True)
class RenderConfig:
    """How conversations are rendered and which assistant output is supervised.

    ``channels``: ``"all"`` supervises everything the assistant emits; ``"final"`` (harmony /
    gpt-oss only) supervises the ``final`` channel and leaves ``analysis`` and tool calls out.
    ``template_kwargs`` go to ``apply_chat_template`` (e.g. ``reasoning_effort``).
    """

    channels: Channels = "all"
    template_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.channels not in CHANNELS:
            raise ValueError(f"channels must be one of {CHANNELS}, got {self.channels!r}")
        if not isinstance(self.template_kwargs, dict):
            raise ValueError(f"template_kwargs must be a dict, got {type(self.template_kwargs).__name__}")


@dataclass(frozen=True)
class Rendered:
    """The rendered text and the character spans ``[start, end)`` the assistant emits."""

    text: str
    spans: tuple[tuple[int, int], ...]


def tokenizer_name(tokenizer: Any) -> str:
    return getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__


def render_conversation(conversation: Conversation, tokenizer: Any, config: RenderConfig = RenderConfig()) -> Rendered:
    """Render ``conversation`` and find the assistant's spans in the rendered text.

    Raises :class:`RecordError` when this record cannot be rendered or masked, and
    :class:`ChatTemplateError` for problems of the template itself (no template, no generation
    prompt); :func:`check_chat_template` catches a template that drops assistant turns.
    """
    if not getattr(tokenizer, "chat_template", None):
        raise ChatTemplateError(f"tokenizer {tokenizer_name(tokenizer)!r} has no chat template")
    messages = conversation.template_messages()

    def render(upto: int, generation_prompt: bool) -> str:
        try:
            return tokenizer.apply_chat_template(
                messages[:upto], tools=list(conversation.tools) if conversation.tools else None,
                tokenize=False, add_generation_prompt=generation_prompt, **config.template_kwargs,
            )
        except Exception as error:  # templates raise anything (jinja, TypeError, raise_exception)
            raise RecordError("template_error", f"{type(error).__name__}: {error}") from None

    full = render(len(messages), False)
    specials = _special_tokens(tokenizer)
    spans, lower = [], 0
    for first, stop in _assistant_turns(conversation):
        history = render(first, False)
        prompted = render(first, True)
        if not prompted.startswith(history) or len(prompted) == len(history):
            raise ChatTemplateError(
                f"chat template of tokenizer {tokenizer_name(tokenizer)!r} adds no generation prompt after "
                f"the conversation, so assistant turns cannot be located (add_generation_prompt has no effect)"
            )
        prompt = prompted[len(history):]
        start = _locate(prompted, full, lower, min_length=len(prompt))
        if start is None:
            raise RecordError("template_error", f"cannot locate assistant turn at message {first} in the rendered text")
        if stop == len(messages):
            end = len(full)
        else:
            through = render(stop, True)
            if not through.endswith(prompt):
                raise RecordError("template_error", f"generation prompt after message {stop - 1} differs from the one before")
            through = through[: len(through) - len(prompt)]
            turn_start = _locate(prompted, through, 0, min_length=len(prompt))
            end = None if turn_start is None else _locate(through[turn_start:], full, start, min_length=1)
            if end is None:
                raise RecordError("template_error", f"cannot locate the end of the assistant turn ending at message {stop - 1}")
        end = _drop_trailing_whitespace(full, start, end, specials)
        spans.append((start, end))
        lower = end
    if _has_output(conversation) and not any(_visible(full[a:b], specials) for a, b in spans):
        raise RecordError("no_assistant_tokens", "the chat template rendered none of the assistant's output")
    if config.channels == "final":
        spans = _final_channel_spans(full, spans, tokenizer)
    return Rendered(full, tuple((a, b) for a, b in spans if b > a))


def check_chat_template(tokenizer: Any, config: RenderConfig = RenderConfig()) -> None:
    """Fail early, naming the tokenizer, when its template gives no assistant tokens for a plain exchange.

    Without this, a template that ignores assistant messages would skip every record one by
    one and surface only as a bad-record share.
    """
    probe = Conversation((Message("user", "Hello, who are you?"), Message("assistant", "I am a helpful assistant.")),
                         source="<chat template probe>")
    try:
        render_conversation(probe, tokenizer, config)
    except RecordError as error:
        raise ChatTemplateError(
            f"chat template of tokenizer {tokenizer_name(tokenizer)!r} renders no assistant tokens for a plain "
            f"user/assistant exchange ({error}); it cannot train a draft"
        ) from None


def _has_output(conversation: Conversation) -> bool:
    return any(
        m.role == "assistant" and (m.content.strip() or m.reasoning or m.tool_calls) for m in conversation.messages
    )


def _visible(text: str, specials: tuple[str, ...]) -> bool:
    """Whether ``text`` holds anything besides special tokens and whitespace."""
    for token in specials:
        text = text.replace(token, "")
    return bool(text.strip())


def _assistant_turns(conversation: Conversation) -> list[tuple[int, int]]:
    """``[first, stop)`` message ranges of consecutive assistant messages."""
    turns, first = [], None
    for i, message in enumerate(conversation.messages):
        if message.role == "assistant" and first is None:
            first = i
        elif message.role != "assistant" and first is not None:
            turns.append((first, i))
            first = None
    if first is not None:
        turns.append((first, len(conversation.messages)))
    return turns


def _locate(piece: str, full: str, begin: int, min_length: int) -> int | None:
    """Where the text rendered as ``piece`` ends in ``full``, for a stretch of ``full`` starting at ``begin``.

    ``piece`` comes from a second render that may differ from ``full`` at its beginning
    (harmony keeps a tool call's analysis, Qwen3 keeps old thinking, when the conversation is
    cut short), never at its end. So the answer is the first ``end`` for which
    ``full[begin:end]`` (at least ``min_length`` long) is a suffix of ``piece``: requiring the
    whole stretch from ``begin`` to match keeps a repeated message (the same tool call twice)
    from being taken for this one. When even that fails (a template that renders something
    before ``begin`` differently, such as a message count in a header), the longest tail of
    ``piece`` found at or after ``begin`` anchors the end instead.
    """
    if not piece:
        return None
    limit = begin + len(piece)
    end = full.find(piece[-1], begin + max(min_length, 1) - 1)
    while 0 <= end < limit:
        if piece.endswith(full[begin:end + 1]):
            return end + 1
        end = full.find(piece[-1], end + 1)
    low, high = 0, len(piece)  # longest tail that occurs; occurrence is monotone in length, so bisect
    while low < high:
        middle = (low + high + 1) // 2
        if full.find(piece[len(piece) - middle:], begin) >= 0:
            low = middle
        else:
            high = middle - 1
    if low <= min_length:
        return None
    return full.find(piece[len(piece) - low:], begin) + low


def _special_tokens(tokenizer: Any) -> tuple[str, ...]:
    decoder = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    return tuple(token.content for token in decoder.values() if getattr(token, "special", False))


def _drop_trailing_whitespace(text: str, start: int, end: int, specials: tuple[str, ...]) -> int:
    """Cut whitespace that follows the turn's closing special token: the model stops at that token."""
    stripped = start + len(text[start:end].rstrip())
    if stripped < end and specials and text[start:stripped].endswith(specials):
        return stripped
    return end


def _final_channel_spans(text: str, spans: list[tuple[int, int]], tokenizer: Any) -> list[tuple[int, int]]:
    if "<|channel|>" not in text:
        raise ChatTemplateError(
            f"channels='final' needs a harmony (gpt-oss) chat template, but tokenizer "
            f"{tokenizer_name(tokenizer)!r} renders no <|channel|> markers"
        )
    kept = []
    for start, end in spans:
        for match in HARMONY_MESSAGE.finditer(text, start, end):
            if match.group("channel") == "final":
                kept.append(match.span())
    return kept
