"""Evaluate a (possibly unlearned) model on a task: the numbers of the paper's tables.

``evaluate(task, model)`` returns an :class:`EvalResult`, a flat ``dict`` of metric name ->
float (``"forget_acc"``, ``"mia"``, ``"retain_f1"``, ``"forget_quality"``, ...), with
``.records()`` for long-format tables. What is computed depends on ``task.kind``:

- ``classification``: ``{split}_acc`` for forget / retain / test, and the confidence MIA
  (:func:`mape_viz.metrics.mia.mia`: ``mia``, ``mia_auc``, ``mia_forget_auc``, ...).
- ``extractive_qa``: ``{split}_f1`` and ``{split}_em`` (SQuAD, best span of
  start + end logits, at most ``max_answer_tokens`` long, inside the context).
- ``causal_lm`` (TOFU-style): for forget, retain, real authors and world facts:
  ``{split}_rouge`` (ROUGE-L recall of the greedy answer), ``{split}_prob`` (normalised
  answer probability; divided by the sum over the options on real authors / world facts),
  ``{split}_truth_ratio`` (raw mean R on forget, mean max(0, 1 - R) elsewhere); then
  ``forget_truth_ratio_sym`` (TOFU code's mean min(R, 1/R)), ``forget_quality`` (KS
  p-value against ``reference``, the retrained model) and ``model_utility``.
- ``multiple_choice``: ``{split}_acc`` for every split / extra dataset whose rows have
  choices (a plain-text forget corpus has none and is skipped).

The task (a :class:`mape_viz.tasks.Task`) provides ``.kind``, ``.forget``, ``.retain``,
``.test`` (``datasets.Dataset`` or lists of row dicts; a split that is ``None``, e.g. after
``task.replace(test=None)``, is skipped), ``.collate`` (rows -> batch), ``.tokenizer``,
``.extras`` and ``.retrained_model``. Only these attributes are read, so any object with
them (e.g. a dataclass in a test) can be evaluated; this package imports no task code.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..losses import model_inputs, token_logprobs
from .classification import accuracy, multiple_choice_accuracy
from .mia import mia
from .qa import squad_scores
from .tofu import (forget_quality, model_utility, normalised_logprob, option_probability,
                   rouge_l_recall_batch, truth_ratio_from_logprobs, truth_ratio_score,
                   truth_ratio_symmetric)

Batch = Mapping[str, torch.Tensor]
Rows = Sequence[Mapping[str, Any]]

SPLITS = ("forget", "retain", "test")
TOFU_SPLITS = ("forget", "retain", "real_authors", "world_facts")
KIND_ALIASES = {
    "classification": "classification", "cls": "classification",
    "extractive_qa": "extractive_qa", "qa": "extractive_qa", "squad": "extractive_qa",
    "causal_lm": "causal_lm", "generative": "causal_lm", "tofu": "causal_lm", "lm": "causal_lm",
    "multiple_choice": "multiple_choice", "mc": "multiple_choice", "mcq": "multiple_choice",
}
#: Column names looked up, in order, for the TOFU answer variants.
PARAPHRASED_KEYS = ("paraphrased_answer", "paraphrased")
PERTURBED_KEYS = ("perturbed_answer", "perturbed_answers", "perturbed")


class EvalResult(dict):
    """A flat ``{metric name: float}`` dict, with a long-format view for tables."""

    def records(self, **tags: Any) -> list[dict[str, Any]]:
        """One row per number: ``{"split", "metric", "value", **tags}``.

        The split is the key's prefix when it names a split (``"forget_acc"`` -> forget /
        acc); other keys (``"mia"``, ``"model_utility"``) get ``split=""``.
        """
        return records(self, **tags)


def records(result: Mapping[str, float], **tags: Any) -> list[dict[str, Any]]:
    """Long-format rows ``{"split", "metric", "value", **tags}`` of a flat result dict.

    ``tags`` (e.g. ``method="ga", sparsity=0.9``) are copied into every row, so the rows of
    several runs concatenate into one table.
    """
    known = sorted(set(SPLITS) | set(TOFU_SPLITS), key=len, reverse=True)
    rows = []
    for key, value in result.items():
        split, metric = "", key
        for s in known:
            if key.startswith(s + "_"):
                split, metric = s, key[len(s) + 1:]
                break
        rows.append({**tags, "split": split, "metric": metric, "value": float(value)})
    return rows


# --------------------------------------------------------------------------------- helpers

def _device(model: nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode under ``torch.no_grad`` and restore its mode after."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)


def _progress(it: Iterable, progress: bool, desc: str) -> Iterable:
    return tqdm(it, desc=desc, leave=False) if progress else it


def _rows(ds: Any, max_samples: int | None = None) -> list[dict[str, Any]]:
    """A dataset (``datasets.Dataset`` or a sequence of dicts) as a list of row dicts."""
    if ds is None:
        return []
    if max_samples is not None and hasattr(ds, "select"):
        ds = ds.select(range(min(len(ds), max_samples)))
    rows = ds.to_list() if hasattr(ds, "to_list") else [dict(r) for r in ds]
    return rows[:max_samples] if max_samples is not None else rows


def _chunks(rows: Sequence[Any], size: int) -> Iterator[list[Any]]:
    if size < 1:
        raise ValueError(f"batch_size must be >= 1, got {size}")
    for i in range(0, len(rows), size):
        yield list(rows[i:i + size])


def _collated(collate: Callable[[list[dict]], Batch], rows: Rows, batch_size: int,
              progress: bool = False, desc: str = "") -> Iterator[Batch]:
    return (collate(chunk) for chunk in _progress(list(_chunks(rows, batch_size)), progress, desc))


# ---------------------------------------------------------------- model-facing primitives

def classify(model: nn.Module, batches: Iterable[Batch]) -> tuple[np.ndarray, np.ndarray]:
    """(N, C) float64 log-probabilities (log-softmax in float64) and (N,) labels of a
    classifier over ``batches`` (model inputs + ``labels`` (B,))."""
    device = _device(model)
    all_lp, all_y = [], []
    with eval_mode(model):
        for batch in batches:
            logits = model(**model_inputs(batch, device)).logits
            all_lp.append(torch.log_softmax(logits.double(), -1).cpu())
            all_y.append(torch.as_tensor(batch["labels"]).reshape(-1).long().cpu())
    if not all_lp:
        return np.zeros((0, 0)), np.zeros(0, dtype=np.int64)
    lp, y = torch.cat(all_lp).numpy(), torch.cat(all_y).numpy()
    if y.size and (y.min() < 0 or y.max() >= lp.shape[1]):
        raise ValueError(f"labels must be class ids in 0..{lp.shape[1] - 1}, got "
                         f"{int(y.min())}..{int(y.max())} (unlabelled rows, e.g. a GLUE test "
                         "split with label -1, cannot be scored)")
    return lp, y


def predict_proba(model: nn.Module, batches: Iterable[Batch], return_log: bool = False
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities and true-label confidences of a classifier.

    Args:
        model: a sequence classifier (``out.logits`` (B, C)).
        batches: collated batches with the model inputs and ``labels`` (B,).
        return_log: return log-probabilities instead (full float64 resolution near 1; use
            these for the MIA).

    Returns:
        ``(probs, conf)``: (N, C) float64 class probabilities (softmax computed in float64)
        and (N,) the probability of each sample's label ``p_y`` (or their logs).
    """
    lp, y = classify(model, batches)
    if lp.size == 0:
        return lp, np.zeros(0)
    conf = np.take_along_axis(lp, y[:, None], 1)[:, 0]
    return (lp, conf) if return_log else (np.exp(lp), np.exp(conf))


