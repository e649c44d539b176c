"""Tests for tasks.core.data (loading, validation, split, SQuAD JSON) and tasks.core.io (atomic writes)."""

from __future__ import annotations

import csv
import gzip
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tasks.core.data import (
    Answer,
    ColumnMap,
    DataError,
    Example,
    QADataset,
    SkippedRecord,
    dataset_summary,
    load_dataset_file,
    load_hf_dataset,
    split_by_article,
    to_squad_json,
)
from tasks.core.io import atomic_path, write_bytes_atomic, write_json_atomic

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SAMPLE = REPO / "data" / "sample"

CTX1 = "The Denver Broncos won Super Bowl 50. The Broncos defeated the Carolina Panthers 24–10."
CTX2 = 'Café au lait ☕ costs €3 in Paris.\u2028A second line: "quoted", with a comma.'
CTX3 = "Tesla was born in Smiljan.\nHe moved to New York in 1884."


def _ans(context: str, text: str, nth: int = 0) -> dict[str, Any]:
    start = -1
    for _ in range(nth + 1):
        start = context.index(text, start + 1)
    return {"text": text, "answer_start": start}


def _articles() -> list[dict[str, Any]]:
    """Two articles, three contexts, five questions (one with two answers), non-ASCII and U+2028 text."""
    return [
        {
            "title": "Super_Bowl_50",
            "paragraphs": [
                {
                    "context": CTX1,
                    "qas": [
                        {
                            "id": "q1",
                            "question": "Who won Super Bowl 50?",
                            "answers": [_ans(CTX1, "The Denver Broncos"), _ans(CTX1, "Broncos", 1)],
                        },
                        {"id": "q2", "question": "Who lost?", "answers": [_ans(CTX1, "Carolina Panthers")]},
                    ],
                },
                {
                    "context": CTX2,
                    "qas": [{"id": "q3", "question": "What costs €3?", "answers": [_ans(CTX2, "Café au lait ☕")]}],
                },
            ],
        },
        {
            "title": "Nikola_Tesla",
            "paragraphs": [
                {
                    "context": CTX3,
                    "qas": [
                        {"id": "q4", "question": "Where was Tesla born?", "answers": [_ans(CTX3, "Smiljan")]},
                        {"id": "q5", "question": " When did he move?", "answers": [_ans(CTX3, "1884")]},
                    ],
                }
            ],
        },
    ]


def _expected(articles: list[dict[str, Any]]) -> list[Example]:
    """Examples built directly from the nested structure (independent of the loader)."""
    out = []
    for art in articles:
        for para in art["paragraphs"]:
            for qa in para["qas"]:
                out.append(
                    Example(
                        id=qa["id"],
                        title=art["title"],
                        context=para["context"],
                        question=qa["question"],
                        answers=tuple(Answer(a["text"], a["answer_start"]) for a in qa["answers"]),
                        is_impossible=qa.get("is_impossible", not qa["answers"]),
                        plausible_answers=tuple(
                            Answer(a["text"], a["answer_start"]) for a in qa.get("plausible_answers", [])
                        ),
                    )
                )
    return out


def _flat(articles: list[dict[str, Any]], *, hf_form: bool) -> list[dict[str, Any]]:
    records = []
    for art in articles:
        for para in art["paragraphs"]:
            for qa in para["qas"]:
                answers: Any = qa["answers"]
                if hf_form:
                    answers = {
                        "text": [a["text"] for a in answers],
                        "answer_start": [a["answer_start"] for a in answers],
                    }
                records.append(
                    {
                        "id": qa["id"],
                        "title": art["title"],
                        "context": para["context"],
                        "question": qa["question"],
                        "answers": answers,
                    }
                )
    return records


def _squad(articles: list[dict[str, Any]], version: str = "1.1") -> dict[str, Any]:
    return {"version": version, "data": articles}


def _write_json(path: Path, obj: Any) -> Path:
    path.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")
    return path


def _write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    path.write_bytes(gzip.compress(text.encode()) if path.suffix == ".gz" else text.encode())
    return path


def _write_csv(path: Path, records: list[dict[str, Any]], delimiter: str = ",") -> Path:
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter=delimiter)
        writer.writerow(["id", "title", "context", "question", "answers"])
        for r in records:
            writer.writerow([r["id"], r["title"], r["context"], r["question"], json.dumps(r["answers"])])
    return path


