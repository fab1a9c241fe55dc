"""What the released serving engines do with an EAGLE-3 draft's ``config.json``, as code.

Each function here restates one function of a pinned engine release and names it as
``package==version:path:function`` (``RULE`` beside it). They are the one owner of the
engines' behaviour in draftsmith: the writer (``checkpoint``) picks the fields each engine
reads as trained, ``inspect`` judges other checkpoints by them, and
``tests/test_engine_rules.py`` runs the engines' own functions, extracted from the pinned
wheels, against them. Indices are Hugging Face hidden-state indices throughout
(0 = the embeddings, ``k + 1`` = the output of decoder layer ``k``, before the final norm).
"""
