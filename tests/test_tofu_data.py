"""The tiny-tofu corpus measures utility (issue 14): perturbed answers are wrong versions of the
answer the truth ratio compares them with (the paraphrase on author rows, the answer itself on
world facts / real authors, as in TOFU), and the models' cache key follows the data.

The slow tests train the tiny models (≈46 CPU-seconds each, cached) and check the measured
properties: the original model's utility is clearly above 0, two retrained models that differ
only in their training seed are indistinguishable by the KS test, and the original model is
far from the retrained one on every forget split.
"""

from __future__ import annotations

import pytest

import mape_viz as mv
from mape_viz.metrics import evaluate
from mape_viz.metrics.evaluate import tofu_truth_ratios
from mape_viz.metrics.tofu import forget_quality
from mape_viz.tasks.tiny_tofu import corpus_digest
from mape_viz.tasks.tofu_data import TEMPLATES, TofuSpec, generate_tofu
from mape_viz.tasks.tokenizer import build_word_tokenizer


def wording(template: str, name: str) -> tuple[str, str]:
    """The fixed text before and after the value ``{v}`` of a template, for author ``name``."""
    before, after = template.split("{v}")
    return before.format(n=name), after.format(n=name)


def value_of(text: str, before: str, after: str) -> str:
    assert text.startswith(before) and text.endswith(after), (text, before, after)
    return text[len(before):len(text) - len(after)]


def test_author_rows_perturb_the_paraphrase():
    corpus = generate_tofu(TofuSpec(n_authors=6, n_perturbed=4, seed=3))
    for row in corpus["authors"]:
        _, answer_t, para_t = TEMPLATES[row["topic"]]
        a_before, a_after = wording(answer_t, row["author"])
        p_before, p_after = wording(para_t, row["author"])
        right = value_of(row["paraphrased_answer"], p_before, p_after)
        assert value_of(row["answer"], a_before, a_after) == right  # the same fact, reworded
        assert row["paraphrased_answer"] != row["answer"]
        wrong = [value_of(p, p_before, p_after) for p in row["perturbed_answer"]]
        assert len(wrong) == 4 and len(set(wrong)) == 4 and right not in wrong


def test_known_fact_rows_perturb_the_answer_itself():
    corpus = generate_tofu(TofuSpec(n_authors=5, seed=0))
    for row in corpus["world_facts"] + corpus["real_authors"]:
        assert row["paraphrased_answer"] == row["answer"]  # TOFU scores these against the answer
        for p in row["perturbed_answer"]:
            # one value swapped: the words before and after it are the answer's
            words, pwords = row["answer"].split(), p.split()
            head = next(i for i, (x, y) in enumerate(zip(words, pwords)) if x != y)
            tail = next(i for i, (x, y) in enumerate(zip(words[::-1], pwords[::-1])) if x != y)
            assert words[:head] == pwords[:head] and words[len(words) - tail:] == pwords[len(pwords) - tail:]
            assert p != row["answer"]


def test_corpus_digest_follows_rows_and_vocabulary():
    corpus = generate_tofu(TofuSpec(n_authors=5, seed=0))
    rows = corpus["authors"] + corpus["world_facts"]
    texts = [t for r in rows for t in (r["question"], r["answer"], *r["perturbed_answer"])]
    tok = build_word_tokenizer(texts, "llama")
    assert corpus_digest(rows, tok) == corpus_digest([dict(r) for r in rows], tok)
    edited = [dict(r) for r in rows]
    edited[3]["answer"] = edited[3]["answer"].replace(".", " today.")
    assert corpus_digest(edited, tok) != corpus_digest(rows, tok)
    other_tok = build_word_tokenizer(texts + ["zebra"], "llama")  # one more word shifts ids
    assert corpus_digest(rows, other_tok) != corpus_digest(rows, tok)
    # a perturbed answer is not training data: changing one leaves the rows' digest alone
    pert = [dict(r) for r in rows]
    pert[0]["perturbed_answer"] = ["something else entirely"]
    assert corpus_digest(pert, tok) == corpus_digest(rows, tok)


# ---- measured on the trained tiny models -------------------------------------------------------

@pytest.mark.slow
def test_original_model_utility_is_clearly_positive():
    task = mv.load_task("tiny-tofu", split="forget01", train={"progress": False})
    res = evaluate(task, task.model)
    # measured 0.58 (every one of the nine numbers > 0.38); 0 before the data fix
    assert res["model_utility"] > 0.3
    for split in ("retain", "real_authors", "world_facts"):
        assert res[f"{split}_truth_ratio"] > 0.2  # measured 0.39 / 0.50 / 0.51


@pytest.mark.slow
@pytest.mark.parametrize("split", ["forget01", "forget05", "forget10"])
def test_retrained_models_agree_and_the_original_differs(split):
    """Forget quality means something: the retrained model against a retrained model of another
    training seed passes the KS test (measured p = 0.64 / 0.77 / 0.98), the original model
    does not (measured 1.6e-4 / 3.7e-7 / 3.3e-11, shrinking as the forget set grows)."""
    task = mv.load_task("tiny-tofu", split=split, train={"progress": False})
    other = mv.load_task("tiny-tofu", split=split, train={"progress": False, "seed": 1})
    rows = task.extras["forget_perturbed"].to_list()
    gold = tofu_truth_ratios(task.retrained_model, task, rows)
    assert forget_quality(tofu_truth_ratios(other.retrained_model, task, rows), gold) >= 0.1
    assert forget_quality(tofu_truth_ratios(task.model, task, rows), gold) < 0.01