def _write_hf_dir(path: Path, records: list[dict[str, Any]]) -> Path:
    import datasets

    datasets.Dataset.from_list(records).save_to_disk(str(path))
    return path


# Every writer produces the same five examples in a different format.
WRITERS: dict[str, Callable[[Path, list[dict[str, Any]]], Path]] = {
    "squad.json": lambda d, a: _write_json(d / "squad.json", _squad(a)),
    "squad.json.gz": lambda d, a: (
        (d / "squad.json.gz").write_bytes(gzip.compress(json.dumps(_squad(a)).encode())),
        d / "squad.json.gz",
    )[1],
    "gzip sniffed (no .gz suffix)": lambda d, a: (
        (d / "squad.data").write_bytes(gzip.compress(json.dumps(_squad(a)).encode())),
        d / "squad.data",
    )[1],
    "flat list.json": lambda d, a: _write_json(d / "flat.json", _flat(a, hf_form=False)),
    "flat {data}.json (HF answers)": lambda d, a: _write_json(d / "flat.json", {"data": _flat(a, hf_form=True)}),
    "records.jsonl": lambda d, a: _write_jsonl(d / "records.jsonl", _flat(a, hf_form=True)),
    "records.jsonl.gz": lambda d, a: _write_jsonl(d / "records.jsonl.gz", _flat(a, hf_form=False)),
    "JSON Lines named .json": lambda d, a: _write_jsonl(d / "to_json.json", _flat(a, hf_form=True)),
    "records.csv": lambda d, a: _write_csv(d / "records.csv", _flat(a, hf_form=True)),
    "records.tsv": lambda d, a: _write_csv(d / "records.tsv", _flat(a, hf_form=False), delimiter="\t"),
    "save_to_disk dir": lambda d, a: _write_hf_dir(d / "hf", _flat(a, hf_form=True)),
}


@pytest.mark.parametrize("fmt", list(WRITERS))
def test_every_format_loads_the_same_examples(tmp_path: Path, fmt: str) -> None:
    path = WRITERS[fmt](tmp_path, _articles())
    ds = load_dataset_file(path)
    assert ds.examples == _expected(_articles())
    assert ds.version == "1.1"
    assert ds.skipped == []
    assert ds.source == str(path)


def test_custom_column_names_csv_and_jsonl(tmp_path: Path) -> None:
    cols = ColumnMap(id="qid", title="doc", context="passage", question="query", answers="gold")
    renamed = [
        {
            "qid": r["id"],
            "doc": r["title"],
            "passage": r["context"],
            "query": r["question"],
            "gold": r["answers"],
        }
        for r in _flat(_articles(), hf_form=True)
    ]
    jsonl = _write_jsonl(tmp_path / "renamed.jsonl", renamed)
    assert load_dataset_file(jsonl, columns=cols).examples == _expected(_articles())
    path = tmp_path / "renamed.csv"
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["passage", "query", "gold", "qid", "doc"])
        writer.writeheader()
        writer.writerows({**r, "gold": json.dumps(r["gold"])} for r in renamed)
    assert load_dataset_file(path, columns=cols).examples == _expected(_articles())
    with pytest.raises(DataError, match=r"column\(s\) 'qid', 'passage', 'query', 'gold' not found"):
        load_dataset_file(_write_csv(tmp_path / "plain.csv", _flat(_articles(), hf_form=True)), columns=cols)


def _v2_articles() -> list[dict[str, Any]]:
    arts = _articles()
    para = arts[1]["paragraphs"][0]
    for qa in para["qas"]:
        qa["is_impossible"] = False
    para["qas"].append(
        {
            "id": "q6",
            "question": "Where did Tesla die?",
            "answers": [],
            "is_impossible": True,
            "plausible_answers": [_ans(CTX3, "New York")],
        }
    )
    return arts


