"""SQLite FTS5's ``porter unicode61`` tokenizer, in Python: the terms ``knowledge_fts`` holds.

``knowledge.lexical`` indexes chunks in the process and must split and stem them exactly as
FTS5 does, so its BM25 statistics count the same terms:

- **unicode61** (sqlite.org/fts5.html section 4.3.1, ``fts5_unicode2.c``): Unicode letters,
  digits and (BMP) private-use characters (categories L*, N*, Co) are token characters, as
  are combining diacritics (U+0300 to U+036F), everything else (``_`` and punctuation
  included) separates; tokens are case-folded and, with the
  default ``remove_diacritics 1``, stripped of their diacritics (here: NFD, combining marks
  dropped);
- **porter** (section 4.3.2, ``fts5PorterCb``): the Porter stemmer (M. F. Porter, "An
  algorithm for suffix stripping", Program 14(3), 1980) applied to tokens of 3 to 64 bytes;
  shorter and longer ones pass unchanged. FTS5 follows Porter's own later C version, whose
  step 2 maps ``bli`` to ``ble`` (the paper: ``abli`` to ``able``) and ``logi`` to ``log``
  (not in the paper); PyStemmer's ``porter`` is the paper's, so its stems ending in ``bli`` or
  ``logi`` (which steps 3 to 5 never change) get FTS5's step 2 and then steps 4 and 5
  (``_fts5_step2``: ``possibly`` is ``possibl``, not ``possibli``).

Checked against FTS5's own terms (``fts5vocab``) over the bench corpus in
tests/knowledge/test_lexical.py.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable

# letters and digits (``_`` separates), the combining diacritics that fold away (U+0300 to
# U+036F: unicode61 keeps them in their token) and the BMP's private-use area
_TOKEN = re.compile(r"(?:[^\W_]|[\u0300-\u036f\ue000-\uf8ff])+", re.UNICODE)
MIN_STEM = 3  # FTS5's porter leaves tokens shorter than 3 bytes alone
MAX_STEM = 64  # ... and longer than FTS5_PORTER_MAX_TOKEN
STEM_CACHE = 200_000  # tokens whose stems are remembered (emptied when full)
_STEMS: dict[str, str] = {}


@functools.cache
def _stemmer() -> object:
    import Stemmer  # type: ignore[import-not-found]  # PyStemmer, the ``knowledge`` extra

    return Stemmer.Stemmer("porter")


def _fold(token: str) -> str:
    lowered = token.lower()
    if lowered.isascii():
        return lowered
    decomposed = unicodedata.normalize("NFD", lowered)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _consonant(word: str, i: int) -> bool:
    """Porter's consonant: not a vowel, and ``y`` only after a vowel or first."""
    c = word[i]
    if c in "aeiou":
        return False
    if c == "y":
        return i == 0 or not _consonant(word, i - 1)
    return True


def _measure(word: str) -> int:
    """Porter's m: the number of vowel-consonant sequences of ``[C](VC)^m[V]``."""
    m, vowel = 0, False
    for i in range(len(word)):
        if _consonant(word, i):
            if vowel:
                m += 1
            vowel = False
        else:
            vowel = True
    return m


def _cvc(word: str) -> bool:
    """Porter's ``*o``: ends consonant-vowel-consonant, the last not ``w``, ``x`` or ``y``."""
    n = len(word)
    return (
        n >= 3
        and _consonant(word, n - 3)
        and not _consonant(word, n - 2)
        and _consonant(word, n - 1)
        and word[-1] not in "wxy"
    )


def _fts5_step2(stemmed: str) -> str:
    """FTS5's step 2 where it departs from the paper, then steps 4 and 5 (see above)."""
    if stemmed.endswith("logi") and _measure(stemmed[:-4]) > 0:
        return stemmed[:-1]  # ``log``: no rule of steps 3 to 5 ends so
    if not (stemmed.endswith("bli") and _measure(stemmed[:-3]) > 0):
        return stemmed
    word = stemmed[:-1] + "e"
    if word.endswith(("able", "ible")) and _measure(word[:-4]) > 1:  # step 4
        return word[:-4]
    base = word[:-1]  # step 5a: the final ``e``
    m = _measure(base)
    if m > 1 or (m == 1 and not _cvc(base)):
        return base
    return word


def words(text: str) -> list[str]:
    """``text``'s unicode61 tokens: case-folded, diacritics removed, in order."""
    return [_fold(t) for t in _TOKEN.findall(text)]


def stem(tokens: Iterable[str]) -> list[str]:
    """The Porter stems of unicode61 tokens, as FTS5's ``porter`` gives them."""
    cache = _STEMS
    out = list(tokens)
    for i, token in enumerate(out):
        stemmed = cache.get(token)
        if stemmed is None:
            stemmed = token
            if MIN_STEM <= len(token.encode()) <= MAX_STEM:
                stemmed = _fts5_step2(_stemmer().stemWord(token))  # type: ignore[attr-defined]
            if len(cache) >= STEM_CACHE:
                cache.clear()
            cache[token] = stemmed
        out[i] = stemmed
    return out


def terms(text: str) -> list[str]:
    """``text`` as ``knowledge_fts`` indexes it: its stemmed tokens, in order (repeats kept)."""
    return stem(words(text))


__all__ = ["stem", "terms", "words"]
