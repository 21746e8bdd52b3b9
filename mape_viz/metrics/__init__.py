"""Metrics (docs/design.md §6): pure functions on plain arrays, and ``evaluate`` for tasks
and models.

Pure metric functions (tensors, numpy arrays or lists in; floats / arrays out):

- classification: :func:`accuracy`, :func:`multiple_choice_accuracy`
- extractive QA: :func:`normalize_answer`, :func:`squad_f1`, :func:`squad_exact_match`,
  :func:`squad_scores`
- TOFU: :func:`rouge_l_recall`, :func:`rouge_l_recall_batch`, :func:`normalised_probability`,
  :func:`option_probability`, :func:`truth_ratio`, :func:`truth_ratio_from_logprobs`,
  :func:`truth_ratio_score`, :func:`forget_quality`, :func:`harmonic_mean`,
  :func:`model_utility`
- MIA: :func:`mia` (-> :class:`MIAResult`), :func:`auc_score`, :func:`fit_threshold`

Model-facing: :func:`evaluate` (-> :class:`EvalResult`), :func:`predict_proba`,
:func:`answer_logprob`, :func:`generate_answers`, :func:`choice_logprobs`, :func:`records`.

No plotting or UI imports here. Formulas and conventions: docs/metrics.md.
"""

from .classification import accuracy, multiple_choice_accuracy
from .evaluate import (EvalResult, answer_logprob, choice_logprobs, classify, evaluate,
                       generate_answers, predict_proba, qa_predictions, records,
                       tofu_truth_ratios)
from .mia import MIAResult, auc_score, fit_threshold, mia
from .qa import normalize_answer, squad_exact_match, squad_f1, squad_scores
from .tofu import (UTILITY_METRICS, UTILITY_SPLITS, forget_quality, harmonic_mean, lcs_length,
                   model_utility, normalised_logprob, normalised_probability,
                   option_probability, rouge_l_recall, rouge_l_recall_batch, rouge_tokens,
                   truth_ratio, truth_ratio_from_logprobs, truth_ratio_score,
                   truth_ratio_symmetric)

__all__ = [
    "accuracy", "multiple_choice_accuracy",
    "normalize_answer", "squad_exact_match", "squad_f1", "squad_scores",
    "UTILITY_METRICS", "UTILITY_SPLITS", "forget_quality", "harmonic_mean", "lcs_length",
    "model_utility", "normalised_logprob", "normalised_probability", "option_probability",
    "rouge_l_recall", "rouge_l_recall_batch", "rouge_tokens", "truth_ratio",
    "truth_ratio_from_logprobs", "truth_ratio_score", "truth_ratio_symmetric",
    "MIAResult", "auc_score", "fit_threshold", "mia",
    "EvalResult", "answer_logprob", "choice_logprobs", "classify", "evaluate",
    "generate_answers", "predict_proba", "qa_predictions", "records", "tofu_truth_ratios",
]
