"""Token-level samples: ids and loss masks, the length policy, packing and padding.

A :class:`Sample` is what the trainer consumes. One conversation gives one sample with a
single document; packing concatenates several conversations into one sample whose
``document_ids`` (1, 2, ... per token) keep attention inside each conversation and whose
``position_ids`` restart at 0 for each, exactly what ``Eagle3Draft.steps`` takes as
``attention_mask`` and ``position_ids`` (padding: document id 0).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from draftsmith.data.conversation import Conversation
from draftsmith.data.render import Rendered, RenderConfig, render_conversation


@dataclass(frozen=True)
class Sample:
    """One training sequence.

    ``loss_mask[t]`` is 1 where token ``t`` was emitted by the assistant. ``document_ids``
    is a positive id per token (one per packed conversation); ``position_ids`` restart at 0
    for each document. ``sources`` names the ``file:line`` of each packed conversation.
    """

    input_ids: list[int]
    loss_mask: list[int]
    document_ids: list[int]
    position_ids: list[int]
    sources: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.input_ids)

    @classmethod
    def single(cls, input_ids: list[int], loss_mask: list[int], source: str) -> Sample:
        n = len(input_ids)
        return cls(list(input_ids), list(loss_mask), [1] * n, list(range(n)), (source,))


def mask_from_spans(offsets: list[tuple[int, int]], spans: Iterable[tuple[int, int]]) -> list[int]:
    """1 for tokens whose first character lies in one of the sorted character ``spans``.

    A token straddling the start of a span began in the prompt, so it is not supervised; one
    straddling the end began in the assistant's output, so it is.
    """
    spans = sorted(spans)
    mask, k = [], 0
    for start, _ in offsets:
        while k < len(spans) and spans[k][1] <= start:
            k += 1
        mask.append(int(k < len(spans) and spans[k][0] <= start < spans[k][1]))
    return mask


def tokenize_rendered(rendered: Rendered, tokenizer: Any, source: str = "<memory>") -> Sample:
    """Tokenize rendered text exactly as ``apply_chat_template(tokenize=True)`` does, with its mask."""
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(
            f"tokenizer {getattr(tokenizer, 'name_or_path', '')!r} is not a fast tokenizer; character offsets "
            f"(needed to place the loss mask) require one"
        )
    encoding = tokenizer(rendered.text, add_special_tokens=False, return_offsets_mapping=True)
    return Sample.single(encoding["input_ids"], mask_from_spans(encoding["offset_mapping"], rendered.spans), source)


def tokenize_conversation(conversation: Conversation, tokenizer: Any, config: RenderConfig = RenderConfig()) -> Sample:
    """Render ``conversation`` with the tokenizer's chat template into ids and an assistant loss mask."""
    return tokenize_rendered(render_conversation(conversation, tokenizer, config), tokenizer, conversation.source)


def truncate(sample: Sample, max_length: int) -> Sample:
    """The first ``max_length`` tokens of a single-document sample."""
    return Sample(
        sample.input_ids[:max_length], sample.loss_mask[:max_length], sample.document_ids[:max_length],
        sample.position_ids[:max_length], sample.sources,
    )


def pack(samples: Iterable[Sample], max_length: int) -> Iterator[Sample]:
    """Concatenate consecutive samples while they fit in ``max_length`` tokens (order is kept).

    Next-fit keeps the data order, so a resumed run sees the same packs; each input sample
    must already be at most ``max_length`` long.
    """
    samples = list(samples)
    starts = pack_starts([len(s) for s in samples], max_length, lambda i: samples[i].sources[0])
    for start, stop in zip(starts, starts[1:] + [len(samples)]):
        yield concatenate(samples[start:stop])


def pack_starts(lengths: Iterable[int], max_length: int, name: Callable[[int], str] = str) -> list[int]:
    """Where each pack begins: the next-fit rule of :func:`pack`, on lengths alone (the store packs by index).

    ``name(i)`` says which sample is too long when one exceeds ``max_length``.
    """
    starts: list[int] = []
    size = 0
    for i, length in enumerate(lengths):
        if length > max_length:
            raise ValueError(f"{name(i)}: sample of {length} tokens exceeds max_length {max_length}")
        if not starts or size + length > max_length:
            starts.append(i)
            size = 0
        size += length
    return starts


def concatenate(samples: list[Sample]) -> Sample:
    """One packed sample: document ids 1, 2, ... and positions restarting at 0 for each input sample."""
    input_ids, loss_mask, document_ids, position_ids, sources = [], [], [], [], []
    for document, sample in enumerate(samples, 1):
        input_ids += sample.input_ids
        loss_mask += sample.loss_mask
        document_ids += [document] * len(sample)
        position_ids += range(len(sample))
        sources += sample.sources
    return Sample(input_ids, loss_mask, document_ids, position_ids, tuple(sources))


def pad_batch(samples: list[Sample], pad_token_id: int) -> dict[str, list[list[int]]]:
    """Right-pad samples to the longest: ids with ``pad_token_id``; masks, document ids and
    positions with 0 (padded slots are masked out, so their positions never matter).

    The returned ``attention_mask`` is the per-token document id (0 = padding), the form
    ``Eagle3Draft.steps`` takes; wrap each list in ``torch.tensor`` to train.
    """
    if not samples:
        raise ValueError("pad_batch needs at least one sample")
    width = max(len(s) for s in samples)
    batch: dict[str, list[list[int]]] = {"input_ids": [], "loss_mask": [], "attention_mask": [], "position_ids": []}
    for s in samples:
        pad = width - len(s)
        batch["input_ids"].append(s.input_ids + [pad_token_id] * pad)
        batch["loss_mask"].append(s.loss_mask + [0] * pad)
        batch["attention_mask"].append(s.document_ids + [0] * pad)
        batch["position_ids"].append(s.position_ids + [0] * pad)
    return batch
