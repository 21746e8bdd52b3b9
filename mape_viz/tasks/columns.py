"""Which columns hold the text, the second text, the label, the question and the answer
(docs/design.md §7.1).

A column named by the user must exist; otherwise it is found from the names people use
(:data:`TEXT_COLUMNS`, :data:`PAIR_COLUMNS`, :data:`LABEL_COLUMNS`, :data:`QUESTION_COLUMNS`,
:data:`ANSWER_COLUMNS`) when exactly one candidate is there, and refused with the
candidates listed when several are (pass the column's name then).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from datasets import Dataset, Value

from .readers import DataError

__all__ = ["ANSWER_COLUMNS", "ClassificationColumns", "LABEL_COLUMNS", "PAIR_COLUMNS",
           "QAColumns", "QUESTION_COLUMNS", "TEXT_COLUMNS", "check_columns",
           "classification_columns", "qa_columns"]

#: Single-text column names (SST-2 ``sentence``, CoLA, AG News ``text``, reviews ...).
TEXT_COLUMNS = ("sentence", "text", "content", "review", "document", "utterance", "tweet")
#: (first, second) column names of sentence-pair sets (MRPC/RTE/WNLI, MNLI, QQP, QNLI ...).
PAIR_COLUMNS = (("sentence1", "sentence2"), ("premise", "hypothesis"),
                ("question1", "question2"), ("question", "sentence"), ("text_a", "text_b"),
                ("text1", "text2"))
#: Label column names (GLUE ``label``, MNLI's TSV ``gold_label``, QQP's TSV ``is_duplicate``).
LABEL_COLUMNS = ("label", "labels", "gold_label", "is_duplicate", "class", "category",
                 "target", "sentiment")
QUESTION_COLUMNS = ("question", "prompt", "query", "instruction", "input")
ANSWER_COLUMNS = ("answer", "response", "completion", "output", "target")


@dataclass(frozen=True)
class ClassificationColumns:
    """Columns of a classification set: ``text``, optional ``pair``, ``label``."""

    text: str
    pair: str | None
    label: str


@dataclass(frozen=True)
class QAColumns:
    """Columns of a question-answer set (causal LM)."""

    question: str
    answer: str


def check_columns(ds: Dataset, names: Sequence[str | None], where: str) -> None:
    """Raise :class:`DataError` listing every name of ``names`` not in ``ds``."""
    missing = [n for n in names if n is not None and n not in ds.column_names]
    if missing:
        raise DataError(f"{where} lacks columns {missing} (has {ds.column_names})")


def _is_text(ds: Dataset, name: str) -> bool:
    feature = ds.features.get(name)
    return isinstance(feature, Value) and feature.dtype in ("string", "large_string")


def _one(ds: Dataset, candidates: Sequence[str], what: str, option: str, where: str,
         exclude: Sequence[str] = ()) -> str | None:
    found = [c for c in candidates if c in ds.column_names and c not in exclude]
    if len(found) > 1:
        raise DataError(f"{where}: the {what} column is ambiguous: {found} could each be it; "
                        f"name it with {option}= (columns: {ds.column_names})")
    return found[0] if found else None


def classification_columns(ds: Dataset, where: str, text: str | None = None,
                           pair: str | None = None, label: str | None = None
                           ) -> ClassificationColumns:
    """The text / pair / label columns of ``ds`` (the training split), given or found.

    Found automatically: a pair from :data:`PAIR_COLUMNS` (both present, only one such
    pair), else one of :data:`TEXT_COLUMNS`, else the only text-typed column besides the
    label; the label from :data:`LABEL_COLUMNS`. Raises :class:`DataError` for a named
    column that is missing, or none / several candidates.
    """
    check_columns(ds, [text, pair, label], where)
    if label is None:
        label = _one(ds, LABEL_COLUMNS, "label", "label_column", where, (text, pair))
        if label is None:
            raise DataError(f"{where}: no label column among {ds.column_names} (looked for "
                            f"{', '.join(LABEL_COLUMNS)}); name it with label_column=")
    if text is None:
        pairs = [p for p in PAIR_COLUMNS if all(c in ds.column_names for c in p)]
        if pair is not None:
            pairs = [p for p in pairs if p[1] == pair]
        if len(pairs) > 1:
            raise DataError(f"{where}: the text columns are ambiguous: pairs {pairs} are all "
                            f"there; name them with text_column= and text_pair_column=")
        if pairs:
            text, found_pair = pairs[0]
            pair = pair or found_pair
        else:
            text = _one(ds, TEXT_COLUMNS, "text", "text_column", where, (label, pair))
        if text is None:
            strings = [c for c in ds.column_names if c not in (label, pair) and _is_text(ds, c)]
            if len(strings) != 1:
                raise DataError(
                    f"{where}: cannot tell the text column: "
                    f"{'no text column' if not strings else f'{strings} could each be it'} "
                    f"(looked for {', '.join(TEXT_COLUMNS)} and the pairs "
                    f"{', '.join('/'.join(p) for p in PAIR_COLUMNS)}); name it with "
                    f"text_column= (columns: {ds.column_names})")
            text = strings[0]
    if label in (text, pair) or (pair is not None and pair == text):
        raise DataError(f"{where}: text, pair and label columns must differ, got text={text!r}, "
                        f"pair={pair!r}, label={label!r}")
    return ClassificationColumns(text, pair, label)


def qa_columns(ds: Dataset, where: str, question: str | None = None,
               answer: str | None = None) -> QAColumns:
    """The question / answer columns of ``ds``, given or found (TOFU: ``question``,
    ``answer``). Raises :class:`DataError` like :func:`classification_columns`."""
    check_columns(ds, [question, answer], where)
    question = question or _one(ds, QUESTION_COLUMNS, "question", "question_column", where,
                                (answer,))
    answer = answer or _one(ds, ANSWER_COLUMNS, "answer", "answer_column", where, (question,))
    missing = [n for n, v in (("question", question), ("answer", answer)) if v is None]
    if missing:
        looked = {"question": QUESTION_COLUMNS, "answer": ANSWER_COLUMNS}
        raise DataError(f"{where}: no {' / '.join(missing)} column among {ds.column_names} "
                        f"(looked for {'; '.join(', '.join(looked[m]) for m in missing)}); "
                        f"name it with {' / '.join(m + '_column=' for m in missing)}")
    return QAColumns(question, answer)