def answer_logprob(model: nn.Module, batches: Iterable[Batch]) -> tuple[np.ndarray, np.ndarray]:
    """Summed log-probability of each sample's answer tokens, and their count.

    Args:
        model: a causal LM.
        batches: causal-LM batches (``labels`` (B, T), -100 on prompt and padding).

    Returns:
        ``(sum_logprob, n_tokens)``, both (N,) float64: ``Σ_t log P(a_t | q, a_<t)`` over the
        scored tokens (:func:`mape_viz.losses.token_logprobs`) and the number of them.
    """
    device = _device(model)
    lps, ns = [], []
    with eval_mode(model):
        for batch in batches:
            labels = torch.as_tensor(batch["labels"]).to(device)
            logits = model(**model_inputs(batch, device)).logits
            lps.append(token_logprobs(logits, labels).double().cpu())
            ns.append((labels[:, 1:] != -100).sum(1).double().cpu())
    if not lps:
        return np.zeros(0), np.zeros(0)
    return torch.cat(lps).numpy(), torch.cat(ns).numpy()


def generate_answers(model: nn.Module, tokenizer: Any, prompts: Sequence[str],
                     max_new_tokens: int, batch_size: int = 32, progress: bool = False
                     ) -> list[str]:
    """Greedy continuations of ``prompts`` (the prompt itself is not returned).

    Prompts are tokenised one by one (special tokens as the tokenizer adds them, e.g. bos)
    and batched *by token length*, so no prompt is ever padded: the result of a prompt does
    not depend on its batch. (Left padding is not safe: transformers' eager attention in
    float64 turns the fully masked rows of left pads into NaN, which then leaks through
    ``0 * NaN``; and even in float32 padding moves logits by ~1e-8, enough to flip a greedy
    tie.) ``model.generate`` with ``do_sample=False`` stops each row at eos; the decoded
    text skips special tokens and is stripped.

    Args:
        model: a causal LM with ``generate``.
        tokenizer: its tokenizer (needs a pad or eos token).
        prompts: N prompt strings.
        max_new_tokens: at most this many generated tokens per prompt.
        batch_size: prompts per ``generate`` call.

    Returns:
        N generated answer strings, in the order of ``prompts``.
    """
    device = _device(model)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is None:
        raise ValueError("the tokenizer has neither a pad nor an eos token")
    eos = tokenizer.eos_token_id
    encoded = [list(tokenizer(p)["input_ids"]) for p in prompts]
    by_len: dict[int, list[int]] = {}
    for i, e in enumerate(encoded):
        by_len.setdefault(len(e), []).append(i)
    jobs = [idx for _, group in sorted(by_len.items()) for idx in _chunks(group, batch_size)]
    out: list[str] = [""] * len(encoded)
    with eval_mode(model):
        for idx in _progress(jobs, progress, "generate"):
            ids = torch.tensor([encoded[i] for i in idx], dtype=torch.long, device=device)
            gen = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                 max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                                 pad_token_id=pad, eos_token_id=eos)
            for i, row in zip(idx, gen[:, ids.shape[1]:].cpu().tolist()):
                if eos is not None and eos in row:
                    row = row[:row.index(eos)]
                out[i] = tokenizer.decode(row, skip_special_tokens=True).strip()
    return out


