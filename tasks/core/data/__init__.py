"""Loading and validating SQuAD-format question-answering data.

Formats (`load_dataset_file`: chosen by suffix, content sniffed where ambiguous; any may be gzipped):

- SQuAD nested JSON v1.1 / v2.0:
  ``{"version", "data": [{"title", "paragraphs": [{"context", "qas": [...]}]}]}``. The version is "2.0"
  when the file's ``version`` says v2.0 or any qa has an ``is_impossible`` key, else "1.1".
- Flat records: a JSON list (or ``{"data": [records]}``), JSON Lines (``.jsonl``; also a ``.json`` file
  that turns out to be JSON Lines, as ``datasets.Dataset.to_json`` writes), CSV (``.csv``) or TSV
  (``.tsv``). Field names come from `ColumnMap`. ``answers`` is either the Hugging Face form
  ``{"text": [...], "answer_start": [...]}`` or a list of ``{"text", "answer_start"}``; in CSV/TSV it is
  that JSON written as a string in one cell. The answers field must be present; an empty value (``[]``,
  ``null``, an empty cell, empty lists) marks the question unanswerable, and the dataset is then version
  "2.0". ``title`` is optional (empty when absent). Optional ``is_impossible`` (a boolean;
  "true"/"false"/"1"/"0" in CSV) and ``plausible_answers`` are read when present.
- A Hugging Face ``datasets`` directory written by ``save_to_disk`` (or a hub name via `load_hf_dataset`).

Every record is validated (required fields and types, unique ids, non-empty context and question, each
answer's text found at its ``answer_start``, unanswerable questions without answers). Errors name the
file, the record (its id, or ``#index`` = 0-based position in file order when it has no usable id) and
the field.


The rooms: `examples` (the types and DataError), `text` (usable text, message helpers), `files` (reading text,
bounded JSON), `records` (validating records, the error/skip policy), `loading` (formats, `load_dataset_file`),
`hf` (Hugging Face datasets), `articles` (split by article, SQuAD JSON out, summary). This package re-exports the
public names, so callers import from `tasks.core.data`.

Imports only `tasks.core.hub_access` of qaflow (see ARCHITECTURE.md).
"""

from tasks.core.data.articles import dataset_summary, split_by_article, to_squad_json
from tasks.core.data.examples import (
    SQUAD_COLUMNS,
    Answer,
    ColumnMap,
    DataError,
    Example,
    Labels,
    Policy,
    QADataset,
    SkippedRecord,
)
from tasks.core.data.files import loads_bounded, read_json_file
from tasks.core.data.hf import load_hf_dataset
from tasks.core.data.loading import load_dataset_file
from tasks.core.data.records import trimmed
from tasks.core.data.text import check_text, text_problem

__all__ = [
    "SQUAD_COLUMNS",
    "Answer",
    "ColumnMap",
    "DataError",
    "Example",
    "Labels",
    "Policy",
    "QADataset",
    "SkippedRecord",
    "check_text",
    "dataset_summary",
    "load_dataset_file",
    "load_hf_dataset",
    "loads_bounded",
    "read_json_file",
    "split_by_article",
    "text_problem",
    "to_squad_json",
    "trimmed",
]
