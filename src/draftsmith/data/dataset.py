"""From data files to training samples in one call: read, render, mask, fit to length, pack.

``build_dataset(sources, tokenizer, DataConfig(...))`` returns the samples as Python lists and
a :class:`DataReport`, and raises ``BadRecordError`` when bad records pass
``max_bad_fraction``: the in-memory form for small data. Training goes through the on-disk
store (:mod:`draftsmith.data.store`), whose workers run :func:`fit_samples` on their share.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from tqdm.auto import tqdm

from draftsmith.data.conversation import Conversation, RecordError
from draftsmith.data.readers import Source, load_conversations
from draftsmith.data.render import CHANNELS, Channels, RenderConfig, check_chat_template
from draftsmith.data.report import DataReport
from draftsmith.data.samples import Sample, pack, tokenize_conversation, truncate

log = logging.getLogger(__name__)

OVERLONG = ("truncate", "drop")


@dataclass(frozen=True)
class DataConfig:
    """How conversations become samples.

    ``max_length``: tokens per sample (and per pack). ``overlong``: ``"truncate"`` keeps the
    first ``max_length`` tokens, ``"drop"`` skips the conversation; both are counted.
    ``pack``: concatenate conversations up to ``max_length`` with per-document ids.
    ``channels``: ``"all"`` or, for harmony templates, ``"final"`` (see ``RenderConfig``).
    ``max_bad_fraction``: the share of bad records that stops the run (default 1%).
    """

    max_length: int = 4096
    overlong: Literal["truncate", "drop"] = "truncate"
    pack: bool = False
    channels: Channels = "all"
    max_bad_fraction: float = 0.01
    template_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.max_length, bool) or not isinstance(self.max_length, int) or self.max_length < 2:
            raise ValueError(f"max_length must be an integer of at least 2, got {self.max_length!r}")
        if self.overlong not in OVERLONG:
            raise ValueError(f"overlong must be one of {OVERLONG}, got {self.overlong!r}")
        if self.channels not in CHANNELS:
            raise ValueError(f"channels must be one of {CHANNELS}, got {self.channels!r}")
        if not isinstance(self.max_bad_fraction, (int, float)) or not 0 <= self.max_bad_fraction <= 1:
            raise ValueError(f"max_bad_fraction must be between 0 and 1, got {self.max_bad_fraction!r}")
        if not isinstance(self.pack, bool):
            raise ValueError(f"pack must be true or false, got {self.pack!r}")

    @property
    def render(self) -> RenderConfig:
        return RenderConfig(channels=self.channels, template_kwargs=dict(self.template_kwargs))

    def fingerprint_fields(self) -> dict[str, Any]:
        """The settings that change which tokens are supervised (packing does not)."""
        return {
            "max_length": self.max_length, "overlong": self.overlong, "channels": self.channels,
            "template_kwargs": self.template_kwargs,
        }


def iter_samples(
    conversations: Iterable[Conversation], tokenizer: Any, config: DataConfig, report: DataReport
) -> Iterator[Sample]:
    """Tokenized single-conversation samples fitted to ``max_length``; skips go to ``report``.

    Records the template rejects are bad records; a template that cannot mask assistant
    turns at all raises ``ChatTemplateError`` at once, since no record would survive it.
    """
    check_chat_template(tokenizer, config.render)
    yield from fit_samples(conversations, tokenizer, config, report)


def fit_samples(
    conversations: Iterable[Conversation], tokenizer: Any, config: DataConfig, report: DataReport
) -> Iterator[Sample]:
    """:func:`iter_samples` without the template probe: what each store worker runs on its share."""
    render = config.render
    for conversation in conversations:
        try:
            sample = tokenize_conversation(conversation, tokenizer, render)
        except RecordError as error:
            report.skip(error.reason, conversation.source, error.detail)
            continue
        overlong = len(sample) > config.max_length
        if overlong and config.overlong == "drop":
            report.drop("overlong", conversation.source)
            continue
        if overlong:
            sample = truncate(sample, config.max_length)
        if not any(sample.loss_mask):
            report.drop("nothing_supervised", conversation.source)
            continue
        if overlong:
            report.truncate(conversation.source)
        yield sample


def build_dataset(
    sources: Source | list[Source], tokenizer: Any, config: DataConfig = DataConfig(), progress: bool = False
) -> tuple[list[Sample], DataReport]:
    """Read, normalize, render and mask every conversation in ``sources``, then pack if asked.

    Returns the samples and the report (also logged). Raises ``BadRecordError`` when bad
    records (reading and rendering together) pass ``config.max_bad_fraction``.
    """
    conversations, report = load_conversations(sources, max_bad_fraction=1.0)
    stream = tqdm(conversations, desc="tokenizing", unit="conv", disable=not progress)
    samples = list(iter_samples(stream, tokenizer, config, report))
    if report.bad or report.truncated or report.dropped_counts():
        log.warning("data report:\n%s", report.format())
    report.check(config.max_bad_fraction)
    if config.pack:
        samples = list(pack(samples, config.max_length))
    return samples, report