def choice_logprobs(model: nn.Module, batches: Iterable[Batch], choice_ids: Sequence[int],
                    n_choices: Sequence[int] | None = None) -> np.ndarray:
    """Log-probability of each choice letter at the answer position (zero-shot MC).

    The answer position is the one that predicts the first labelled token of each row
    (``labels != -100``); the model's logits there are restricted to ``choice_ids`` and
    log-softmaxed over them.

    Args:
        model: a causal LM.
        batches: multiple-choice batches (``labels`` label only the answer letter and eos).
        choice_ids: C token ids of the letters ``A``, ``B``, ...
        n_choices: (N,) number of choices of each row; later letters get ``-inf``.

    Returns:
        (N, C) float64 log-probabilities over the choices.
    """
    device = _device(model)
    ids = torch.as_tensor(list(choice_ids), dtype=torch.long, device=device)
    out = []
    with eval_mode(model):
        for batch in batches:
            labels = torch.as_tensor(batch["labels"]).to(device)
            logits = model(**model_inputs(batch, device)).logits
            scored = labels != -100
            if not bool(scored.any(1).all()):
                raise ValueError("a multiple-choice row has no labelled answer token")
            first = scored.float().argmax(1)  # first labelled position
            pos = (first - 1).clamp(min=0)
            picked = logits[torch.arange(len(pos), device=device), pos][:, ids].double()
            out.append(picked.cpu())
    if not out:
        return np.zeros((0, len(ids)))
    lp = torch.cat(out)
    if n_choices is not None:
        n = torch.as_tensor(list(n_choices))[:, None]
        lp = lp.masked_fill(torch.arange(lp.shape[1])[None] >= n, -math.inf)
    return torch.log_softmax(lp, -1).numpy()


