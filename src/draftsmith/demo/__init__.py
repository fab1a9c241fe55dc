"""The embedded demo: a shipped long-context tiny gpt-oss target, and ``draftsmith demo``.

``builders`` holds the tokenizer / template / config builders the tests share; ``corpus`` and
``build_target`` rebuild the shipped target; the rest runs the demo and the RoPE experiment.
"""

from draftsmith.demo.builders import (HARMONY_NAMED_TOKENS, HARMONY_SPECIAL_TOKENS, HARMONY_TEMPLATE, byte_level_bpe,
                                      chat_tokenizer, demo_conversations, make_demo, tiny_gpt_oss_config)

__all__ = ["HARMONY_NAMED_TOKENS", "HARMONY_SPECIAL_TOKENS", "HARMONY_TEMPLATE", "byte_level_bpe", "chat_tokenizer",
           "demo_conversations", "make_demo", "tiny_gpt_oss_config"]
