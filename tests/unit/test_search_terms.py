"""The words a message is indexed by and a query asks for (history/search_terms.py)."""

from __future__ import annotations

from history.search_terms import MAX_MESSAGE_WORDS, MAX_WORD_CHARS, words


def test_words_fold_case_and_accents_and_keep_first_order() -> None:
    assert words("Crème BRÛLÉE, crème brulee!") == ["creme", "brulee"]
    assert words("ÅNGSTRÖM Straße") == ["angstrom", "strasse"]
    assert words("it's 2 o'clock_now") == ["it", "s", "2", "o", "clock_now"]


def test_punctuation_and_emoji_are_no_words() -> None:
    assert words("?! 🍜 ...") == []
    assert words("") == []


def test_scripts_without_spaces_come_out_as_runs() -> None:
    assert words("東京 タワー") == ["東京", "タワー"]
    assert words("Привет, МИР") == ["привет", "мир"]


def test_long_words_are_cut_and_many_words_capped() -> None:
    long = "a" * (MAX_WORD_CHARS + 10)
    assert words(long) == ["a" * MAX_WORD_CHARS]
    many = " ".join(f"w{n}" for n in range(MAX_MESSAGE_WORDS + 50))
    assert len(words(many)) == MAX_MESSAGE_WORDS
    assert words(many, 3) == ["w0", "w1", "w2"]