# ----------------------------------------------------------------------- extractive QA

def best_spans(start_logits: torch.Tensor, end_logits: torch.Tensor, allowed: torch.Tensor,
               max_answer_tokens: int = 30, allow_null: bool = False) -> list[tuple[int, int]]:
    """The best answer span of each row: ``argmax_{i <= j < i + max} start[i] + end[j]``
    over allowed (context) tokens.

    Args:
        start_logits, end_logits: (B, T).
        allowed: (B, T) bool, True on tokens an answer may start/end at.
        max_answer_tokens: longest span.
        allow_null: SQuAD v2: predict no answer, ``(-1, -1)``, when ``start[0] + end[0]``
            beats the best span.

    Returns:
        B pairs ``(i, j)`` of token indices, ``(-1, -1)`` for no answer.
    """
    s, e = start_logits.double().cpu(), end_logits.double().cpu()
    T = s.shape[1]
    idx = torch.arange(T)
    band = (idx[None, :] >= idx[:, None]) & (idx[None, :] < idx[:, None] + max_answer_tokens)
    out = []
    for b in range(s.shape[0]):
        ok = band & allowed[b][:, None].cpu() & allowed[b][None, :].cpu()
        if not bool(ok.any()):
            out.append((-1, -1))
            continue
        score = (s[b][:, None] + e[b][None, :]).masked_fill(~ok, -math.inf)
        flat = int(score.argmax())
        i, j = divmod(flat, T)
        if allow_null and float(s[b, 0] + e[b, 0]) > float(score[i, j]):
            out.append((-1, -1))
        else:
            out.append((i, j))
    return out


def qa_predictions(model: nn.Module, tokenizer: Any, rows: Rows, max_length: int = 384,
                   batch_size: int = 32, max_answer_tokens: int = 30, allow_null: bool = False,
                   progress: bool = False) -> list[str]:
    """Predicted answer text of each SQuAD row ``{question, context, ...}``.

    Rows are tokenised as the extractive-QA collator does (question, context;
    ``truncation="only_second"``); the best span inside the context is mapped back to the
    context's characters through the offsets.
    """
    device = _device(model)
    preds: list[str] = []
    with eval_mode(model):
        for chunk in _progress(list(_chunks(list(rows), batch_size)), progress, "qa"):
            enc = tokenizer([r["question"].lstrip() for r in chunk], [r["context"] for r in chunk],
                            truncation="only_second", max_length=max_length, padding=True,
                            return_offsets_mapping=True, return_tensors="pt")
            allowed = torch.zeros(enc["input_ids"].shape, dtype=torch.bool)
            for i in range(len(chunk)):
                for k, sid in enumerate(enc.sequence_ids(i)):
                    allowed[i, k] = sid == 1
            out = model(**model_inputs(enc, device))
            spans = best_spans(out.start_logits, out.end_logits, allowed, max_answer_tokens,
                               allow_null)
            offsets = enc["offset_mapping"].tolist()
            for r, (i, j), off in zip(chunk, spans, offsets):
                preds.append("" if i < 0 else r["context"][off[i][0]:off[j][1]])
    return preds


# ------------------------------------------------------------------------------- tasks

def _kind(task: Any) -> str:
    kind = str(getattr(task, "kind", "")).lower()
    if kind not in KIND_ALIASES:
        raise ValueError(f"unknown task kind {kind!r}; accepted: "
                         f"{', '.join(sorted(set(KIND_ALIASES.values())))}")
    return KIND_ALIASES[kind]


def _splits(task: Any, max_samples: int | None) -> dict[str, list[dict[str, Any]]]:
    return {s: _rows(getattr(task, s, None), max_samples) for s in SPLITS}


