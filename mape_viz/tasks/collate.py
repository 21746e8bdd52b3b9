"""Collators: dataset rows (plain text columns) -> the HF batch the scoring engine takes.

Every collator is a small callable dataclass, ``collate(rows: list[dict]) -> dict[str,
Tensor]``, that tokenises on the fly and pads on the right. Shapes (B rows, T tokens):

- classification: ``input_ids`` (B, T) long, ``attention_mask`` (B, T), optional
  ``token_type_ids`` (B, T), ``labels`` (B,) long.
- causal LM (and multiple choice, which is causal LM with a one-letter answer):
  ``input_ids``, ``attention_mask``, ``labels`` (B, T) long: the token id on answer tokens
  (and the appended ``eos``), -100 on prompt and padding tokens. The model shifts:
  ``logits[:, :-1]`` predict ``labels[:, 1:]``.
- extractive QA: ``input_ids``, ``attention_mask``, optional ``token_type_ids``,
  ``start_positions`` / ``end_positions`` (B,) long (0 = the first token when the answer is
  empty or cut off by truncation, as HF's SQuAD v2 recipe does).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

IGNORE = -100
LETTERS = "ABCDEFGHIJ"


def pad_right(seqs: list[list[int]], value: int) -> torch.Tensor:
    """(B, T) long tensor of ``seqs`` padded on the right with ``value`` (T = longest)."""
    width = max((len(s) for s in seqs), default=0)
    out = torch.full((len(seqs), width), value, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    return out


def _check_tokenizer(tokenizer: PreTrainedTokenizerBase) -> None:
    if tokenizer.pad_token_id is None:
        raise ValueError("the tokenizer has no pad token; set tokenizer.pad_token first "
                         "(e.g. tokenizer.pad_token = tokenizer.eos_token)")
    if tokenizer.padding_side != "right":
        raise ValueError("batches are right-padded: set tokenizer.padding_side = 'right'")


@dataclass
class ClassificationCollator:
    """Rows ``{text_key: str, [pair_key: str], label_key: int}`` -> classification batch.

    Attributes:
        tokenizer: a fast tokenizer with a pad token.
        text_key: column of the (first) sentence.
        pair_key: column of the second sentence of a pair task (MNLI, QQP), or ``None``.
        label_key: column of the integer label.
        max_length: truncation length in tokens.
    """

    tokenizer: PreTrainedTokenizerBase
    text_key: str = "text"
    pair_key: str | None = None
    label_key: str = "label"
    max_length: int = 128

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        _check_tokenizer(self.tokenizer)
        first = [r[self.text_key] for r in rows]
        second = [r[self.pair_key] for r in rows] if self.pair_key else None
        batch = dict(self.tokenizer(first, second, padding=True, truncation=True,
                                    max_length=self.max_length, return_tensors="pt"))
        batch["labels"] = torch.tensor([int(r[self.label_key]) for r in rows], dtype=torch.long)
        return batch


@dataclass
class CausalLMCollator:
    """Rows ``{question, answer}`` (or ``{text}`` for plain corpus text) -> causal-LM batch.

    The sequence is ``prompt + " " + answer + eos`` where ``prompt =
    prompt_template.format(question=...)``; only answer tokens and ``eos`` are labelled, so
    the loss is the mean NLL of the answer. A row with only ``text_key`` is plain text with
    every token labelled (after the bos token, which is never predicted).

    Attributes:
        tokenizer: a fast tokenizer (offsets are used to find the answer tokens).
        prompt_template: format string with ``{question}``.
        question_key, answer_key, text_key: the row columns.
        max_length: truncation length (tokens, eos included).
    """

    tokenizer: PreTrainedTokenizerBase
    prompt_template: str = "Question: {question}\nAnswer:"
    question_key: str = "question"
    answer_key: str = "answer"
    text_key: str = "text"
    max_length: int = 256

    def format_prompt(self, row: dict[str, Any]) -> str:
        """The prompt text of ``row`` (what a generation call is given)."""
        return self.prompt_template.format(question=row[self.question_key])

    def _split(self, row: dict[str, Any]) -> tuple[str, int]:
        """(full text, char offset where the scored part begins)."""
        if self.question_key in row and self.answer_key in row:
            prompt = self.format_prompt(row)
            return f"{prompt} {row[self.answer_key]}", len(prompt) + 1
        if self.text_key in row:
            return str(row[self.text_key]), 0
        raise KeyError(f"a causal-LM row needs {self.question_key!r} and {self.answer_key!r} "
                       f"(or {self.text_key!r}); got columns {sorted(row)}")

    def encode(self, rows: list[dict[str, Any]]) -> tuple[list[list[int]], list[list[int]]]:
        """Unpadded (input ids, labels) per row."""
        texts, starts = zip(*(self._split(r) for r in rows))
        enc = self.tokenizer(list(texts), return_offsets_mapping=True, truncation=True,
                             max_length=self.max_length - 1)
        eos = self.tokenizer.eos_token_id
        specials = set(self.tokenizer.all_special_ids) - {self.tokenizer.unk_token_id}
        all_ids, all_labels = [], []
        for ids, offsets, start in zip(enc["input_ids"], enc["offset_mapping"], starts):
            # score the tokens that end after ``start`` (all of plain text), never specials
            labels = [t if (o[1] > start or start == 0) and t not in specials else IGNORE
                      for t, o in zip(ids, offsets)]
            if eos is not None and (not ids or ids[-1] != eos):
                ids, labels = ids + [eos], labels + [eos]
            all_ids.append(ids)
            all_labels.append(labels)
        return all_ids, all_labels

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        _check_tokenizer(self.tokenizer)
        ids, labels = self.encode(rows)
        input_ids = pad_right(ids, self.tokenizer.pad_token_id)
        attention = pad_right([[1] * len(s) for s in ids], 0)
        return {"input_ids": input_ids, "attention_mask": attention,
                "labels": pad_right(labels, IGNORE)}


def format_choices(question: str, choices: list[str]) -> str:
    """``question`` followed by one ``"A. choice"`` line per choice (MMLU / WMDP style)."""
    lines = [question.strip()] + [f"{LETTERS[i]}. {c}" for i, c in enumerate(choices)]
    return "\n".join(lines)


@dataclass
class MultipleChoiceCollator(CausalLMCollator):
    """Rows ``{question, choices: list[str], answer: int}`` -> causal-LM batch whose only
    labelled tokens are the answer letter (and eos).

    Zero-shot accuracy: at the position that predicts the first labelled token, compare
    the logits of ``choice_token_ids(n)`` (the letters ``A``, ``B``, ...). Rows with only
    ``text`` (a forget/retain corpus) are plain text, as in ``CausalLMCollator``.
    """

    prompt_template: str = "{question}\nAnswer:"
    choices_key: str = "choices"

    def _split(self, row: dict[str, Any]) -> tuple[str, int]:
        if self.choices_key in row and self.question_key in row:
            question = format_choices(row[self.question_key], list(row[self.choices_key]))
            letter = LETTERS[int(row[self.answer_key])]
            prompt = self.prompt_template.format(question=question)
            return f"{prompt} {letter}", len(prompt) + 1
        return super()._split(row)

    def format_prompt(self, row: dict[str, Any]) -> str:
        if self.choices_key in row:
            question = format_choices(row[self.question_key], list(row[self.choices_key]))
            return self.prompt_template.format(question=question)
        return super().format_prompt(row)

    def choice_token_ids(self, n_choices: int = 4) -> list[int]:
        """Token id of each answer letter as it follows the prompt (first sub-token)."""
        ids = []
        for letter in LETTERS[:n_choices]:
            enc = self.tokenizer(f"Answer: {letter}", add_special_tokens=False,
                                 return_offsets_mapping=True)
            pos = next(i for i, o in enumerate(enc["offset_mapping"]) if o[1] > len("Answer:"))
            ids.append(enc["input_ids"][pos])
        return ids


@dataclass
class ExtractiveQACollator:
    """SQuAD rows ``{question, context, answers: {text: [...], answer_start: [...]}}`` ->
    extractive-QA batch with token ``start_positions`` / ``end_positions`` (B,).

    One window per row (``truncation="only_second"``); the first gold answer is used.
    An empty answer (SQuAD v2) or one cut off by truncation points at token 0.
    """

    tokenizer: PreTrainedTokenizerBase
    max_length: int = 384

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        _check_tokenizer(self.tokenizer)
        enc = self.tokenizer([r["question"].lstrip() for r in rows], [r["context"] for r in rows],
                             truncation="only_second", max_length=self.max_length, padding=True,
                             return_offsets_mapping=True, return_tensors="pt")
        starts, ends = [], []
        for i, row in enumerate(rows):
            seq = enc.sequence_ids(i)
            offsets = enc["offset_mapping"][i].tolist()
            texts, chars = row["answers"]["text"], row["answers"]["answer_start"]
            s = e = 0
            if len(texts) and len(texts[0]):
                a0, a1 = int(chars[0]), int(chars[0]) + len(texts[0])
                ctx = [k for k, sid in enumerate(seq) if sid == 1]
                if ctx and offsets[ctx[0]][0] <= a0 and offsets[ctx[-1]][1] >= a1:
                    s = next(k for k in ctx if offsets[k][1] > a0)
                    e = next(k for k in reversed(ctx) if offsets[k][0] < a1)
            starts.append(s)
            ends.append(e)
        batch = {k: v for k, v in enc.items() if k != "offset_mapping"}
        batch["start_positions"] = torch.tensor(starts, dtype=torch.long)
        batch["end_positions"] = torch.tensor(ends, dtype=torch.long)
        return batch