def test_v2_fields_and_version_detection(tmp_path: Path) -> None:
    ds = load_dataset_file(_write_json(tmp_path / "v2.json", _squad(_v2_articles(), "v2.0")))
    assert ds.version == "2.0"
    q6 = ds.examples[-1]
    assert (q6.id, q6.is_impossible, q6.answers) == ("q6", True, ())
    assert q6.plausible_answers == (Answer("New York", CTX3.index("New York")),)
    assert ds.examples == _expected(_v2_articles())
    assert dataset_summary(ds) == {
        "articles": 2,
        "questions": 6,
        "answerable": 5,
        "unanswerable": 1,
        "version": "2.0",
        "skipped": 0,
        "answers_trimmed": 0,
    }
    # the file's version alone makes it 2.0; so does any is_impossible key under a "1.1" version
    assert load_dataset_file(_write_json(tmp_path / "a.json", _squad(_articles(), "v2.0"))).version == "2.0"
    arts = _articles()
    arts[0]["paragraphs"][0]["qas"][0]["is_impossible"] = False
    assert load_dataset_file(_write_json(tmp_path / "b.json", _squad(arts, "1.1"))).version == "2.0"


def test_flat_record_without_answers_is_unanswerable(tmp_path: Path) -> None:
    records = _flat(_articles(), hf_form=True)
    records[1]["answers"] = {"text": [], "answer_start": []}
    records[3]["answers"] = None
    ds = load_dataset_file(_write_jsonl(tmp_path / "x.jsonl", records))
    assert ds.version == "2.0"
    assert [e.is_impossible for e in ds.examples] == [False, True, False, True, False]
    csv_records = _flat(_articles(), hf_form=False)
    csv_records[2]["answers"] = []
    ds = load_dataset_file(_write_csv(tmp_path / "x.csv", csv_records))
    assert (ds.version, [e.is_impossible for e in ds.examples]) == ("2.0", [False, False, True, False, False])
    # an empty CSV cell also means no answers
    path = tmp_path / "empty-cell.csv"
    path.write_text("id,context,question,answers\nz1,Tesla was born in Smiljan.,Who?,\n", encoding="utf-8")
    ds = load_dataset_file(path)
    assert ds.examples[0].is_impossible and ds.examples[0].title == ""


def test_to_squad_json_round_trips(tmp_path: Path) -> None:
    for articles, version in ((_articles(), "1.1"), (_v2_articles(), "v2.0")):
        original = load_dataset_file(_write_json(tmp_path / "in.json", _squad(articles, version)))
        obj = to_squad_json(original)
        assert obj["version"] == version
        assert [a["title"] for a in obj["data"]] == ["Super_Bowl_50", "Nikola_Tesla"]
        write_json_atomic(obj, tmp_path / "out.json")
        again = load_dataset_file(tmp_path / "out.json")
        assert (again.examples, again.version) == (original.examples, original.version)
    # flat input → nested output keeps every example
    flat = load_dataset_file(_write_jsonl(tmp_path / "f.jsonl", _flat(_articles(), hf_form=True)))
    assert load_dataset_file(_write_json(tmp_path / "n.json", to_squad_json(flat))).examples == flat.examples


# ----------------------------------------------------------------------------------------------------
# Bad records: (mutation of the nested articles, record, field, reason fragment)
# ----------------------------------------------------------------------------------------------------


def _qa(arts: list[dict[str, Any]], qid: str) -> dict[str, Any]:
    return next(qa for a in arts for p in a["paragraphs"] for qa in p["qas"] if qa.get("id") == qid)


def _shift_q2(arts: list[dict[str, Any]]) -> None:
    _qa(arts, "q2")["answers"][0]["answer_start"] += 1


