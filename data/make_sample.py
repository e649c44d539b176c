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

README = """# Bundled SQuAD sample

Small subsets of SQuAD for the demo and the tests, made by `data/make_sample.py` (deterministic: rerun it to
get the same bytes). Each file keeps the source's `version` and its first N articles in file order, with all
their paragraphs and questions unchanged.

| file | source | articles | questions | unanswerable | bytes | sha256 |
|---|---|---|---|---|---|---|
{rows}

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
    write_bytes_atomic(README.format(rows="\n".join(rows)).encode("utf-8"), args.out / "README.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
