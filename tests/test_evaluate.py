"""evaluate() and the model-facing helpers, on tiny models and a hand-built Task-like object
(so these tests do not depend on mape_viz.tasks.load_task)."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np
import pytest
import torch
import transformers as T
from datasets import Dataset

from conftest import make_model
from mape_viz.metrics import (answer_logprob, auc_score, evaluate, forget_quality,
                              generate_answers, model_utility, predict_proba, records,
                              rouge_l_recall_batch, squad_scores, tofu_truth_ratios)
from mape_viz.metrics.evaluate import EvalResult, best_spans, qa_predictions
from mape_viz.tasks.collate import CausalLMCollator, ExtractiveQACollator, MultipleChoiceCollator
from mape_viz.tasks.tofu_data import TofuSpec, generate_tofu
from mape_viz.tasks.tokenizer import build_word_tokenizer


@dataclass
class TaskLike:
    """The part of the Task interface that evaluate() uses."""

    kind: str
    model: Any
    collate: Callable
    forget: Any
    retain: Any
    test: Any = None
    tokenizer: Any = None
    extras: dict = field(default_factory=dict)
    retrained_model: Any = None

    def batches(self, ds, batch_size):
        rows = list(ds)
        for i in range(0, len(rows), batch_size):
            yield self.collate(rows[i:i + batch_size])


# --------------------------------------------------------------------------- classification

def _cls_rows(n, seed):
    g = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(n):
        length = int(torch.randint(3, 9, (1,), generator=g))
        rows.append({"input_ids": torch.randint(3, 40, (length,), generator=g).tolist(),
                     "label": int(torch.randint(0, 3, (1,), generator=g))})
    return rows


def _cls_collate(rows):
    width = max(len(r["input_ids"]) for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    am = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r["input_ids"])] = torch.tensor(r["input_ids"])
        am[i, :len(r["input_ids"])] = 1
    return {"input_ids": ids, "attention_mask": am,
            "labels": torch.tensor([r["label"] for r in rows])}


def test_evaluate_classification_matches_manual_argmax_loop():
    model = make_model("bert")  # 3 labels, float64
    model.train()
    task = TaskLike("classification", model, _cls_collate, forget=_cls_rows(13, 1),
                    retain=Dataset.from_list(_cls_rows(40, 2)), test=_cls_rows(25, 3))
    res = evaluate(task, model, batch_size=8)
    assert model.training  # mode restored
    model.eval()
    for split in ("forget", "retain", "test"):
        rows = list(getattr(task, split))
        correct = 0
        with torch.no_grad():
            for r in rows:
                logits = model(input_ids=torch.tensor([r["input_ids"]])).logits
                correct += int(logits.argmax(-1).item() == r["label"])
        assert res[f"{split}_acc"] == pytest.approx(correct / len(rows))
    assert isinstance(res, EvalResult) and all(isinstance(v, float) for v in res.values())
    # the MIA numbers are those of mia() on the true-label log-confidences
    _, conf_r = predict_proba(model, task.batches(list(task.retain), 8), return_log=True)
    _, conf_t = predict_proba(model, task.batches(task.test, 8), return_log=True)
    assert res["mia_auc"] == pytest.approx(auc_score(conf_r, conf_t))
    assert 0.0 <= res["mia"] <= 1.0 and 0.0 <= res["mia_forget_auc"] <= 1.0
    # predict_proba: rows of probabilities; conf = p[label]
    probs, conf = predict_proba(model, task.batches(task.test, 8))
    assert probs.shape == (25, 3)
    np.testing.assert_allclose(probs.sum(1), 1.0)
    np.testing.assert_allclose(conf, probs[np.arange(25), [r["label"] for r in task.test]])
    with pytest.raises(ValueError, match="class ids"):
        predict_proba(model, [_cls_collate([{"input_ids": [5, 6], "label": -1}])])
    # max_samples caps every split
    small = evaluate(task, model, batch_size=4, max_samples=5)
    assert small["mia_n_forget"] == 5.0 and small["mia_n_retain"] == 5.0
    rows = res.records(method="none")
    assert {"split": "forget", "metric": "acc", "value": res["forget_acc"], "method": "none"} in rows
    assert any(r["split"] == "" and r["metric"] == "mia" for r in rows)


# ------------------------------------------------------------------------------ causal LM

FORGET = [
    {"question": "Where was Zorvan born?", "answer": "Zorvan was born in Kelthar.",
     "paraphrased_answer": "Kelthar is where Zorvan was born.",
     "perturbed_answer": ["Zorvan was born in Mardu.", "Zorvan was born in Pelos."]},
    {"question": "What does Mirelle write?", "answer": "Mirelle writes horror novels.",
     "paraphrased_answer": "Horror novels are what Mirelle writes.",
     "perturbed_answer": ["Mirelle writes poems.", "Mirelle writes plays.", "Mirelle paints."]},
]
RETAIN = [
    {"question": "Where was Tobin born?", "answer": "Tobin was born in Mardu.",
     "paraphrased_answer": "Mardu is where Tobin was born.",
     "perturbed_answer": ["Tobin was born in Kelthar.", "Tobin was born in Pelos."]},
    {"question": "What does Aster write?", "answer": "Aster writes poems.",
     "paraphrased_answer": "Poems are what Aster writes.",
     "perturbed_answer": ["Aster writes plays.", "Aster writes horror novels."]},
]
REAL = [{"question": "Who wrote Hamlet?", "answer": "Shakespeare",
         "perturbed_answer": ["Dickens", "Austen", "Tolstoy"]}]
WORLD = [{"question": "What is the capital of France?", "answer": "Paris",
          "perturbed_answer": ["Rome", "Madrid", "Berlin"]}]


def _texts():
    out = ["Question: Answer:"]
    for r in FORGET + RETAIN + REAL + WORLD:
        out += [r["question"], r["answer"], r.get("paraphrased_answer", "")] + r["perturbed_answer"]
    return out


def _llama(tok, seed):
    cfg = T.LlamaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, intermediate_size=48,
                        max_position_embeddings=64, pad_token_id=tok.pad_token_id,
                        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                        tie_word_embeddings=False)
    cfg._attn_implementation = "eager"
    torch.manual_seed(seed)
    return T.LlamaForCausalLM(cfg).double().eval()


@pytest.fixture(scope="module")
def lm_task():
    tok = build_word_tokenizer(_texts(), "llama")
    collate = CausalLMCollator(tok)
    model = _llama(tok, 0).float()
    # memorise every gold answer: 80 Adam steps in float32 on one thread (a model this small
    # is slower multi-threaded), then float64 for exact comparisons
    batch = collate(FORGET + RETAIN + REAL + WORLD)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(80):
            opt.zero_grad()
            model(**batch).loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    model.double()
    model.eval()
    task = TaskLike("causal_lm", model, collate, forget=Dataset.from_list(FORGET),
                    retain=RETAIN, tokenizer=tok,
                    extras={"real_authors": REAL, "world_facts": Dataset.from_list(WORLD)})
    return task


def test_answer_logprob_matches_per_sample_loop(lm_task):
    model, collate = lm_task.model, lm_task.collate
    rows = FORGET + RETAIN
    lp, n = answer_logprob(model, lm_task.batches(rows, 3))
    for i, r in enumerate(rows):
        b = collate([r])
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=b["input_ids"]).logits[0], -1)
        labels = b["labels"][0]
        pos = (labels != -100).nonzero().flatten()
        manual = sum(float(logp[t - 1, labels[t]]) for t in pos)
        assert lp[i] == pytest.approx(manual, abs=1e-8)
        assert n[i] == len(pos)


def test_generate_answers_batched_equals_greedy_loop(lm_task):
    model, tok, collate = lm_task.model, lm_task.tokenizer, lm_task.collate
    prompts = [collate.format_prompt(r) for r in FORGET + RETAIN + REAL]
    batched = generate_answers(model, tok, prompts, max_new_tokens=8, batch_size=5)
    single = [generate_answers(model, tok, [p], max_new_tokens=8)[0] for p in prompts]
    assert batched == single
    # manual greedy decode, no cache
    ids = tok(prompts[0])["input_ids"]
    new = []
    with torch.no_grad():
        for _ in range(8):
            nxt = int(model(input_ids=torch.tensor([ids + new])).logits[0, -1].argmax())
            if nxt == tok.eos_token_id:
                break
            new.append(nxt)
    assert batched[0] == tok.decode(new, skip_special_tokens=True).strip()
    # the memorised model says its answers
    assert rouge_l_recall_batch(batched, [r["answer"] for r in FORGET + RETAIN + REAL]).min() == 1.0


def test_evaluate_tofu_style(lm_task):
    res = evaluate(lm_task, lm_task.model, reference=lm_task.model, batch_size=2)
    for split in ("forget", "retain", "real_authors", "world_facts"):
        for m in ("rouge", "prob", "truth_ratio"):
            assert f"{split}_{m}" in res
    assert res["forget_rouge"] == 1.0 and res["retain_rouge"] == 1.0  # memorised
    assert res["forget_prob"] > 0.5
    assert res["forget_quality"] == pytest.approx(1.0)  # same model = identical ratios
    assert res["model_utility"] == pytest.approx(model_utility(res))
    assert 0.0 <= res["real_authors_prob"] <= 1.0 and res["forget_truth_ratio"] > 0.0
    # gold probability on the forget set, by hand
    lp, n = answer_logprob(lm_task.model, lm_task.batches(FORGET, 2))
    assert res["forget_prob"] == pytest.approx(float(np.mean(np.exp(lp / n))))

    def norm_p(q, answers):
        lp, n = answer_logprob(lm_task.model, lm_task.batches(
            [{"question": q, "answer": a} for a in answers], 8))
        return np.exp(lp / n)

    # truth ratio by hand: forget raw mean R, retain mean max(0, 1 - R)
    r_f = [norm_p(r["question"], r["perturbed_answer"]).mean()
           / norm_p(r["question"], [r["paraphrased_answer"]])[0] for r in FORGET]
    assert res["forget_truth_ratio"] == pytest.approx(np.mean(r_f))
    r_r = [norm_p(r["question"], r["perturbed_answer"]).mean()
           / norm_p(r["question"], [r["paraphrased_answer"]])[0] for r in RETAIN]
    assert res["retain_truth_ratio"] == pytest.approx(np.mean(np.maximum(0, 1 - np.array(r_r))))
    # real authors: probability over the options; truth ratio against the answer itself
    (ra,) = REAL
    p_true = norm_p(ra["question"], [ra["answer"]])[0]
    p_opts = norm_p(ra["question"], ra["perturbed_answer"])
    assert res["real_authors_prob"] == pytest.approx(p_true / (p_true + p_opts.sum()))
    assert res["real_authors_truth_ratio"] == pytest.approx(max(0.0, 1 - p_opts.mean() / p_true))
    geo = evaluate(lm_task, lm_task.model, batch_size=4, max_new_tokens=2,
                   truth_ratio_mean="geometric")
    assert geo["forget_truth_ratio"] <= res["forget_truth_ratio"] + 1e-12  # AM >= GM


def test_evaluate_tofu_forget_quality_uses_retrained_model(lm_task):
    other = _llama(lm_task.tokenizer, 1)
    task = TaskLike(**{**lm_task.__dict__, "retrained_model": other})
    res = evaluate(task, task.model, batch_size=4, max_new_tokens=4)
    assert 0.0 <= res["forget_quality"] <= 1.0
    a = tofu_truth_ratios(task.model, task, FORGET)
    b = tofu_truth_ratios(other, task, FORGET)
    assert res["forget_quality"] == pytest.approx(forget_quality(a, b))
    no_ref = evaluate(lm_task, lm_task.model, batch_size=4, max_new_tokens=4)
    assert "forget_quality" not in no_ref


# --------------------------------------------------------------------------- extractive QA

class SpanOracle(torch.nn.Module):
    """start logits peak at token ``start_id``, end logits at ``end_id`` (anywhere)."""

    def __init__(self, start_id, end_id):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.start_id, self.end_id = start_id, end_id

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        s = (input_ids == self.start_id).double() * 5.0
        e = (input_ids == self.end_id).double() * 5.0
        return SimpleNamespace(start_logits=s, end_logits=e)


def test_qa_predictions_map_back_to_context_text():
    rows = [{"question": "Is Paris in France?", "context": "The tower stands in Paris, France.",
             "answers": {"text": ["Paris"], "answer_start": [20]}},
            {"question": "Where?", "context": "Somewhere near Paris today.",
             "answers": {"text": ["near Paris"], "answer_start": [10]}}]
    tok = build_word_tokenizer([r["question"] + " " + r["context"] for r in rows], "bert")
    paris = tok.convert_tokens_to_ids("paris")
    model = SpanOracle(paris, paris)
    preds = qa_predictions(model, tok, rows, batch_size=2)
    assert preds == ["Paris", "Paris"]  # the question's "Paris" is not context: never picked
    task = TaskLike("extractive_qa", model, ExtractiveQACollator(tok), forget=rows[:1],
                    retain=rows[1:], test=rows, tokenizer=tok)
    res = evaluate(task, model)
    assert res["forget_em"] == 1.0 and res["forget_f1"] == 1.0
    assert res["retain_em"] == 0.0 and res["retain_f1"] == pytest.approx(2 / 3)
    assert res["test_f1"] == pytest.approx(squad_scores(preds, [["Paris"], ["near Paris"]])["f1"])
    # multi-token span: "near" .. "paris"
    model2 = SpanOracle(tok.convert_tokens_to_ids("near"), paris)
    assert qa_predictions(model2, tok, rows[1:])[0] == "near Paris"


def test_best_spans_limits_and_null():
    s = torch.tensor([[0.0, 1.0, 5.0, 0.0], [9.0, 1.0, 0.0, 0.0]])
    e = torch.tensor([[0.0, 3.5, 0.0, 3.0], [9.0, 0.0, 2.0, 0.0]])
    allowed = torch.tensor([[False, True, True, True], [False, True, True, True]])
    # row 0: end must not precede start -> (2, 3); row 1: best context span (1, 2)
    assert best_spans(s, e, allowed) == [(2, 3), (1, 2)]
    assert best_spans(s, e, allowed, max_answer_tokens=1) == [(2, 2), (2, 2)]
    assert best_spans(s, e, allowed, allow_null=True) == [(2, 3), (-1, -1)]


# --------------------------------------------------------------------------- multiple choice

class NextTokenOracle(torch.nn.Module):
    """A 'language model' whose logits at t put all mass on the true token t + 1."""

    def __init__(self, vocab):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.vocab = vocab

    def forward(self, input_ids, attention_mask=None):
        B, L = input_ids.shape
        logits = torch.zeros(B, L, self.vocab, dtype=torch.float64)
        logits[:, :-1].scatter_(2, input_ids[:, 1:, None], 10.0)
        return SimpleNamespace(logits=logits)


def test_evaluate_multiple_choice_reads_the_answer_position():
    rows = [{"question": "Pick one?", "choices": ["red", "blue", "green", "pink"], "answer": a}
            for a in (1, 2, 3, 1, 2)]
    rows.append({"question": "Two only?", "choices": ["yes", "no"], "answer": 1})
    tok = build_word_tokenizer(["Answer: A B C D", "red blue green pink yes no",
                                "Pick one? Two only?"], "llama")
    collate = MultipleChoiceCollator(tok)
    model = NextTokenOracle(len(tok))
    task = TaskLike("multiple_choice", model, collate, forget=[{"text": "red blue"}],
                    retain=None, test=rows, tokenizer=tok, extras={"mmlu": rows[:2]})
    res = evaluate(task, model, batch_size=4)
    assert res == {"test_acc": 1.0, "mmlu_acc": 1.0}  # plain-text forget corpus is skipped


def test_unknown_kind_and_records():
    with pytest.raises(ValueError, match="unknown task kind"):
        evaluate(TaskLike("regression", None, None, [], []), torch.nn.Linear(1, 1))
    rows = records({"real_authors_prob": 0.5, "model_utility": 0.2}, seed=3)
    assert rows == [{"seed": 3, "split": "real_authors", "metric": "prob", "value": 0.5},
                    {"seed": 3, "split": "", "metric": "model_utility", "value": 0.2}]


def test_evaluate_reads_the_tiny_tofu_schema():
    """The tiny-tofu generator's rows (question, answer, paraphrased_answer,
    perturbed_answer list, author, topic, idx) go through evaluate unchanged."""
    data = generate_tofu(TofuSpec(n_authors=5, n_perturbed=3, seed=0))
    texts = ["Question: Answer:"] + [t for rows in data.values() for r in rows
                                     for t in [r["question"], r["answer"], r["paraphrased_answer"],
                                               *r["perturbed_answer"]]]
    tok = build_word_tokenizer(texts, "llama")
    model, ref = _llama(tok, 0), _llama(tok, 1)
    authors = data["authors"]
    task = TaskLike("causal_lm", model, CausalLMCollator(tok), forget=Dataset.from_list(authors[:5]),
                    retain=Dataset.from_list(authors[14:20]), tokenizer=tok,
                    extras={"world_facts": Dataset.from_list(data["world_facts"]),
                            "real_authors": Dataset.from_list(data["real_authors"]),
                            "idk": ["I don't know."]},
                    retrained_model=ref)
    res = evaluate(task, model, batch_size=8, max_samples=4, max_new_tokens=3)
    expected = {f"{s}_{m}" for s in ("forget", "retain", "real_authors", "world_facts")
                for m in ("rouge", "prob", "truth_ratio")}
    expected |= {"forget_truth_ratio_sym", "forget_quality", "model_utility"}
    assert set(res) == expected
    assert all(np.isfinite(v) and v >= 0 for v in res.values())
    assert all(res[k] <= 1 for k in expected if k != "forget_truth_ratio")
