"""Reading the data people have: local files or folders (TSV in GLUE's layout, CSV,
JSON / JSON lines, parquet) or a hub dataset id, as named splits (docs/design.md §7.1).

:func:`open_data` turns ``data`` (a folder, one file, a dict ``{split: file(s)}`` or a hub
id) into a :class:`DataSource` whose splits are read when first asked for;
:func:`find_split` maps the roles ``train`` / ``validation`` / ``test`` to the split names
people use (``dev`` for ``validation``, MNLI's ``dev_matched`` ...).

Formats, by file suffix:

- ``.tsv``: GLUE's layout: a header row, tab-separated, no quoting at all (a ``"`` is an
  ordinary character, as GLUE writes it: ``csv.QUOTE_NONE``); ``NA`` / ``null`` stay text.
- ``.csv``: a header row, standard quoting (``"a, b"``); empty cells are missing values.
- ``.json`` / ``.jsonl``: JSON lines (or one JSON array), nested fields kept.
- ``.parquet``.

Files of one split may be shards: ``train-00000-of-00002.parquet`` ... are read together.
"""

from __future__ import annotations

import csv
import os
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from datasets import Dataset, DatasetDict, concatenate_datasets, load_dataset

from .hub import require_hub

__all__ = ["DataError", "DataFiles", "DataSource", "FORMATS", "ROLE_NAMES",
           "SplitNotFoundError", "find_split", "open_data", "open_split", "read_file"]

#: File suffix -> the format it is read as.
FORMATS = {"tsv": "tsv", "csv": "csv", "jsonl": "json", "json": "json", "parquet": "parquet"}

#: Role -> split names that play it, in order of preference (file stems or hub split names).
#: ``*_matched`` variants (MNLI) come after the plain names.
ROLE_NAMES: dict[str, tuple[str, ...]] = {
    "train": ("train", "training"),
    "validation": ("validation", "dev", "valid", "val", "eval", "development",
                   "validation_matched", "dev_matched"),
    "test": ("test", "test_matched"),
}

_SHARD = re.compile(r"^(?P<stem>.+?)-\d{5}-of-\d{5}$")


class DataError(ValueError):
    """Data that cannot be used as given (unreadable file, missing column or split, labels
    that do not fit); the message says what was wrong and what is accepted."""


class SplitNotFoundError(DataError, KeyError):
    """A split that was asked for is not in the data (a ``KeyError`` too, for callers that
    catch the older error)."""

    __str__ = Exception.__str__  # KeyError would quote the message


def _suffix(path: Path) -> str:
    return path.name.rsplit(".", 1)[-1].lower() if "." in path.name else ""


def _stem(path: Path) -> str:
    stem = path.name[: -len(_suffix(path)) - 1] if _suffix(path) else path.name
    m = _SHARD.match(stem)
    return m.group("stem") if m else stem


def _read_table(path: Path, fmt: str) -> Dataset:
    # index_col=False: a row with more fields than the header is an error, not an index
    # (pandas only warns when it is the first row: that warning is made an error too)
    with warnings.catch_warnings():
        warnings.simplefilter("error", pd.errors.ParserWarning)
        if fmt == "tsv":
            frame = pd.read_csv(path, sep="\t", quoting=csv.QUOTE_NONE, keep_default_na=False,
                                na_values=[], encoding="utf-8", index_col=False)
        else:
            frame = pd.read_csv(path, encoding="utf-8", index_col=False)
    if frame.empty:
        raise DataError(f"{path} has a header but no rows")
    return Dataset.from_pandas(frame, preserve_index=False)


