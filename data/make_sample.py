"""Build the bundled SQuAD sample in data/sample/ from the shared SQuAD files (deterministic).

Usage (from the repository root): ``python data/make_sample.py [--shared DIR] [--out DIR]``.
Takes the first N articles (file order, all their questions) of each source file, records unchanged
(re-serialised as compact UTF-8 JSON), validates every output with `tasks.core.data.load_dataset_file`, and
writes README.md with the counts.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tasks.core.data import dataset_summary, load_dataset_file  # noqa: E402
from tasks.core.io import write_bytes_atomic  # noqa: E402

# (output name, source file relative to the shared data directory, number of leading articles)
SAMPLES = [
    ("squad-v1.1-sample-train.json", "squad-v1.1/train-v1.1.json", 12),
    ("squad-v1.1-sample-dev.json", "squad-v1.1/dev-v1.1.json", 3),
    ("squad-v2.0-sample-dev.json", "squad-v2.0/dev-v2.0.json", 3),
]

# A second source for the evaluation suite: SQuAD v2.0 dev's answerable questions, from articles after the v2 dev
# sample's (so neither the train nor any dev sample holds them), written as SQuAD v1.1 (every question answerable)
# (output name, source, articles of the source to skip, at least this many questions)
ANSWERABLE_SLICE = ("squad-v2.0-dev-answerable-slice.json", "squad-v2.0/dev-v2.0.json", 3, 200)

README = """# Bundled SQuAD sample

Small subsets of SQuAD for the demo and the tests, made by `data/make_sample.py` (deterministic: rerun it to
get the same bytes). Each file keeps the source's `version` and its first N articles in file order, with all
their paragraphs and questions unchanged.

| file | source | articles | questions | unanswerable | bytes | sha256 |
|---|---|---|---|---|---|---|
{rows}

`squad-v2.0-dev-answerable-slice.json` is the second member of the demo's evaluation suite (`evaluation.suites`
in params.yaml): the answerable questions (all their gold answers) of whole SQuAD v2.0 dev articles, taken in file
order after the first 3 (those of the v2 dev sample) and skipping any article whose title is in another sample
file, until at least 200 questions; unanswerable questions are dropped and the file is SQuAD v1.1 (version "1.1",
no `is_impossible`), so a v1.1 model is scored on it without null answers. None of its articles is in the train
sample.

Notes: the v1.1 train source is the shared *rebuilt* train-v1.1.json (official titles, contexts, questions and
answer texts; generated ids; `answer_start` = first occurrence of the answer text). The dev files are the
official SQuAD v1.1 and v2.0 dev sets. No SQuAD v2.0 train set is available here: v2 models are trained on a
split of dev-v2.0 by article (`tasks.core.data.split_by_article`).

## Licence and attribution

SQuAD is licensed under CC BY-SA 4.0 (https://creativecommons.org/licenses/by-sa/4.0/); these subsets are
shared under the same licence. Source: https://rajpurkar.github.io/SQuAD-explorer/

- Pranav Rajpurkar, Jian Zhang, Konstantin Lopyrev, Percy Liang. 2016. *SQuAD: 100,000+ Questions for
  Machine Comprehension of Text.* EMNLP 2016.
- Pranav Rajpurkar, Robin Jia, Percy Liang. 2018. *Know What You Don't Know: Unanswerable Questions for
  SQuAD.* ACL 2018.
"""


def make_subset(source: Path, articles: int) -> bytes:
    """The source file with only its first `articles` articles, as compact UTF-8 JSON."""
    data = json.loads(source.read_text(encoding="utf-8"))
    subset = {"version": data["version"], "data": data["data"][:articles]}
    return (json.dumps(subset, ensure_ascii=False) + "\n").encode("utf-8")


def make_answerable_slice(source: Path, skip: int, at_least: int, exclude: set[str]) -> tuple[bytes, list[str]]:
    """Answerable questions of whole articles after the first `skip` (titles in `exclude` skipped), as v1.1."""
    data = json.loads(source.read_text(encoding="utf-8"))
    articles, count = [], 0
    for article in data["data"][skip:]:
        if count >= at_least:
            break
        if article["title"] in exclude:
            continue
        paragraphs = []
        for p in article["paragraphs"]:
            qas = [{"answers": q["answers"], "question": q["question"], "id": q["id"]}
                   for q in p["qas"] if not q.get("is_impossible")]  # fmt: skip
            if qas:
                paragraphs.append({"context": p["context"], "qas": qas})
                count += len(qas)
        articles.append({"title": article["title"], "paragraphs": paragraphs})
    payload = {"version": "1.1", "data": articles}
    return (json.dumps(payload, ensure_ascii=False) + "\n").encode("utf-8"), [a["title"] for a in articles]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=REPO / "data" / "sample")
    args = parser.parse_args(argv)
    rows = []
    for name, rel, articles in SAMPLES:
        payload = make_subset(args.shared / rel, articles)
        target = write_bytes_atomic(payload, args.out / name)
        summary = dataset_summary(load_dataset_file(target))
        assert summary["articles"] == articles, summary
        digest = hashlib.sha256(payload).hexdigest()
        print(f"{name}: {len(payload):,} bytes, {summary['questions']} questions, {articles} articles")
        rows.append(
            f"| {name} | {rel} (first {articles} articles) | {articles} | {summary['questions']:,} | "
            f"{summary['unanswerable']:,} | {len(payload):,} | `{digest[:16]}` |"
        )
    name, rel, skip, at_least = ANSWERABLE_SLICE
    titles = {a["title"] for n, _, _ in SAMPLES for a in json.loads((args.out / n).read_text("utf-8"))["data"]}
    payload, taken = make_answerable_slice(args.shared / rel, skip, at_least, titles)
    target = write_bytes_atomic(payload, args.out / name)
    summary = dataset_summary(load_dataset_file(target))
    print(f"{name}: {len(payload):,} bytes, {summary['questions']} questions, articles {', '.join(taken)}")
    rows.append(
        f"| {name} | {rel} (answerable questions of {', '.join(taken)}) | {len(taken)} | "
        f"{summary['questions']:,} | 0 | {len(payload):,} | `{hashlib.sha256(payload).hexdigest()[:16]}` |"
    )
    write_bytes_atomic(README.format(rows="\n".join(rows)).encode("utf-8"), args.out / "README.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
