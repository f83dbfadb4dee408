"""The words a message is found by, and the words a search asks for: one function for both,
so a query matches exactly what the writer indexed.

A word is a run of letters, digits and underscores (``\\w``), case-folded, with accents taken
off (``Café`` and ``cafe`` are the same word). Whole words match, not parts of them. Scripts
written without spaces between words (Chinese, Japanese) come out as one word per run: a
search there finds a run only whole.
"""

from __future__ import annotations

import re
import unicodedata

_WORD = re.compile(r"\w+")
#: Longer words are cut to this many characters, in messages and in queries alike.
MAX_WORD_CHARS = 40
#: The distinct words of one message that are indexed (its first ones).
MAX_MESSAGE_WORDS = 200
#: The words a query may hold; all must be in a message for it to match.
MAX_QUERY_WORDS = 8


def words(text: str, limit: int = MAX_MESSAGE_WORDS) -> list[str]:
    """The distinct words of ``text`` in order of first appearance, at most ``limit``."""
    if text.isascii():
        folded = text.lower()
    else:
        decomposed = unicodedata.normalize("NFKD", text.casefold())
        folded = "".join(c for c in decomposed if not unicodedata.combining(c))
    found: dict[str, None] = {}
    for match in _WORD.finditer(folded):
        found[match.group()[:MAX_WORD_CHARS]] = None
        if len(found) >= limit:
            break
    return list(found)
