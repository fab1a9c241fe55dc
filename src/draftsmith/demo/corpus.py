"""The shipped target's text: the King James Bible as harmony chats, plus generated counting chats.

License-clean by construction: the King James Version (1611) is out of copyright (Debian's
``bible-kjv-text`` package, read through its ``bible`` program), and the counting chats are
generated here. Chats are OpenAI ``messages`` with ``reasoning_content`` on assistant turns,
so the target learns the harmony analysis and final channels and the demo's draft data is
ordinary chat data. Whole chapters are held out (about 1 in 25) for validation.
"""

from __future__ import annotations

import random
import re
import shutil
import subprocess
import zlib
from dataclasses import dataclass
from pathlib import Path

BOOKS = [
    "Genesis", "Exodus", "Leviticus", "Numbers", "Deuteronomy", "Joshua", "Judges", "Ruth", "1 Samuel", "2 Samuel",
    "1 Kings", "2 Kings", "1 Chronicles", "2 Chronicles", "Ezra", "Nehemiah", "Esther", "Job", "Psalms", "Proverbs",
    "Ecclesiastes", "Song of Solomon", "Isaiah", "Jeremiah", "Lamentations", "Ezekiel", "Daniel", "Hosea", "Joel",
    "Amos", "Obadiah", "Jonah", "Micah", "Nahum", "Habakkuk", "Zephaniah", "Haggai", "Zechariah", "Malachi",
    "Matthew", "Mark", "Luke", "John", "Acts", "Romans", "1 Corinthians", "2 Corinthians", "Galatians", "Ephesians",
    "Philippians", "Colossians", "1 Thessalonians", "2 Thessalonians", "1 Timothy", "2 Timothy", "Titus", "Philemon",
    "Hebrews", "James", "1 Peter", "2 Peter", "1 John", "2 John", "3 John", "Jude", "Revelation",
]
_LINE = re.compile(r"^(\S+?)(\d+):(\d+) (.+)$")


@dataclass(frozen=True)
class Verse:
    book: str
    chapter: int
    verse: int
    text: str


def kjv_text() -> str:
    """The whole KJV as ``bible -f`` prints it (one ``Ge1:1 text`` line per verse)."""
    program = shutil.which("bible")
    if program is None:
        raise FileNotFoundError("the 'bible' program is missing; install the KJV text with "
                                "`apt-get install bible-kjv-text bible-kjv` (Debian/Ubuntu) or pass --kjv FILE")
    return subprocess.run([program, "-f", "Gen1:1-Rev22:21"], check=True, capture_output=True, text=True).stdout


def parse_kjv(text: str, source: str = "kjv") -> list[Verse]:
    """Verses from ``Abbr chapter:verse text`` lines; abbreviations map to :data:`BOOKS` in order of appearance."""
    verses, names = [], {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        match = _LINE.match(line.strip())
        if match is None:
            raise ValueError(f"{source}:{number}: not a 'Book chapter:verse text' line: {line[:60]!r}")
        abbreviation, chapter, verse, body = match.groups()
        if abbreviation not in names:
            if len(names) == len(BOOKS):
                raise ValueError(f"{source}:{number}: more than {len(BOOKS)} books")
            names[abbreviation] = BOOKS[len(names)]
        verses.append(Verse(names[abbreviation], int(chapter), int(verse), body.strip()))
    if len(names) != len(BOOKS):
        raise ValueError(f"{source}: found {len(names)} books, expected {len(BOOKS)}")
    return verses


def load_kjv(path: str | Path | None = None) -> list[Verse]:
    """The KJV from a text file in ``bible -f`` format, or from the installed ``bible`` program."""
    if path is not None:
        return parse_kjv(Path(path).read_text(), str(path))
    return parse_kjv(kjv_text())


def is_validation_chapter(book: str, chapter: int) -> bool:
    """About 1 chapter in 25, fixed by name (not by a seed), held out from every training split."""
    return zlib.crc32(f"{book} {chapter}".encode()) % 25 == 0


def chapters(verses: list[Verse], validation: bool) -> list[list[Verse]]:
    grouped: dict[tuple[str, int], list[Verse]] = {}
    for v in verses:
        if is_validation_chapter(v.book, v.chapter) == validation:
            grouped.setdefault((v.book, v.chapter), []).append(v)
    return list(grouped.values())


def _span(chapter: list[Verse], rng: random.Random, low: int, high: int) -> list[Verse]:
    length = min(len(chapter), rng.randint(low, high))
    start = rng.randrange(len(chapter) - length + 1)
    return chapter[start:start + length]


def _exchange(chapter_list: list[list[Verse]], rng: random.Random) -> tuple[str, str, str]:
    """One (user, reasoning, answer) triple."""
    kind = rng.random()
    if kind < 0.12:
        a = rng.randint(1, 150)
        b = a + rng.randint(5, 40)
        return (f"Count from {a} to {b}.", f"The user wants the numbers from {a} to {b}, one by one.",
                ", ".join(str(n) for n in range(a, b + 1)) + ".")
    chapter = rng.choice(chapter_list)
    if kind < 0.25:
        verse = rng.choice(chapter)
        return (f"Repeat this verse exactly: {verse.text}",
                "The user wants the verse repeated word for word.", verse.text)
    span = _span(chapter, rng, 2, 9)
    first, last = span[0], span[-1]
    if kind < 0.6 or len(span) == 1:
        where = f"{first.book} {first.chapter}:{first.verse}-{last.verse}"
        return (f"Read {where}.", f"The user wants {first.book} chapter {first.chapter}, verses {first.verse} "
                                  f"to {last.verse}. I will quote them.", " ".join(v.text for v in span))
    return (f"Continue this passage: {first.text}",
            f"This is {first.book} {first.chapter}:{first.verse}. The next verses follow.",
            " ".join(v.text for v in span[1:]))


def make_chats(verses: list[Verse], count: int, seed: int, validation: bool = False) -> list[dict]:
    """``count`` chats of 1-3 exchanges in OpenAI ``messages`` form, drawn with ``seed``."""
    rng = random.Random(seed)
    chapter_list = chapters(verses, validation)
    chats = []
    for _ in range(count):
        messages = []
        for _ in range(rng.choice([1, 1, 2, 3])):
            user, reasoning, answer = _exchange(chapter_list, rng)
            messages += [{"role": "user", "content": user},
                         {"role": "assistant", "content": answer, "reasoning_content": reasoning}]
        chats.append({"messages": messages})
    return chats


def template_messages(chat: dict) -> list[dict]:
    """A chat's messages as the harmony template reads them (``reasoning_content`` becomes ``thinking``)."""
    return [{"role": m["role"], "content": m["content"],
             **({"thinking": m["reasoning_content"]} if "reasoning_content" in m else {})} for m in chat["messages"]]