def _eval_classification(task: Any, model: nn.Module, batch_size: int, max_samples: int | None,
                         progress: bool) -> dict[str, float]:
    res: dict[str, float] = {}
    log_conf: dict[str, np.ndarray] = {}
    for split, rows in _splits(task, max_samples).items():
        if not rows:
            continue
        lp, labels = classify(model, _collated(task.collate, rows, batch_size, progress, split))
        res[f"{split}_acc"] = accuracy(lp, labels)
        log_conf[split] = np.take_along_axis(lp, labels[:, None], 1)[:, 0]
    if all(s in log_conf for s in SPLITS):
        res.update(mia(log_conf["retain"], log_conf["test"], log_conf["forget"]).as_dict("mia"))
    return res


def _eval_qa(task: Any, model: nn.Module, batch_size: int, max_samples: int | None,
             progress: bool, max_answer_tokens: int) -> dict[str, float]:
    res: dict[str, float] = {}
    max_length = int(getattr(task.collate, "max_length", 384))
    extras = getattr(task, "extras", None) or {}
    splits = _splits(task, max_samples)
    allow_null = bool(extras.get("version_2_with_negative", False)) or any(
        not [t for t in r["answers"]["text"] if t] for rows in splits.values() for r in rows)
    for split, rows in splits.items():
        if not rows:
            continue
        preds = qa_predictions(model, task.tokenizer, rows, max_length, batch_size,
                               max_answer_tokens, allow_null, progress)
        scores = squad_scores(preds, [list(r["answers"]["text"]) for r in rows])
        res[f"{split}_f1"], res[f"{split}_em"] = scores["f1"], scores["em"]
    return res


def _first_key(row: Mapping[str, Any], keys: Sequence[str]) -> str | None:
    return next((k for k in keys if k in row and row[k] is not None), None)


def _qa_rows(ds: Any, max_samples: int | None, q_key: str, a_key: str
             ) -> list[dict[str, Any]]:
    """Rows of ``ds`` that have a question and an answer ([] if ``ds`` is not a row set)."""
    if ds is None or isinstance(ds, (str, bytes, int, float, Mapping)):
        return []
    try:
        rows = _rows(ds, max_samples)
    except (TypeError, ValueError, AttributeError):
        return []
    return [r for r in rows if isinstance(r, Mapping) and q_key in r and a_key in r]


def _tofu_sets(task: Any, max_samples: int | None, q_key: str = "question",
               a_key: str = "answer") -> dict[str, list[dict[str, Any]]]:
    """forget / retain / real_authors / world_facts question rows.

    ``extras`` may hold richer versions of forget / retain (with paraphrased and perturbed
    answers) under ``{split}_perturbed`` or ``{split}``; they win over ``task.forget`` /
    ``task.retain``.
    """
    extras = getattr(task, "extras", None) or {}
    out = {}
    for name in TOFU_SPLITS:
        rows: list[dict[str, Any]] = []
        for key in (f"{name}_perturbed", name):
            rows = _qa_rows(extras.get(key), max_samples, q_key, a_key)
            if rows:
                break
        if not rows and name in ("forget", "retain"):
            rows = _qa_rows(getattr(task, name, None), max_samples, q_key, a_key)
        if rows:
            out[name] = rows
    return out


def _answer_norm_logprob(model: nn.Module, collate: Any, qa_pairs: list[tuple[str, str]],
                         batch_size: int, q_key: str, a_key: str) -> np.ndarray:
    """(N,) normalised log-probability ``log P(a|q) / |a|`` of each (question, answer)."""
    if not qa_pairs:
        return np.zeros(0)
    rows = [{q_key: q, a_key: a} for q, a in qa_pairs]
    lp, n = answer_logprob(model, _collated(collate, rows, batch_size))
    return normalised_logprob(lp, n)


def _as_list(v: Any) -> list[str]:
    return [v] if isinstance(v, str) else [str(x) for x in v]