def read_file(path: str | os.PathLike) -> Dataset:
    """One data file as a ``Dataset`` (format from the suffix, see the module docstring).

    Raises ``FileNotFoundError`` for a missing file and :class:`DataError` for an unknown
    suffix or a file that cannot be read in its format (the parser's complaint included).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    fmt = FORMATS.get(_suffix(path))
    if fmt is None:
        raise DataError(f"cannot read {path}: unknown file type {path.suffix or '(none)'!r}; "
                        f"accepted: {', '.join('.' + s for s in FORMATS)}")
    try:
        if fmt in ("tsv", "csv"):
            return _read_table(path, fmt)
        return load_dataset(fmt, data_files={"data": [str(path)]}, split="data")
    except DataError:
        raise
    except Exception as err:  # every parser has its own errors (pandas, pyarrow, json, UTF-8)
        how = " (GLUE layout: a header row, tab-separated, no quoting)" if fmt == "tsv" else ""
        raise DataError(f"cannot read {path} as {fmt}{how}: {type(err).__name__}: "
                        f"{str(err).strip().splitlines()[0] if str(err).strip() else ''}"
                        ) from None


def _read_files(paths: Sequence[Path]) -> Dataset:
    fmts = {FORMATS.get(_suffix(p)) for p in paths}
    if len(fmts) != 1 or None in fmts:
        raise DataError(f"data files must all be one of {sorted(FORMATS)} (one type per split), "
                        f"got {sorted({_suffix(p) or '(none)' for p in paths})}")
    parts = [read_file(p) for p in paths]
    return parts[0] if len(parts) == 1 else concatenate_datasets(parts)


@dataclass
class DataSource:
    """Named splits of one data set, read on first use.

    Attributes:
        origin: what was given, for messages (``"folder data/sst2"``, ``"hub nyu-mll/glue"``).
        files: split name -> its files (empty lists for a hub data set).
        loaded: split name -> the ``Dataset`` once read.
        reader: how a split is read (``name -> Dataset``).
    """

    origin: str
    files: dict[str, list[str]]
    loaded: dict[str, Dataset] = field(default_factory=dict)
    reader: Callable[[str], Dataset] | None = None

    @property
    def names(self) -> list[str]:
        """The split names, in the order found."""
        return list(self.files)

    def split(self, name: str) -> Dataset:
        """The split ``name`` (read now if not yet)."""
        if name not in self.files:
            raise SplitNotFoundError(f"{self.origin} has no split {name!r}; it has "
                                     f"{', '.join(self.names) or 'no data files'}")
        if name not in self.loaded:
            self.loaded[name] = self.reader(name) if self.reader else \
                _read_files([Path(p) for p in self.files[name]])
        return self.loaded[name]

    def describe(self, name: str) -> str:
        """``"train.tsv"`` or ``"hub nyu-mll/glue [train]"``: where a split comes from."""
        files = self.files.get(name) or []
        return ", ".join(Path(f).name for f in files) if files else f"{self.origin} [{name}]"


def _folder_source(folder: Path) -> DataSource:
    files: dict[str, list[str]] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and _suffix(p) in FORMATS:
            files.setdefault(_stem(p), []).append(str(p))
    if not files:
        found = sorted(p.name for p in folder.iterdir())[:8]
        raise DataError(f"data folder {folder} holds no data files (found: {found or 'nothing'}); "
                        f"expected <split>.<ext> files such as train.tsv / dev.tsv / test.tsv, "
                        f"ext one of {', '.join(FORMATS)}")
    return DataSource(f"folder {folder}", files)


def _looks_like_path(text: str) -> bool:
    return (text.startswith((".", "/", "~")) or text.count("/") > 1 or "\\" in text
            or _suffix(Path(text)) in FORMATS)


def open_data(data: str | os.PathLike | Mapping[str, str | os.PathLike | Sequence],
              config: str | None = None, hint: str = "") -> DataSource:
    """The splits of ``data``: a folder of ``<split>.<ext>`` files, one file (its only split
    is ``train``), a dict ``{split: file or [files]}``, or a hub dataset id (``config`` = the
    hub configuration, e.g. ``"sst2"`` for ``nyu-mll/glue``).

    Raises ``FileNotFoundError`` for a missing local path, :class:`DataError` for a folder
    without data files, and :class:`~mape_viz.tasks.hub.HubUnavailableError` for a hub id
    when the hub cannot be used (``hint`` is appended: how to point at local files).
    """
    if isinstance(data, Mapping):
        files: dict[str, list[str]] = {}
        for name, raw in data.items():
            paths = [raw] if isinstance(raw, (str, os.PathLike)) else list(raw)
            missing = [str(p) for p in paths if not Path(p).expanduser().is_file()]
            if missing:
                raise FileNotFoundError(f"data file(s) not found: {missing}")
            files[str(name)] = [str(Path(p).expanduser()) for p in paths]
        return DataSource("the data files given", files)
    path = Path(data).expanduser()
    if path.is_dir():
        return _folder_source(path)
    if path.is_file():
        return DataSource(f"file {path}", {"train": [str(path)]})
    if _looks_like_path(str(data)):
        raise FileNotFoundError(f"data not found: {path} (give a folder of <split>.<ext> "
                                f"files, one file, or a hub dataset id)")
    require_hub(f"dataset {data!r}" + (f" ({config})" if config else ""),
                hint or "Point at a local folder or file instead: data='path/to/folder'.")
    hub: DatasetDict = load_dataset(str(data), config)
    return DataSource(f"hub {data}" + (f" ({config})" if config else ""),
                      {name: [] for name in hub}, loaded=dict(hub.items()))


def find_split(source: DataSource, role: str, requested: str | None = None,
               required: bool = True) -> str | None:
    """The split name of ``source`` that plays ``role`` (``train`` / ``validation`` /
    ``test``): ``requested`` when given (it must exist), else the first of
    :data:`ROLE_NAMES` present. ``None`` when absent and not ``required``; else
    :class:`SplitNotFoundError` naming the splits there are and the names accepted.
    """
    if role not in ROLE_NAMES:
        raise ValueError(f"role must be one of {list(ROLE_NAMES)}, got {role!r}")
    if requested is not None:
        if requested not in source.files:
            raise SplitNotFoundError(f"{source.origin} has no split {requested!r}; it has "
                                     f"{', '.join(source.names)}")
        return requested
    for name in ROLE_NAMES[role]:
        if name in source.files:
            return name
    if not required:
        return None
    raise SplitNotFoundError(
        f"{source.origin} has no {role} split: it has {', '.join(source.names) or 'none'}; "
        f"a {role} split is named {' / '.join(ROLE_NAMES[role][:4])} (a file such as "
        f"{ROLE_NAMES[role][0]}.tsv), or name yours with "
        f"{'train' if role == 'train' else 'test'}_split=")


#: What the named presets take as ``data_files``: a folder, one file, or ``{split: file(s)}``.
DataFiles = str | os.PathLike | Mapping[str, str | os.PathLike | Sequence[str | os.PathLike]]


def open_split(hub_path: str, hub_config: str | None, hub_split: str,
               data_files: DataFiles | None, local_names: Sequence[str], hint: str,
               required: bool = True) -> Dataset | None:
    """One split, from local files when ``data_files`` is given (the first of
    ``local_names`` there), else from the hub (``load_dataset(hub_path, hub_config,
    split=hub_split)``).

    A missing local split raises :class:`SplitNotFoundError` (``None`` when not
    ``required``); the hub raises ``HubUnavailableError`` with ``hint`` when it cannot answer.
    """
    if data_files is not None:
        source = open_data(data_files)
        for name in local_names:
            if name in source.files:
                return source.split(name)
        if not required:
            return None
        raise SplitNotFoundError(f"{source.origin} holds none of "
                                 f"{', '.join(f'{n}.tsv/.jsonl/.csv/.parquet' for n in local_names)}"
                                 f" (it has {', '.join(source.names)})")
    require_hub(f"dataset {hub_path!r}" + (f" ({hub_config})" if hub_config else ""), hint)
    return load_dataset(hub_path, hub_config, split=hub_split)
