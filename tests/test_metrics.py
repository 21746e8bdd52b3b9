"""Pure metric functions on hand-computed cases (no models)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from mape_viz.metrics import (accuracy, auc_score, fit_threshold, forget_quality, harmonic_mean,
                              lcs_length, mia, model_utility, multiple_choice_accuracy,
                              normalize_answer, normalised_logprob, normalised_probability,
                              option_probability, rouge_l_recall, rouge_l_recall_batch,
                              rouge_tokens, squad_exact_match, squad_f1, squad_scores,
                              truth_ratio, truth_ratio_from_logprobs, truth_ratio_score,
                              truth_ratio_symmetric)


# ------------------------------------------------------------------------ classification

def test_accuracy_from_ids_logits_and_tensors():
    assert accuracy([0, 1, 2, 1], [0, 1, 1, 1]) == 0.75
    logits = torch.tensor([[2.0, 1.0], [0.1, 0.3], [5.0, -1.0]])
    assert accuracy(logits, torch.tensor([0, 1, 1])) == pytest.approx(2 / 3)
    assert accuracy(np.array([[0.2, 0.8]]), [1]) == 1.0
    assert math.isnan(accuracy([], []))
    with pytest.raises(ValueError):
        accuracy([0, 1], [0])


def test_multiple_choice_accuracy():
    ll = [[-1.0, -0.5, -3.0, -2.0],   # argmax 1
          [-0.1, -0.5, -3.0, -2.0],   # argmax 0
          [-4.0, -5.0, -3.0, -2.0]]   # argmax 3
    assert multiple_choice_accuracy(ll, [1, 2, 3]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        multiple_choice_accuracy([0.1, 0.2], [0])


# ---------------------------------------------------------------------------------- SQuAD

def test_squad_normalisation():
    assert normalize_answer("The  Quick, brown fox!") == "quick brown fox"
    assert normalize_answer("An apple a day") == "apple day"
    assert normalize_answer("theory") == "theory"  # articles only as whole words


def test_squad_em_and_f1_known_strings():
    assert squad_exact_match("the Eiffel Tower.", ["Eiffel tower"]) == 1.0
    assert squad_exact_match("Eiffel", "Eiffel tower") == 0.0
    # red | car vs red | truck: 1 common token -> P = R = 1/2
    assert squad_f1("a red car", "the red truck") == pytest.approx(0.5)
    # P = 2/3, R = 1 -> F1 = 0.8
    assert squad_f1("red car parked", "red car") == pytest.approx(0.8)
    assert squad_f1("red car", ["blue", "The red car"]) == 1.0  # max over gold answers
    assert squad_f1("green", "red") == 0.0
    # SQuAD v2 conventions: empty vs empty scores 1; empty gold list = unanswerable
    assert squad_f1("", "") == 1.0 and squad_f1("", []) == 1.0 and squad_exact_match("", []) == 1.0
    assert squad_f1("something", []) == 0.0
    # repeated tokens use the multiset overlap
    assert squad_f1("paris paris", "paris") == pytest.approx(2 * 0.5 * 1 / 1.5)


def test_squad_scores_means():
    s = squad_scores(["red car", "blue", "Paris"], [["red car"], ["green"], ["paris", "Rome"]])
    assert s["em"] == pytest.approx(2 / 3) and s["f1"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        squad_scores(["a"], [])


# ------------------------------------------------------------------------------- ROUGE-L

def test_lcs_length_classic():
    assert lcs_length("ABCBDAB", "BDCABA") == 4
    assert lcs_length([], ["a"]) == 0


def test_rouge_l_recall_known_strings():
    assert rouge_tokens("Hello, World! It's 2024.") == ["hello", "world", "it", "s", "2024"]
    # LCS(the cat is on a mat, the cat sat on the mat) = the cat on mat = 4; |ref| = 6
    assert rouge_l_recall("the cat is on a mat", "the cat sat on the mat") == pytest.approx(4 / 6)
    assert rouge_l_recall("Hello, world!", "hello world") == 1.0
    assert rouge_l_recall("", "some answer") == 0.0
    assert rouge_l_recall("anything", "") == 0.0
    # recall ignores extra predicted words, order matters
    assert rouge_l_recall("x y z born in paris in 1990 q", "born in paris in 1990") == 1.0
    assert rouge_l_recall("c b a", "a b c") == pytest.approx(1 / 3)
    np.testing.assert_allclose(rouge_l_recall_batch(["a b", "c"], ["a b c d", "c"]), [0.5, 1.0])


# --------------------------------------------------------------- probability, truth ratio

def test_normalised_probability_known_logprob():
    assert normalised_probability(3 * math.log(0.5), 3) == pytest.approx(0.5)
    np.testing.assert_allclose(
        normalised_probability(torch.tensor([math.log(0.2) + math.log(0.8), -1.0]), [2, 1]),
        [0.4, math.exp(-1.0)])
    assert normalised_logprob(-6.0, 3) == pytest.approx(-2.0)
    with pytest.raises(ValueError):
        normalised_probability([-1.0], [0])


def test_option_probability():
    np.testing.assert_allclose(option_probability([0.4, 0.5], [[0.2, 0.2], [0.5, np.nan]]),
                               [0.5, 0.5])


def test_truth_ratio_known_probabilities():
    para = np.array([0.5, 0.2])
    pert = np.array([[0.1, 0.3], [0.3, 0.3]])
    r = truth_ratio(para, pert)
    np.testing.assert_allclose(r, [0.2 / 0.5, 0.3 / 0.2])
    rg = truth_ratio(para, pert, mean="geometric")
    np.testing.assert_allclose(rg, [math.sqrt(0.03) / 0.5, 1.5])
    # log-space version, ragged perturbed sets (NaN = absent)
    rl = truth_ratio_from_logprobs(np.log(para), np.log([[0.1, 0.3], [0.3, np.nan]]))
    np.testing.assert_allclose(rl, [0.4, 1.5])
    with pytest.raises(ValueError):
        truth_ratio(para, pert, mean="median")


def test_truth_ratio_reporting():
    r = [0.4, 1.5]
    assert truth_ratio_score(r, forget=True) == pytest.approx(0.95)       # raw mean
    assert truth_ratio_score(r, forget=False) == pytest.approx(0.3)       # mean max(0, 1-R)
    assert truth_ratio_symmetric(r) == pytest.approx((0.4 + 1 / 1.5) / 2)


# -------------------------------------------------------------- forget quality, utility

def test_forget_quality_ks():
    rng = np.random.default_rng(0)
    a = rng.lognormal(size=200)
    assert forget_quality(a, a.copy()) == pytest.approx(1.0)
    assert forget_quality(a, a * np.exp(1.0)) < 0.01  # shifted in log space
    assert forget_quality(a, rng.lognormal(size=200)) > 0.01
    # invariant to R -> 1/R (the TOFU code tests 1/R)
    b = rng.lognormal(0.3, size=150)
    assert forget_quality(a, b) == pytest.approx(forget_quality(1 / a, 1 / b))
    with pytest.raises(ValueError):
        forget_quality([], a)


def test_harmonic_mean_and_model_utility():
    assert harmonic_mean([1, 2, 4]) == pytest.approx(3 / 1.75)
    assert harmonic_mean([0.5, 0.0, 0.9]) == 0.0
    assert harmonic_mean([0.3, 0.7]) == pytest.approx(stats.hmean([0.3, 0.7]))
    assert math.isnan(harmonic_mean([0.5, float("nan")]))
    with pytest.raises(ValueError):
        harmonic_mean([-0.1, 1.0])
    nine = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1]
    assert model_utility(nine) == pytest.approx(stats.hmean(nine))
    flat = {f"{s}_{m}": v for (s, m), v in zip(
        [(s, m) for s in ("retain", "real_authors", "world_facts")
         for m in ("prob", "rouge", "truth_ratio")], nine)}
    flat["forget_rouge"] = 0.0  # forget metrics do not enter model utility
    assert model_utility(flat) == pytest.approx(stats.hmean(nine))
    nested = {"retain": {"prob": 0.9, "rouge": 0.8, "truth_ratio": 0.0},
              "real_authors": {"prob": 0.6, "rouge": 0.5, "truth_ratio": 0.4},
              "world_facts": {"prob": 0.3, "rouge": 0.2, "truth_ratio": 0.1}}
    assert model_utility(nested) == 0.0
    with pytest.raises(KeyError):
        model_utility({"retain_prob": 0.5})


# ----------------------------------------------------------------------------------- MIA

def test_auc_counts_ties_half_and_matches_pairwise():
    assert auc_score([1, 2], [1, 0]) == pytest.approx(3.5 / 4)
    assert auc_score([1, 1], [1, 1]) == 0.5
    rng = np.random.default_rng(1)
    pos, neg = rng.integers(0, 5, 40), rng.integers(0, 5, 30)
    pair = np.mean([(p > q) + 0.5 * (p == q) for p in pos for q in neg])
    assert auc_score(pos, neg) == pytest.approx(pair)


def test_fit_threshold_separable_and_degenerate():
    t, bal = fit_threshold([0.7, 0.9, 0.8], [0.1, 0.3])
    assert bal == 1.0 and t == pytest.approx(0.5)  # midway between 0.3 and 0.7
    t, bal = fit_threshold([0.2], [0.9])  # members below non-members: no useful threshold
    assert bal == 0.5


def test_mia_separable_case():
    rng = np.random.default_rng(2)
    retain = rng.uniform(0.6, 1.0, 300)
    test = rng.uniform(0.0, 0.4, 200)
    forget = np.concatenate([rng.uniform(0.6, 1.0, 30), rng.uniform(0.0, 0.4, 70)])
    res = mia(retain, test, forget)
    assert res.auc == 1.0 and res.balanced_accuracy == 1.0
    assert res.forget_member_rate == pytest.approx(0.3)
    assert res.forget_auc == pytest.approx(0.3 + 0.7 * 0.5, abs=0.08)
    # invariant to a monotone transform of the confidence (probability vs log-probability)
    res_log = mia(np.log(retain), np.log(test), np.log(forget))
    assert res_log.forget_member_rate == res.forget_member_rate and res_log.auc == res.auc
    d = res.as_dict()
    assert d["mia"] == pytest.approx(0.3) and d["mia_auc"] == 1.0 and "mia_forget_auc" in d
    assert d["mia_n_forget"] == 100.0


def test_mia_random_case_is_chance():
    rng = np.random.default_rng(3)
    res = mia(rng.uniform(size=5000), rng.uniform(size=2000), torch.rand(3000))
    assert abs(res.auc - 0.5) < 0.03
    assert abs(res.forget_auc - 0.5) < 0.03
    assert res.balanced_accuracy < 0.56


def test_mia_class_balanced():
    # 20x more members than non-members. Plain accuracy would put the threshold near
    # 0.5 - ln 20 = -2.5 (call almost everything a member); balanced accuracy puts it where
    # the two unit-variance normals cross, 0.5.
    rng = np.random.default_rng(4)
    res = mia(rng.normal(1.0, size=10000), rng.normal(0.0, size=500), rng.normal(size=2000))
    assert res.threshold == pytest.approx(0.5, abs=0.3)
    assert res.forget_member_rate == pytest.approx(1 - stats.norm.cdf(0.5), abs=0.1)
    with pytest.raises(ValueError):
        mia([], [0.1], [0.2])