BAD_RECORDS: list[tuple[str, Callable[[list[dict[str, Any]]], Any], str, str, str]] = [
    ("misaligned answer", _shift_q2, "'q2'", "answers[0].answer_start", "text 'Carolina Panthers' not found"),
    (
        "second answer misaligned",
        lambda a: _qa(a, "q1")["answers"][1].update(answer_start=0),
        "'q1'",
        "answers[1].answer_start",
        "text 'Broncos' not found at 0 (context has 'The Den')",
    ),
    (
        "start past the end",
        lambda a: _qa(a, "q4")["answers"][0].update(answer_start=len(CTX3) - 2),
        "'q4'",
        "answers[0].answer_start",
        f"(context is only {len(CTX3)} characters)",
    ),
    (
        "negative start",
        lambda a: _qa(a, "q4")["answers"][0].update(answer_start=-3),
        "'q4'",
        "answers[0].answer_start",
        "negative answer_start -3",
    ),
    (
        "start not an integer",
        lambda a: _qa(a, "q4")["answers"][0].update(answer_start="18"),
        "'q4'",
        "answers[0].answer_start",
        "expected an integer, got string",
    ),
    (
        "answer text missing",
        lambda a: _qa(a, "q4")["answers"][0].pop("text"),
        "'q4'",
        "answers[0].text",
        "missing",
    ),
    ("answers missing", lambda a: _qa(a, "q3").pop("answers"), "'q3'", "answers", "missing"),
    ("answers a string", lambda a: _qa(a, "q3").update(answers="Café"), "'q3'", "answers", "got string"),
    ("question missing", lambda a: _qa(a, "q3").pop("question"), "'q3'", "question", "missing"),
    ("question empty", lambda a: _qa(a, "q3").update(question="  "), "'q3'", "question", "empty question"),
    ("question not a string", lambda a: _qa(a, "q3").update(question=7), "'q3'", "question", "got integer"),
    (
        "context empty",
        lambda a: a[1]["paragraphs"][0].update(context=""),
        "'q4'",
        "context",
        "empty context",
    ),
    ("context missing", lambda a: a[1]["paragraphs"][0].pop("context"), "'q4'", "context", "missing"),
    (
        "title not a string",
        lambda a: a[1].update(title=["x"]),
        "'q4'",
        "title",
        "expected a string, got array",
    ),
    ("id missing", lambda a: _qa(a, "q2").pop("id"), "#1", "id", "missing"),
    ("id not a string", lambda a: _qa(a, "q3").update(id=3), "#2", "id", "expected a string, got integer"),
    ("duplicate id", lambda a: _qa(a, "q4").update(id="q1"), "'q1'", "id", "record #3 repeats record #0"),
    (
        "qa not an object",
        lambda a: a[1]["paragraphs"][0]["qas"].__setitem__(0, "q4"),
        "#3",
        "record",
        "string",
    ),
    (
        "v1.1 question without answers",
        lambda a: _qa(a, "q5").update(answers=[]),
        "'q5'",
        "answers",
        "no answers",
    ),
    (
        "unanswerable with answers",
        lambda a: _qa(a, "q5").update(is_impossible=True),
        "'q5'",
        "answers",
        "unanswerable (is_impossible is true) but has 1 answer(s)",
    ),
    (
        "answerable without answers",
        lambda a: _qa(a, "q5").update(is_impossible=False, answers=[]),
        "'q5'",
        "answers",
        "answerable (is_impossible is false) but has no answers",
    ),
    (
        "is_impossible not a boolean",
        lambda a: _qa(a, "q5").update(is_impossible="no"),
        "'q5'",
        "is_impossible",
        "expected a boolean, got string",
    ),
    (
        "plausible answer misaligned",
        lambda a: _qa(a, "q5").update(
            is_impossible=True, answers=[], plausible_answers=[{"text": "He", "answer_start": 0}]
        ),
        "'q5'",
        "plausible_answers[0].answer_start",
        "not found at",
    ),
    ("paragraphs missing", lambda a: a[1].pop("paragraphs"), "data[1]", "paragraphs", "missing"),
    (
        "qas not a list",
        lambda a: a[1]["paragraphs"][0].update(qas={}),
        "data[1].paragraphs[0]",
        "qas",
        "object",
    ),
]


