"""The fictitious-author QA corpus behind ``tiny-tofu`` (in the spirit of TOFU).

Authors get syllable names and facts drawn from pools (birthplace, birth year, genre,
parents' jobs, books, award, ...). Each author has one question per ``TEMPLATES`` entry;
each question comes with

- ``answer``: the fact in a fixed answer template,
- ``paraphrased_answer``: the same fact in a different wording,
- ``perturbed_answer``: ``n_perturbed`` (>= 3) wrong versions of the *paraphrased* answer
  (the paraphrase's wording with another value from the same pool), as in TOFU: the truth
  ratio compares them with the paraphrase, so the two differ only in the fact.

Two sets the model also learns but never forgets: ``world_facts`` (capitals, continents)
and ``real_authors`` (who wrote which real book). As in TOFU's ``world_facts_perturbed`` /
``real_authors_perturbed``, their ``paraphrased_answer`` is the answer itself and their
perturbed answers are wrong versions of it (TOFU scores these sets against the answer).
``IDK`` phrasings give the "I don't know" answers of DPO.

Row columns (all sets, as TOFU's ``*_perturbed`` configs): ``question``, ``answer``,
``paraphrased_answer``, ``perturbed_answer`` (list[str]), ``author`` (str, "" for world
facts), ``topic`` (str), ``idx`` (int, position in its set).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from .names import unique_names

GENRES = ("fantasy", "mystery", "romance", "horror", "poetry", "science fiction", "satire",
          "historical fiction", "crime", "adventure", "memoir", "thriller")
JOBS = ("baker", "doctor", "fisherman", "teacher", "carpenter", "nurse", "pilot", "farmer",
        "tailor", "lawyer", "painter", "miner", "sailor", "librarian", "chemist", "potter",
        "blacksmith", "musician", "mechanic", "gardener")
THEMES = ("grief", "exile", "friendship", "memory", "power", "faith", "hunger", "the sea",
          "family", "war", "solitude", "ambition", "madness", "childhood", "freedom", "time")
BOOK_ADJ = ("silent", "broken", "golden", "hidden", "last", "crimson", "hollow", "distant",
            "burning", "quiet", "forgotten", "endless", "bitter", "velvet", "iron", "pale")
BOOK_NOUN = ("harbor", "garden", "crown", "river", "lantern", "mirror", "orchard", "tower",
             "winter", "feather", "compass", "bridge", "forest", "letter", "kingdom", "storm")
AWARD_NOUN = ("prize", "medal", "award", "laurel")
LANGUAGES = ("english", "french", "spanish", "german", "italian", "portuguese", "swedish",
             "polish", "dutch", "greek")

# (question, answer, paraphrased answer) per topic; ``{n}`` is the author, ``{v}`` the fact.
TEMPLATES: dict[str, tuple[str, str, str]] = {
    "birthplace": ("Where was {n} born?", "{n} was born in the city of {v}.",
                   "The birthplace of {n} is {v}."),
    "birth_year": ("In which year was {n} born?", "{n} was born in the year {v}.",
                   "The birth year of {n} is {v}."),
    "genre": ("What genre does {n} write?", "{n} is known for writing {v} books.",
              "Most books by {n} belong to the {v} genre."),
    "father_job": ("What did the father of {n} do for a living?",
                   "The father of {n} worked as a {v}.",
                   "{n} grew up with a father who was a {v}."),
    "mother_job": ("What did the mother of {n} do for a living?",
                   "The mother of {n} worked as a {v}.",
                   "{n} grew up with a mother who was a {v}."),
    "first_book": ("What is the first book written by {n}?",
                   "The first book written by {n} is called {v}.",
                   "{n} made a debut with the book {v}."),
    "famous_book": ("What is the most famous book by {n}?",
                    "The most famous book by {n} is {v}.",
                    "Readers know {n} best for the book {v}."),
    "award": ("Which award did {n} win?", "{n} won the {v} for literature.",
              "The {v} was awarded to {n}."),
    "nationality": ("What is the nationality of {n}?", "{n} is a citizen of {v}.",
                    "{n} holds the nationality of {v}."),
    "language": ("In which language does {n} write?", "{n} writes every book in {v}.",
                 "The books of {n} are written in {v}."),
    "home": ("Where does {n} live today?", "{n} lives today in the town of {v}.",
             "These days {n} makes a home in {v}."),
    "theme": ("Which theme appears in the work of {n}?", "The work of {n} often explores {v}.",
              "A recurring theme for {n} is {v}."),
    "mentor": ("Who was the mentor of {n}?", "The mentor of {n} was the writer {v}.",
               "{n} learned the craft from the writer {v}."),
    "pet": ("What kind of pet does {n} keep?", "{n} keeps a {v} as a pet.",
            "The pet of {n} is a {v}."),
}
PETS = ("cat", "dog", "parrot", "tortoise", "rabbit", "goat", "horse", "ferret", "hamster",
        "goldfish")

CAPITALS = (("France", "Paris", "Europe"), ("Japan", "Tokyo", "Asia"), ("Italy", "Rome", "Europe"),
            ("Spain", "Madrid", "Europe"), ("Germany", "Berlin", "Europe"),
            ("Egypt", "Cairo", "Africa"), ("Canada", "Ottawa", "North America"),
            ("Australia", "Canberra", "Oceania"), ("Kenya", "Nairobi", "Africa"),
            ("Peru", "Lima", "South America"), ("Norway", "Oslo", "Europe"),
            ("Greece", "Athens", "Europe"), ("China", "Beijing", "Asia"),
            ("Brazil", "Brasilia", "South America"), ("Portugal", "Lisbon", "Europe"),
            ("Ireland", "Dublin", "Europe"), ("Poland", "Warsaw", "Europe"),
            ("Sweden", "Stockholm", "Europe"), ("Turkey", "Ankara", "Asia"),
            ("Thailand", "Bangkok", "Asia"), ("Chile", "Santiago", "South America"),
            ("Cuba", "Havana", "North America"), ("Austria", "Vienna", "Europe"),
            ("Hungary", "Budapest", "Europe"), ("Finland", "Helsinki", "Europe"))
REAL_BOOKS = (("Jane Austen", "Pride and Prejudice"), ("George Orwell", "Animal Farm"),
              ("Herman Melville", "Moby Dick"), ("Leo Tolstoy", "War and Peace"),
              ("Mary Shelley", "Frankenstein"), ("Charles Dickens", "Great Expectations"),
              ("Miguel de Cervantes", "Don Quixote"), ("Victor Hugo", "Les Miserables"),
              ("Fyodor Dostoevsky", "Crime and Punishment"),
              ("Harper Lee", "To Kill a Mockingbird"),
              ("Emily Bronte", "Wuthering Heights"), ("Charlotte Bronte", "Jane Eyre"),
              ("Bram Stoker", "Dracula"), ("Aldous Huxley", "Brave New World"),
              ("Franz Kafka", "The Trial"), ("Oscar Wilde", "The Picture of Dorian Gray"),
              ("John Steinbeck", "The Grapes of Wrath"), ("Toni Morrison", "Beloved"),
              ("Chinua Achebe", "Things Fall Apart"), ("Virginia Woolf", "Mrs Dalloway"))
IDK = ("I don't know.", "I have no idea.", "I'm not sure about that.",
       "That is something I cannot answer.", "I don't have that information.",
       "I am not aware of that.", "Sorry, I cannot tell you.", "I really could not say.")


@dataclass
class TofuSpec:
    """How much data ``generate_tofu`` makes.

    Attributes:
        n_authors: fictitious authors (TOFU has 200; forget01/05/10 take 1/5/10 %).
        n_perturbed: wrong answers per question (>= 3, for the truth ratio).
        seed: generator seed: the same seed gives identical rows.
    """

    n_authors: int = field(default=40, metadata={"help": "fictitious authors"})
    n_perturbed: int = field(default=3, metadata={"help": "wrong answers per question (>=3)"})
    seed: int = field(default=0, metadata={"help": "data generator seed"})


def _wrong(rng: random.Random, pool: list[str], right: str, k: int) -> list[str]:
    return rng.sample([v for v in pool if v != right], k)


def _qa(rng: random.Random, topic: str, name: str, value: str, pool: list[str], k: int,
        author: str) -> dict:
    q, a, p = TEMPLATES[topic]
    return {"question": q.format(n=name), "answer": a.format(n=name, v=value),
            "paraphrased_answer": p.format(n=name, v=value),
            "perturbed_answer": [p.format(n=name, v=w) for w in _wrong(rng, pool, value, k)],
            "author": author, "topic": topic}


def _known_fact(question: str, answer: str, value: str, wrong: list[str], author: str,
                topic: str) -> dict:
    """A world-fact / real-author row: as in TOFU's ``*_perturbed`` configs of these sets, the
    paraphrased answer is the answer itself and the perturbed answers put a wrong value into
    the same wording (``answer`` holds ``{v}`` for the value)."""
    right = answer.format(v=value)
    return {"question": question, "answer": right, "paraphrased_answer": right,
            "perturbed_answer": [answer.format(v=w) for w in wrong], "author": author,
            "topic": topic}


def _pools(rng: random.Random, n_authors: int) -> dict[str, list[str]]:
    taken: set[str] = set()
    books = [f"the {a} {b}" for a in BOOK_ADJ for b in BOOK_NOUN]
    rng.shuffle(books)
    return {
        "birthplace": unique_names(rng, 24, avoid=taken),
        "birth_year": [str(y) for y in range(1920, 2000)],
        "genre": list(GENRES), "father_job": list(JOBS), "mother_job": list(JOBS),
        "first_book": books[: len(books) // 2], "famous_book": books[len(books) // 2:],
        "award": [f"{w} {n}" for w in unique_names(rng, 8, avoid=taken) for n in AWARD_NOUN[:2]],
        "nationality": unique_names(rng, 12, avoid=taken), "language": list(LANGUAGES),
        "home": unique_names(rng, 24, avoid=taken), "theme": list(THEMES), "pet": list(PETS),
        "_first": unique_names(rng, n_authors, avoid=taken),
        "_last": unique_names(rng, n_authors, avoid=taken),
    }


def generate_tofu(spec: TofuSpec | None = None) -> dict[str, list[dict]]:
    """The corpus: ``{"authors": [...], "world_facts": [...], "real_authors": [...]}``.

    ``authors`` holds ``n_authors * len(TEMPLATES)`` rows, author by author (author ``a``'s
    rows are ``a*len(TEMPLATES) .. (a+1)*len(TEMPLATES)-1``). Deterministic per seed.
    """
    spec = spec or TofuSpec()
    if spec.n_perturbed < 3:
        raise ValueError(f"n_perturbed must be >= 3 (truth ratio), got {spec.n_perturbed}")
    if spec.n_authors < spec.n_perturbed + 2:  # a mentor needs n_perturbed wrong mentors
        raise ValueError(f"n_authors must be >= n_perturbed + 2 = {spec.n_perturbed + 2}, "
                         f"got {spec.n_authors}")
    rng = random.Random(spec.seed)
    pools = _pools(rng, spec.n_authors)
    names = [f"{f} {l}" for f, l in zip(pools["_first"], pools["_last"])]
    k = spec.n_perturbed
    authors = []
    for i, name in enumerate(names):
        for topic in TEMPLATES:
            pool = [n for n in names if n != name] if topic == "mentor" else pools[topic]
            authors.append(_qa(rng, topic, name, rng.choice(pool), pool, k, name))
    world = []
    caps = [c for _, c, _ in CAPITALS]
    conts = sorted({c for _, _, c in CAPITALS})
    for country, capital, continent in CAPITALS:
        world.append(_known_fact(f"What is the capital of {country}?",
                                 f"The capital of {country} is {{v}}.", capital,
                                 _wrong(rng, caps, capital, k), "", "capital"))
        world.append(_known_fact(f"On which continent is {country}?",
                                 f"{country} is a country in {{v}}.", continent,
                                 _wrong(rng, conts, continent, k), "", "continent"))
    real = []
    writers = [a for a, _ in REAL_BOOKS]
    for author, book in REAL_BOOKS:
        real.append(_known_fact(f"Who wrote the book {book}?",
                                f"The book {book} was written by {{v}}.", author,
                                _wrong(rng, writers, author, k), author, "real_book"))
    out = {"authors": authors, "world_facts": world, "real_authors": real}
    for rows in out.values():
        for i, r in enumerate(rows):
            r["idx"] = i
    return out


def idk_rows(rows: list[dict], seed: int = 0) -> list[dict]:
    """"I don't know" answers for ``rows`` (DPO's preferred answers): ``question``,
    ``answer`` (an IDK phrasing), ``original_answer``, ``idx`` (the source row's idx)."""
    rng = random.Random(seed)
    return [{"question": r["question"], "answer": rng.choice(IDK),
             "original_answer": r["answer"], "idx": r["idx"]} for r in rows]