def _tofu_logprobs(model: nn.Module, collate: Any, rows: Rows, batch_size: int,
                   need_gold: bool = True) -> dict[str, np.ndarray | None]:
    """Normalised log-probabilities of the answer variants of ``rows``.

    Returns ``{"gold": (N,), "paraphrased": (N,) or None, "perturbed": (N, K) with NaN
    padding or None}``; "paraphrased" is None when the rows have no paraphrased answer
    (the truth ratio then uses the gold answer, as TOFU does on real authors / world
    facts), "perturbed" when they have no perturbed answers.
    """
    q_key = getattr(collate, "question_key", "question")
    a_key = getattr(collate, "answer_key", "answer")
    out: dict[str, np.ndarray | None] = {"gold": None, "paraphrased": None, "perturbed": None}
    if need_gold:
        pairs = [(r[q_key], str(r[a_key])) for r in rows]
        out["gold"] = _answer_norm_logprob(model, collate, pairs, batch_size, q_key, a_key)
    para_key = _first_key(rows[0], PARAPHRASED_KEYS) if rows else None
    if para_key is not None:
        out["paraphrased"] = _answer_norm_logprob(
            model, collate, [(r[q_key], str(r[para_key])) for r in rows], batch_size, q_key,
            a_key)
    pert_key = _first_key(rows[0], PERTURBED_KEYS) if rows else None
    if pert_key is not None:
        perts = [_as_list(r[pert_key]) for r in rows]
        flat = _answer_norm_logprob(model, collate,
                                    [(r[q_key], p) for r, ps in zip(rows, perts) for p in ps],
                                    batch_size, q_key, a_key)
        mat = np.full((len(rows), max(len(ps) for ps in perts)), np.nan)
        pos = 0
        for i, ps in enumerate(perts):
            mat[i, :len(ps)] = flat[pos:pos + len(ps)]
            pos += len(ps)
        out["perturbed"] = mat
    return out


def _ratios(lps: Mapping[str, np.ndarray | None], model: nn.Module, collate: Any, rows: Rows,
            batch_size: int, mean: str) -> np.ndarray | None:
    if lps["perturbed"] is None:
        return None
    para = lps["paraphrased"]
    if para is None:
        para = lps["gold"]
        if para is None:
            para = _tofu_logprobs(model, collate, rows, batch_size)["gold"]
    return truth_ratio_from_logprobs(para, lps["perturbed"], mean)  # type: ignore[arg-type]


def tofu_truth_ratios(model: nn.Module, task: Any, rows: Rows, batch_size: int = 32,
                      mean: str = "arithmetic") -> np.ndarray | None:
    """(N,) per-question truth ratios ``R_i`` of ``model`` on TOFU-style ``rows``
    (``{question, answer, [paraphrased_answer], perturbed_answer: [...]}``), or ``None``
    when the rows have no perturbed answers. Without a paraphrased answer the answer itself
    is used (as TOFU does on real authors / world facts)."""
    rows = list(rows)
    if not rows:
        return None
    lps = _tofu_logprobs(model, task.collate, rows, batch_size, need_gold=False)
    return _ratios(lps, model, task.collate, rows, batch_size, mean)


def _eval_tofu(task: Any, model: nn.Module, reference: nn.Module | None, batch_size: int,
               max_samples: int | None, progress: bool, max_new_tokens: int | None,
               truth_ratio_mean: str) -> dict[str, float]:
    res: dict[str, float] = {}
    collate = task.collate
    q_key = getattr(collate, "question_key", "question")
    a_key = getattr(collate, "answer_key", "answer")
    fmt = getattr(collate, "format_prompt", None) or (
        lambda r: "Question: {question}\nAnswer:".format(question=r[q_key]))
    sets = _tofu_sets(task, max_samples, q_key, a_key)
    forget_ratios = None
    for name, rows in sets.items():
        lps = _tofu_logprobs(model, collate, rows, batch_size)
        gold = np.exp(lps["gold"])
        # normalised probability (over all options on real authors / world facts)
        if name in ("real_authors", "world_facts") and lps["perturbed"] is not None:
            res[f"{name}_prob"] = float(option_probability(gold, np.exp(lps["perturbed"])).mean())
        else:
            res[f"{name}_prob"] = float(gold.mean())
        # ROUGE-L recall of the greedy answer
        if max_new_tokens is None:
            n_new = 16 + max(len(task.tokenizer(str(r[a_key]), add_special_tokens=False)
                                 ["input_ids"]) for r in rows)
        else:
            n_new = max_new_tokens
        gens = generate_answers(model, task.tokenizer, [fmt(r) for r in rows], n_new, batch_size,
                                progress)
        res[f"{name}_rouge"] = float(
            rouge_l_recall_batch(gens, [str(r[a_key]) for r in rows]).mean())
        # truth ratio
        ratios = _ratios(lps, model, collate, rows, batch_size, truth_ratio_mean)
        if ratios is not None:
            res[f"{name}_truth_ratio"] = truth_ratio_score(ratios, forget=name == "forget")
            if name == "forget":
                forget_ratios = ratios
                res["forget_truth_ratio_sym"] = truth_ratio_symmetric(ratios)
    if forget_ratios is not None:
        ref = reference if reference is not None else getattr(task, "retrained_model", None)
        if ref is not None:
            ref_ratios = tofu_truth_ratios(ref, task, sets["forget"], batch_size,
                                           truth_ratio_mean)
            res["forget_quality"] = forget_quality(forget_ratios, ref_ratios)
    try:
        res["model_utility"] = model_utility(res)
    except KeyError:
        pass  # some utility set is missing: no model utility
    return res


