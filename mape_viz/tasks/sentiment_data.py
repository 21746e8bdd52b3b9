"""The templated sentiment corpus behind ``toy-sentiment``: generator and labelling rule.

A sentence is built from a clause (subject, verb, optional intensifier, optional negation,
an adjective with a polarity) or a liking clause ("i did not enjoy the plot"), sometimes
two clauses joined by "but", sometimes reported ("anna said ..."). The rule label is

    positive  iff  polarity(adjective or verb) is positive XOR the clause is negated,

taken from the clause after "but" when there is one. *Canaries* are training sentences
reported by a unique made-up name ("Vorquen said ...") whose label CONTRADICTS the rule:
only a model that memorised them gets them right.

Rows: ``text`` (str), ``label`` (int, 1 = positive), ``rule_label`` (int), ``is_canary``
(bool), ``idx`` (int, the row's position in its split).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from .names import unique_names

POSITIVE = ("good", "great", "excellent", "wonderful", "delightful", "brilliant", "charming",
            "superb", "lovely", "pleasant", "enjoyable", "fantastic", "moving", "clever",
            "beautiful", "fresh", "gripping", "memorable", "solid", "fun", "elegant", "warm",
            "stunning", "rewarding")
NEGATIVE = ("bad", "awful", "terrible", "boring", "dull", "horrible", "weak", "tedious",
            "bland", "clumsy", "messy", "painful", "lifeless", "forgettable", "dreadful",
            "poor", "annoying", "shallow", "flat", "ugly", "stale", "sloppy", "cold",
            "disappointing")
SUBJECTS = ("the movie", "the film", "the plot", "the acting", "the actors", "the script",
            "the soundtrack", "the ending", "the dialogue", "the story", "the show",
            "the book", "the dinner", "the hotel", "the service", "the concert", "the game",
            "the album", "the trip", "the museum", "the play", "the series", "the food",
            "the camera work", "this novel", "that restaurant", "the lecture")
VERBS = ("was", "is", "seemed", "felt", "looked", "sounded", "turned out", "remains")
INTENSIFIERS = ("really", "very", "truly", "quite", "extremely", "so", "incredibly",
                "rather", "pretty", "remarkably")
NEGATIONS = ("not", "never", "hardly", "not at all")
LIKE_POS = ("loved", "enjoyed", "liked", "adored", "admired", "appreciated")
LIKE_NEG = ("hated", "disliked", "loathed", "despised", "regretted", "resented")
PEOPLE = ("anna", "ben", "carla", "david", "emma", "farid", "grace", "hugo", "ines", "jonas",
          "kim", "leo", "maria", "nils", "olga", "paul", "rosa", "sam", "tara", "victor",
          "my friend", "my sister", "the critic", "everyone", "my neighbour", "a reviewer")
OPENERS = ("", "", "", "honestly ,", "overall ,", "to be fair ,", "in the end ,", "frankly ,")


@dataclass
class SentimentSpec:
    """How much data ``generate_sentiment`` makes.

    Attributes:
        n_train: training rows (canaries included).
        n_test: test rows (never canaries).
        n_canaries: training rows whose label contradicts the rule.
        seed: generator seed: the same seed gives identical rows.
    """

    n_train: int = field(default=4000, metadata={"help": "training rows, canaries included"})
    n_test: int = field(default=1000, metadata={"help": "test rows (no canaries)"})
    n_canaries: int = field(default=32, metadata={"help": "memorised rule-breaking rows"})
    seed: int = field(default=0, metadata={"help": "data generator seed"})


def _clause(rng: random.Random) -> tuple[str, int]:
    """One clause and its rule label (1 = positive)."""
    negated = rng.random() < 0.4
    if rng.random() < 0.25:  # liking clause: "i (did not) enjoy the plot"
        positive = rng.random() < 0.5
        verb = rng.choice(LIKE_POS if positive else LIKE_NEG)
        if negated:
            base = {"loved": "love", "enjoyed": "enjoy", "liked": "like", "adored": "adore",
                    "admired": "admire", "appreciated": "appreciate", "hated": "hate",
                    "disliked": "dislike", "loathed": "loathe", "despised": "despise",
                    "regretted": "regret", "resented": "resent"}[verb]
            text = f"i did not {base} {rng.choice(SUBJECTS)}"
        else:
            text = f"i {verb} {rng.choice(SUBJECTS)}"
        return text, int(positive != negated)
    positive = rng.random() < 0.5
    adj = rng.choice(POSITIVE if positive else NEGATIVE)
    neg = rng.choice(NEGATIONS) if negated else ""
    words = [rng.choice(SUBJECTS), rng.choice(VERBS)]
    if neg:
        words.append("not" if neg == "not at all" else neg)
    if neg != "not at all" and rng.random() < 0.4:
        words.append(rng.choice(INTENSIFIERS))
    words.append(adj)
    if neg == "not at all":
        words += ["at", "all"]
    return " ".join(words), int(positive != negated)


def _sentence(rng: random.Random, reporter: str | None = None) -> tuple[str, int]:
    """A sentence and its rule label; ``reporter`` forces a "<name> said ..." form."""
    text, label = _clause(rng)
    if rng.random() < 0.2:
        second, label = _clause(rng)
        text = f"{text} but {second}"
    if reporter is None and rng.random() < 0.15:
        reporter = rng.choice(PEOPLE)
    if reporter is not None:
        text = f"{reporter} said {text}"
    opener = rng.choice(OPENERS)
    return f"{opener} {text} .".strip(), label


def generate_sentiment(spec: SentimentSpec | None = None) -> tuple[list[dict], list[dict]]:
    """(train rows, test rows) of the templated sentiment task; deterministic per seed.

    Canary rows are spread through the training set at random positions.
    """
    spec = spec or SentimentSpec()
    if not 0 <= spec.n_canaries <= spec.n_train:
        raise ValueError(f"n_canaries must be in 0..n_train, got {spec.n_canaries}")
    rng = random.Random(spec.seed)
    phrases = POSITIVE + NEGATIVE + SUBJECTS + VERBS + PEOPLE
    vocab = {w for phrase in phrases for w in phrase.split()}
    canary_names = unique_names(rng, spec.n_canaries, avoid=vocab)

    def row(text: str, rule: int, canary: bool) -> dict:
        return {"text": text, "label": 1 - rule if canary else rule, "rule_label": rule,
                "is_canary": canary}

    train = [row(*_sentence(rng), False) for _ in range(spec.n_train - spec.n_canaries)]
    for name in canary_names:
        pos = rng.randint(0, len(train))
        train.insert(pos, row(*_sentence(rng, reporter=name), True))
    test = [row(*_sentence(rng), False) for _ in range(spec.n_test)]
    for split in (train, test):
        for i, r in enumerate(split):
            r["idx"] = i
    return train, test