@pytest.mark.parametrize("case", BAD_RECORDS, ids=[c[0] for c in BAD_RECORDS])
def test_bad_record_error_names_file_record_and_field(tmp_path: Path, case: tuple) -> None:
    _, mutate, record, fld, reason = case
    arts = _articles()
    mutate(arts)
    path = _write_json(tmp_path / "dev.json", _squad(arts))
    with pytest.raises(DataError) as info:
        load_dataset_file(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: record {record} field '{fld}': "), msg
    assert reason in msg
    assert "\n" not in msg


@pytest.mark.parametrize("case", BAD_RECORDS, ids=[c[0] for c in BAD_RECORDS])
def test_skip_policy_drops_exactly_the_bad_records(tmp_path: Path, case: tuple) -> None:
    _, mutate, record, fld, reason = case
    arts = _articles()
    mutate(arts)
    ds = load_dataset_file(_write_json(tmp_path / "dev.json", _squad(arts)), policy="skip")
    assert ds.skipped, "a bad record must be listed"
    assert all(s.field == fld and reason in s.reason for s in ds.skipped)
    assert ds.skipped[0].record == record.strip("'")
    if record.startswith("data["):  # a broken container drops all of its questions as one entry
        assert [e.id for e in ds.examples] == ["q1", "q2", "q3"]
    else:
        assert len(ds.examples) + len(ds.skipped) == 5
    good = {e.id: e for e in _expected(_articles())}
    assert all(good.get(e.id) == e for e in ds.examples)


def test_exact_misalignment_message(tmp_path: Path) -> None:
    arts = _articles()
    _shift_q2(arts)
    path = _write_json(tmp_path / "dev.json", _squad(arts))
    start = CTX1.index("Carolina Panthers") + 1
    with pytest.raises(DataError) as info:
        load_dataset_file(path)
    assert str(info.value) == (
        f"{path}: record 'q2' field 'answers[0].answer_start': text 'Carolina Panthers' not found at {start} "
        f"(context has {CTX1[start : start + 17]!r}); it first occurs at {start - 1}"
    )


def test_skip_policy_counts_and_summary(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    arts = _articles()
    _shift_q2(arts)
    _qa(arts, "q3").pop("question")
    _qa(arts, "q5")["id"] = "q1"
    path = _write_json(tmp_path / "dev.json", _squad(arts))
    with caplog.at_level(logging.WARNING, logger="tasks.core.data"):
        ds = load_dataset_file(path, policy="skip")
    assert [e.id for e in ds.examples] == ["q1", "q4"]
    assert [(s.record, s.field) for s in ds.skipped] == [
        ("q2", "answers[0].answer_start"),
        ("q3", "question"),
        ("q1", "id"),
    ]
    assert dataset_summary(ds)["skipped"] == 3
    assert str(ds.skipped[1]) == "record 'q3' field 'question': missing"
    assert "skipped 3 invalid record(s)" in caplog.text
    # every record bad → an error, not an empty dataset
    for qa in (qa for a in arts for p in a["paragraphs"] for qa in p["qas"]):
        qa["question"] = ""
    with pytest.raises(DataError, match=r"no valid records \(5 skipped; first: record 'q1' field 'question'"):
        load_dataset_file(_write_json(path, _squad(arts)), policy="skip")


# ----------------------------------------------------------------------------------------------------
# Flat-format record errors (line numbers where the format has lines)
# ----------------------------------------------------------------------------------------------------


def test_flat_record_errors(tmp_path: Path) -> None:
    records = _flat(_articles(), hf_form=True)
    records[1]["answers"] = {"text": ["a", "b"], "answer_start": [0]}
    path = _write_jsonl(tmp_path / "x.jsonl", records)
    with pytest.raises(DataError, match=rf"^{path}:2: record 'q2' field 'answers': 2 texts but 1 answer_start"):
        load_dataset_file(path)

    records = _flat(_articles(), hf_form=True)
    records[2]["answers"]["answer_start"][0] += 2
    path = _write_json(tmp_path / "x.json", records)
    with pytest.raises(DataError, match=rf"^{path}: record 'q3' field 'answers.answer_start\[0\]': text"):
        load_dataset_file(path)

    path = tmp_path / "y.jsonl"
    path.write_text(json.dumps(_flat(_articles(), hf_form=True)[0]) + '\n\n["not", "an", "object"]\n')
    with pytest.raises(DataError, match=rf"^{path}:3: record #1 field 'record': expected an object, got array"):
        load_dataset_file(path)


def test_csv_record_errors(tmp_path: Path) -> None:
    header = "id,title,context,question,answers\n"
    good = f'q1,T,"{CTX3}",Where?,"[{{""text"": ""Smiljan"", ""answer_start"": 18}}]"\n'
    path = tmp_path / "bad.csv"
    path.write_text(header + good + 'q2,T,ctx,Q?,"[{""text"": oops}]"\n', encoding="utf-8")
    # CTX3 has a newline inside the quoted cell, so the second record starts on line 4
    with pytest.raises(DataError, match=rf"^{path}:4: record 'q2' field 'answers': not valid JSON"):
        load_dataset_file(path)
    path.write_text(header + good + "q2,T,ctx\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"^{path}:4: record #1 field 'row': has 3 fields, the header has 5"):
        load_dataset_file(path)
    path.write_text("id,context,question,answers,is_impossible\nq1,ctx,Q?,[],maybe\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"record 'q1' field 'is_impossible': expected true/false, got 'maybe'"):
        load_dataset_file(path)
    path.write_text("id,context,question,answers,is_impossible\nq1,ctx,Q?,,TRUE\n", encoding="utf-8")
    assert load_dataset_file(path).examples[0].is_impossible
    path.write_text("id,context,question\nq1,ctx,Q?\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"column\(s\) 'answers' not found in the header \(columns: id, context"):
        load_dataset_file(path)


# ----------------------------------------------------------------------------------------------------
# File-level errors: one line, no chained json/Unicode traceback
# ----------------------------------------------------------------------------------------------------


def _file_error(path: Path) -> str:
    with pytest.raises(DataError) as info:
        load_dataset_file(path)
    err = info.value
    msg = str(err)
    assert str(path) in msg and "\n" not in msg, msg
    chained = err.__cause__ is not None or (err.__context__ is not None and not err.__suppress_context__)
    assert not chained, "the json/Unicode error must not be chained"
    return msg


def test_malformed_and_truncated_json(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"version": "1.1",\n "data": [\n   {"title": "x",, "paragraphs": []}]}')
    assert "invalid JSON at line 3 column 18" in _file_error(path)
    full = json.dumps(_squad(_articles()), indent=1)
    path.write_text(full[: len(full) // 2])
    msg = _file_error(path)
    assert "invalid JSON at line" in msg and "looks truncated" in msg
    path.write_text(full[: full.index("Smiljan") + 3])  # cut inside a string
    assert "Unterminated string" in _file_error(path)
    path.write_text(json.dumps(_flat(_articles(), hf_form=True)[0]) + "\n{broken\n")
    assert f"{path}:2: invalid JSON at column 2" in _file_error(path)  # sniffed as JSON Lines
    one = json.dumps(_flat(_articles(), hf_form=True)[3]) + "\n"
    path.write_text(one)  # a one-line JSON Lines file named .json is one record
    assert [e.id for e in load_dataset_file(path).examples] == ["q4"]
    path.write_text(one + "{broken\n")
    jsonl = path.rename(tmp_path / "bad.jsonl")
    assert f"{jsonl}:2: invalid JSON at column 2" in _file_error(jsonl)


def test_non_utf8_bytes(tmp_path: Path) -> None:
    good = json.dumps(_squad(_articles())).encode()
    offset = good.index(b"Smiljan")
    path = tmp_path / "latin1.json"
    path.write_bytes(good[:offset] + b"\xe9" + good[offset:])
    msg = _file_error(path)
    assert f"not valid UTF-8 at byte {offset} (line 1)" in msg
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"id,context,question,answers\nq1,caf" + b"\xe9,Q?,[]\n")
    assert "not valid UTF-8 at byte 34 (line 2)" in _file_error(path)


def test_missing_empty_and_unreadable_files(tmp_path: Path) -> None:
    assert _file_error(tmp_path / "nope.json").endswith("nope.json: file not found")
    for content in (b"", b"  \n\t\n"):
        (tmp_path / "empty.jsonl").write_bytes(content)
        assert "file is empty" in _file_error(tmp_path / "empty.jsonl")
    (tmp_path / "empty.json.gz").write_bytes(gzip.compress(b""))
    assert "file is empty after decompression" in _file_error(tmp_path / "empty.json.gz")
    (tmp_path / "cut.json.gz").write_bytes(gzip.compress(json.dumps(_squad(_articles())).encode())[:200])
    assert "not a valid gzip file" in _file_error(tmp_path / "cut.json.gz")
    (tmp_path / "list.json").write_text("[]")
    assert "contains no examples" in _file_error(tmp_path / "list.json")
    (tmp_path / "str.json").write_text('"hello"')
    assert "expected SQuAD JSON" in _file_error(tmp_path / "str.json")
    (tmp_path / "obj.json").write_text('{"rows": []}')
    assert "got a JSON object with keys rows" in _file_error(tmp_path / "obj.json")
    (tmp_path / "data.json").write_text('{"version": "1.1", "data": {}}')
    assert "field 'data': expected an array, got object" in _file_error(tmp_path / "data.json")
    (tmp_path / "notes.txt").write_text("hello world\n")
    assert "unrecognised format" in _file_error(tmp_path / "notes.txt")
    (tmp_path / "plain_dir").mkdir()
    assert "not a Hugging Face datasets save_to_disk directory" in _file_error(tmp_path / "plain_dir")


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="policy"):
        load_dataset_file("x.json", policy="ignore")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_samples"):
        load_dataset_file("x.json", max_samples=-1)


# ----------------------------------------------------------------------------------------------------
# max_samples, Hugging Face directories
# ----------------------------------------------------------------------------------------------------


def test_max_samples_keeps_first_n_in_file_order(tmp_path: Path) -> None:
    path = _write_json(tmp_path / "dev.json", _squad(_articles()))
    assert [e.id for e in load_dataset_file(path, max_samples=3).examples] == ["q1", "q2", "q3"]
    assert len(load_dataset_file(path, max_samples=100)) == 5
    assert len(load_dataset_file(path, max_samples=0)) == 0
    # the version is detected over the whole file, not only the kept examples
    records = _flat(_articles(), hf_form=True)
    records[4]["answers"] = []
    flat = load_dataset_file(_write_jsonl(tmp_path / "x.jsonl", records), max_samples=2)
    assert (flat.version, [e.id for e in flat.examples]) == ("2.0", ["q1", "q2"])
    # with skip, the first N *valid* examples are kept
    arts = _articles()
    _shift_q2(arts)
    skipped = load_dataset_file(_write_json(tmp_path / "s.json", _squad(arts)), policy="skip", max_samples=2)
    assert [e.id for e in skipped.examples] == ["q1", "q3"]


def test_hf_dataset_dict_directory(tmp_path: Path) -> None:
    import datasets

    records = _flat(_v2_articles(), hf_form=True)
    for r in records:
        r.pop("is_impossible", None)
    dd = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_list(records[:2]),
            "validation": datasets.Dataset.from_list(records),
        }
    )
    dd.save_to_disk(str(tmp_path / "dd"))
    ds = load_hf_dataset(tmp_path / "dd", "validation")
    assert ds.version == "2.0" and ds.source == f"{tmp_path / 'dd'}[validation]"
    expected = [
        Example(e.id, e.title, e.context, e.question, e.answers, e.is_impossible) for e in _expected(_v2_articles())
    ]
    assert ds.examples == expected
    assert [e.id for e in load_hf_dataset(tmp_path / "dd", "train", max_samples=1).examples] == ["q1"]
    with pytest.raises(DataError, match=r"split 'test' not found; available splits: train, validation"):
        load_hf_dataset(tmp_path / "dd", "test")
    with pytest.raises(DataError, match=r"no split given; available splits: train, validation"):
        load_dataset_file(tmp_path / "dd")
    renamed = datasets.Dataset.from_list(records).rename_column("question", "query")
    renamed.save_to_disk(str(tmp_path / "renamed"))
    with pytest.raises(DataError, match=r"column\(s\) 'question' not found"):
        load_hf_dataset(tmp_path / "renamed")
    assert len(load_hf_dataset(tmp_path / "renamed", columns=ColumnMap(question="query"))) == 6


# ----------------------------------------------------------------------------------------------------
# split_by_article
# ----------------------------------------------------------------------------------------------------


def _many_articles(n: int = 20) -> QADataset:
    examples = []
    for a in range(n):
        context = f"Article {a} text about topic {a}."
        for q in range(1 + a % 5):
            examples.append(Example(f"a{a}q{q}", f"Title {a}", context, f"Question {q}?", (Answer("Article", 0),)))
    return QADataset(examples, "1.1", "synthetic")


def test_split_by_article_is_deterministic_disjoint_and_ordered() -> None:
    ds = _many_articles()
    train, evals = split_by_article(ds, 0.25, seed=13)
    again = split_by_article(ds, 0.25, seed=13)
    assert (train.examples, evals.examples) == (again[0].examples, again[1].examples)
    train_titles = {e.title for e in train.examples}
    eval_titles = {e.title for e in evals.examples}
    assert train_titles and eval_titles and not train_titles & eval_titles
    assert len(train) + len(evals) == len(ds)
    ids = {e.id for e in evals.examples}
    assert [e for e in ds.examples if e.id in ids] == evals.examples
    assert [e for e in ds.examples if e.id not in ids] == train.examples
    assert abs(len(evals) / len(ds) - 0.25) <= 5 / len(ds)  # within one (largest) article of the target
    assert train.version == evals.version == "1.1"
    splits = {tuple(sorted(e.title for e in split_by_article(ds, 0.25, seed=s)[1].examples)) for s in range(6)}
    assert len(splits) > 1, "different seeds should give different splits"


def test_split_groups_untitled_examples_by_context_and_rejects_bad_input() -> None:
    ds = _many_articles(6)
    untitled = QADataset([Example(e.id, "", e.context, e.question, e.answers) for e in ds.examples], "1.1", "u")
    train, evals = split_by_article(untitled, 0.5, seed=0)
    assert not {e.context for e in train.examples} & {e.context for e in evals.examples}
    with pytest.raises(ValueError, match="eval_fraction"):
        split_by_article(ds, 1.0, seed=0)
    one = QADataset(ds.examples[:1], "1.1", "one")
    with pytest.raises(ValueError, match="1 article"):
        split_by_article(one, 0.5, seed=0)


# ----------------------------------------------------------------------------------------------------
# tasks.core.io
# ----------------------------------------------------------------------------------------------------


def test_write_json_atomic_and_bytes(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "dir" / "m.json"
    assert write_json_atomic({"é": [1, 2]}, target, indent=2) == target
    assert target.read_text(encoding="utf-8") == '{\n  "é": [\n    1,\n    2\n  ]\n}\n'
    write_bytes_atomic(b"new", target)
    assert target.read_bytes() == b"new"
    assert os.listdir(target.parent) == ["m.json"]
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_atomic_path_keeps_old_file_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "model.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="boom"), atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and not tmp.exists()
        tmp.write_bytes(b"half")
        raise RuntimeError("boom")
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["model.bin"]
    with pytest.raises(FileNotFoundError, match="nothing was written"), atomic_path(target):
        pass
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["model.bin"]
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"new")
        assert target.read_bytes() == b"old"  # not visible until the block succeeds
    assert target.read_bytes() == b"new" and os.listdir(tmp_path) == ["model.bin"]


# ----------------------------------------------------------------------------------------------------
# Bundled sample and real shared data
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "articles", "questions", "unanswerable", "version"),
    [
        ("squad-v1.1-sample-train.json", 12, 4624, 0, "1.1"),
        ("squad-v1.1-sample-dev.json", 3, 1169, 0, "1.1"),
        ("squad-v2.0-sample-dev.json", 3, 950, 477, "2.0"),
    ],
)
def test_bundled_sample(name: str, articles: int, questions: int, unanswerable: int, version: str) -> None:
    summary = dataset_summary(load_dataset_file(SAMPLE / name))
    assert summary == {
        "articles": articles,
        "questions": questions,
        "answerable": questions - unanswerable,
        "unanswerable": unanswerable,
        "version": version,
        "skipped": 0,
        "answers_trimmed": 0,
    }
    readme = (SAMPLE / "README.md").read_text(encoding="utf-8")
    assert "CC BY-SA 4.0" in readme and "https://rajpurkar.github.io/SQuAD-explorer/" in readme
    assert name in readme


@pytest.mark.shared_data
@pytest.mark.skipif(not SHARED.exists(), reason="../shared/data absent")
@pytest.mark.parametrize(
    ("rel", "articles", "questions", "unanswerable", "version"),
    [
        ("squad-v1.1/dev-v1.1.json", 48, 10570, 0, "1.1"),
        ("squad-v2.0/dev-v2.0.json", 35, 11873, 5945, "2.0"),
        ("squad-v1.1/train-v1.1.json", 442, 87599, 0, "1.1"),  # rebuilt: answer_start = first occurrence
    ],
)
def test_real_squad_files(rel: str, articles: int, questions: int, unanswerable: int, version: str) -> None:
    ds = load_dataset_file(SHARED / rel)
    summary = dataset_summary(ds)
    assert (summary["articles"], summary["questions"], summary["unanswerable"]) == (
        articles,
        questions,
        unanswerable,
    )
    assert summary["version"] == version and summary["skipped"] == 0
    if version == "2.0":
        train, evals = split_by_article(ds, 0.2, seed=0)
        assert not {e.title for e in train.examples} & {e.title for e in evals.examples}
        assert 0.1 < len(evals) / len(ds) < 0.3
        assert all(not e.answers for e in ds.examples if e.is_impossible)


def test_skipped_record_str() -> None:
    assert str(SkippedRecord("#4", "id", "missing")) == "record #4 field 'id': missing"
    assert str(SkippedRecord("abc", "question", "empty question")) == "record 'abc' field 'question': empty question"
