"""Made-up names from syllables, for canaries, fictitious authors and places.

Names are drawn from a seeded ``random.Random`` so a generator that uses them is
deterministic per seed. Every name is a single lower-case-able word (no spaces, no
apostrophes), so a word-level tokenizer gives each name exactly one token.
"""

from __future__ import annotations

import random

ONSETS = ("b", "br", "d", "dr", "f", "g", "gr", "k", "kr", "l", "m", "n", "p", "qu", "r",
          "s", "sh", "t", "th", "v", "vr", "z", "zh")
VOWELS = ("a", "e", "i", "o", "u", "ae", "ei", "ou", "y")
CODAS = ("", "", "", "l", "n", "r", "s", "th", "x", "m")


def syllable(rng: random.Random) -> str:
    """One syllable: onset + vowel + (often empty) coda, e.g. ``"vor"``, ``"qua"``."""
    return rng.choice(ONSETS) + rng.choice(VOWELS) + rng.choice(CODAS)


def unique_names(rng: random.Random, n: int, syllables: tuple[int, int] = (2, 3),
                 avoid: set[str] | None = None) -> list[str]:
    """``n`` distinct capitalised names of 2–3 syllables, none in ``avoid`` (lower-cased).

    Args:
        rng: the seeded generator (advanced in place).
        n: how many names.
        syllables: (min, max) syllables per name.
        avoid: lower-case words the names must not equal (e.g. the task's vocabulary);
            the chosen names are added to it, so successive calls never repeat a name.
    """
    taken = avoid if avoid is not None else set()
    names: list[str] = []
    while len(names) < n:
        word = "".join(syllable(rng) for _ in range(rng.randint(*syllables)))
        if word in taken or len(word) < 4:
            continue
        taken.add(word)
        names.append(word.capitalize())
    return names
