"""Conversation data for draft training: read, render, mask, fit, pack; the draft vocabulary.

Knows no torch model. Entry points:

- ``build_store(sources, tokenizer, DataConfig(...), cache_dir) -> SampleStore``: the trainer's
  call. Renders every conversation once, in parallel processes, into a memory-mapped store
  under ``cache_dir`` keyed by tokenizer, data and settings (reused by every rank, epoch and
  the vocabulary count); ``store.view(pack=...)`` is a ``Sequence[Sample]`` over it.
- ``build_dataset(sources, tokenizer, DataConfig(...)) -> (list[Sample], DataReport)``: the
  same samples as Python lists, for small data in memory. ``sources`` are JSONL / JSON / Parquet paths, a Hugging Face ``datasets``
  object, or a list of record dicts, in OpenAI ``messages`` or ShareGPT ``conversations`` form.
  Each :class:`Sample` holds ``input_ids``, ``loss_mask`` (1 on assistant-emitted tokens),
  ``document_ids`` and ``position_ids`` (per packed conversation); ``pad_batch`` pads a list of
  samples into the ``attention_mask`` / ``position_ids`` form ``Eagle3Draft.steps`` takes.
- ``load_conversations(sources) -> (list[Conversation], DataReport)`` and
  ``tokenize_conversation(conversation, tokenizer, RenderConfig(...)) -> Sample`` for the
  steps one at a time; ``render_conversation`` shows the rendered text and its masked spans.
- ``load_or_build_vocab(path, sources, tokenizer, draft_vocab_size, target_vocab_size)``:
  the draft vocabulary (``d2t`` / ``t2d``) of the most frequent supervised tokens, cached in
  a safetensors file keyed by tokenizer and data fingerprints.

Bad records are skipped and counted by reason with ``file:line`` in the ``DataReport``; the
run stops with ``BadRecordError`` only past ``max_bad_fraction`` (default 1%).
"""

from draftsmith.data.conversation import Conversation, Message, RecordError, parse_conversation
from draftsmith.data.dataset import DataConfig, build_dataset, iter_samples
from draftsmith.data.readers import MissingExtraError, iter_conversations, load_conversations
from draftsmith.data.render import ChatTemplateError, Rendered, RenderConfig, check_chat_template, render_conversation
from draftsmith.data.report import BadRecordError, DataReport
from draftsmith.data.samples import Sample, pack, pad_batch, tokenize_conversation
from draftsmith.data.store import SampleStore, StoreView, build_store, default_cache_dir
from draftsmith.data.vocab import VocabFileMismatchError, VocabMapping, build_vocab_mapping, load_or_build_vocab, load_vocab_mapping, save_vocab_mapping

__all__ = [
    "BadRecordError",
    "ChatTemplateError",
    "Conversation",
    "DataConfig",
    "DataReport",
    "Message",
    "MissingExtraError",
    "RecordError",
    "RenderConfig",
    "Rendered",
    "Sample",
    "SampleStore",
    "StoreView",
    "VocabFileMismatchError",
    "VocabMapping",
    "build_dataset",
    "build_store",
    "build_vocab_mapping",
    "check_chat_template",
    "default_cache_dir",
    "iter_conversations",
    "iter_samples",
    "load_conversations",
    "load_or_build_vocab",
    "load_vocab_mapping",
    "pack",
    "pad_batch",
    "parse_conversation",
    "render_conversation",
    "save_vocab_mapping",
    "tokenize_conversation",
]