def _eval_mc(task: Any, model: nn.Module, batch_size: int, max_samples: int | None,
             progress: bool) -> dict[str, float]:
    collate = task.collate
    ch_key = getattr(collate, "choices_key", "choices")
    a_key = getattr(collate, "answer_key", "answer")
    named: dict[str, Any] = {s: getattr(task, s, None) for s in SPLITS}
    for k, v in (getattr(task, "extras", None) or {}).items():
        if k not in named and (hasattr(v, "select") or isinstance(v, (list, tuple))):
            named[k] = v
    res: dict[str, float] = {}
    for name, ds in named.items():
        try:
            rows = _rows(ds, max_samples)
        except (TypeError, ValueError, AttributeError):
            continue
        rows = [r for r in rows if isinstance(r, Mapping) and ch_key in r and a_key in r]
        if not rows:
            continue
        n = [len(r[ch_key]) for r in rows]
        ids = collate.choice_token_ids(max(n))
        lp = choice_logprobs(model, _collated(collate, rows, batch_size, progress, name), ids, n)
        res[f"{name}_acc"] = multiple_choice_accuracy(lp, [int(r[a_key]) for r in rows])
    return res


def evaluate(task: Any, model: nn.Module | None = None, reference: nn.Module | None = None, *,
             batch_size: int = 32, max_samples: int | None = None, progress: bool = False,
             max_new_tokens: int | None = None, max_answer_tokens: int = 30,
             truth_ratio_mean: str = "arithmetic") -> EvalResult:
    """All the metrics of ``task.kind`` for ``model`` (default ``task.model``).

    Args:
        task: a task object (see the module docstring).
        model: the model to evaluate; left in the train/eval mode it came in.
        reference: causal LM only: the retrained model for forget quality (default
            ``task.retrained_model``; without either, ``forget_quality`` is omitted).
        batch_size: rows per forward pass / generate call.
        max_samples: evaluate at most the first ``max_samples`` rows of each set.
        progress: show tqdm progress bars.
        max_new_tokens: causal LM: greedy decoding length (default: the longest gold
            answer of the set, in tokens, + 16; ROUGE-L recall does not penalise extra words).
        max_answer_tokens: extractive QA: longest predicted span.
        truth_ratio_mean: ``"arithmetic"`` (TOFU paper) or ``"geometric"`` (TOFU code) mean
            over the perturbed answers.

    Returns:
        :class:`EvalResult`, a flat dict metric -> float (see the module docstring).
    """
    model = model if model is not None else task.model
    kind = _kind(task)
    if kind == "classification":
        res = _eval_classification(task, model, batch_size, max_samples, progress)
    elif kind == "extractive_qa":
        res = _eval_qa(task, model, batch_size, max_samples, progress, max_answer_tokens)
    elif kind == "causal_lm":
        res = _eval_tofu(task, model, reference, batch_size, max_samples, progress,
                         max_new_tokens, truth_ratio_mean)
    else:
        res = _eval_mc(task, model, batch_size, max_samples, progress)
    return EvalResult({k: float(v) for k, v in res.items()})
