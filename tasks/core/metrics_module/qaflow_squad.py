"""qaflow SQuAD EM/F1 as a Hugging Face `evaluate` metric (configs "v1" and "v2").

Takes the input formats of the Hub `squad` / `squad_v2` metrics and scores with `tasks.core.metrics`, which
matches the official SQuAD scripts exactly. `evaluate.load` copies this file into its module cache before
importing it, so the `tasks` package (qaflow) must be importable there: `pip install -e .` in the qaflow repo,
or put the repo root on PYTHONPATH.
"""

from __future__ import annotations

from typing import Any

import datasets
import evaluate

from tasks.core.metrics import MetricsError, squad_v1_score, squad_v2_score

_DESCRIPTION = """\
SQuAD exact match and token F1, identical to the official evaluate-v1.1.py ("v1") and evaluate-v2.0.py ("v2")
scripts, including the v2.0 HasAns_/NoAns_ breakdown, the no-answer threshold and the best-threshold search.
"""

_CITATION = """\
@inproceedings{rajpurkar-etal-2016-squad,
  title = {{SQuAD}: 100,000+ Questions for Machine Comprehension of Text},
  author = {Rajpurkar, Pranav and Zhang, Jian and Lopyrev, Konstantin and Liang, Percy},
  booktitle = {EMNLP}, year = {2016}}
@inproceedings{rajpurkar-etal-2018-know,
  title = {Know What You Don't Know: Unanswerable Questions for {SQuAD}},
  author = {Rajpurkar, Pranav and Jia, Robin and Liang, Percy},
  booktitle = {ACL}, year = {2018}}
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of {"id": str, "prediction_text": str} and, for "v2" only, optionally
        "no_answer_probability": float (all predictions or none of them).
    references: list of {"id": str, "answers": {"text": list[str], "answer_start": list[int]}};
        an empty "text" list marks an unanswerable (v2) question.
    no_answer_threshold: ("v2") predict no answer where no_answer_probability exceeds it (default 1.0).
Returns:
    "v1": {"exact_match", "f1"} (percent, over all references; a missing prediction scores 0).
    "v2": {"exact", "f1", "total", "HasAns_exact", "HasAns_f1", "HasAns_total", "NoAns_exact", "NoAns_f1",
        "NoAns_total"} (breakdowns only where such questions exist), plus "best_exact", "best_exact_thresh",
        "best_f1", "best_f1_thresh" when no-answer probabilities are given.
        Every reference needs a prediction.
Examples:
    >>> m = evaluate.load("tasks/core/metrics_module/qaflow_squad.py", config_name="v1")
    >>> m.compute(predictions=[{"id": "q", "prediction_text": "the Cat"}],
    ...           references=[{"id": "q", "answers": {"text": ["cat"], "answer_start": [0]}}])
    {'exact_match': 100.0, 'f1': 100.0}
"""

CONFIGS = ("v1", "v2")
NA_PROB = "no_answer_probability"

_PREDICTION = {"id": datasets.Value("string"), "prediction_text": datasets.Value("string")}
_REFERENCE = {
    "id": datasets.Value("string"),
    "answers": datasets.Sequence({"text": datasets.Value("string"), "answer_start": datasets.Value("int32")}),
}


def _features(with_na_prob: bool) -> datasets.Features:
    prediction = dict(_PREDICTION)
    if with_na_prob:
        prediction[NA_PROB] = datasets.Value("float64")  # float64: probabilities reach the scorer unrounded
    return datasets.Features({"predictions": prediction, "references": _REFERENCE})


def _has_na_prob(prediction: Any) -> bool:
    return isinstance(prediction, dict) and NA_PROB in prediction


class QaflowSquad(evaluate.Metric):
    """SQuAD v1.1 / v2.0 metric computed by `tasks.core.metrics` (official-script results)."""

    def _info(self) -> evaluate.MetricInfo:
        if self.config_name not in CONFIGS:
            raise ValueError(
                f"qaflow_squad: config_name must be one of {list(CONFIGS)}, got {self.config_name!r} "
                f'(e.g. evaluate.load(path, config_name="v2"))'
            )
        features: datasets.Features | list[datasets.Features]
        features = _features(False) if self.config_name == "v1" else [_features(True), _features(False)]
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=features,
            reference_urls=["https://rajpurkar.github.io/SQuAD-explorer/"],
        )

    def _infer_feature_from_example(self, example: dict) -> datasets.Features:
        """v2: pick the input format by whether predictions carry no_answer_probability.

        evaluate's own inference tries each format in turn, but a format without the key silently accepts (and
        drops) it, and the format with it fails on a missing key with an uncaught KeyError.
        """
        if isinstance(self.features, datasets.Features):
            return self.features
        return self.features[0] if _has_na_prob(example.get("predictions")) else self.features[1]

    def add_batch(self, *, predictions=None, references=None, **kwargs) -> None:
        """Add a batch; for "v2", no_answer_probability must be on all predictions or on none (so far)."""
        if self.config_name == "v2" and predictions:
            flags = {_has_na_prob(p) for p in predictions}
            if self.selected_feature_format is not None:
                flags.add(NA_PROB in self.selected_feature_format["predictions"])
            if len(flags) > 1:
                raise MetricsError(f"predictions: give '{NA_PROB}' for every prediction or for none of them")
        super().add_batch(predictions=predictions, references=references, **kwargs)

    def _compute(
        self, predictions: list[dict], references: list[dict], no_answer_threshold: float = 1.0
    ) -> dict[str, float | int]:
        preds: dict[str, str] = {}
        for p in predictions:
            if p["id"] in preds:
                raise MetricsError(f"predictions: duplicate prediction for id {p['id']!r}")
            preds[p["id"]] = p["prediction_text"]
        dataset_json = {
            "version": "1.1" if self.config_name == "v1" else "v2.0",
            "data": [_article(references)],
        }
        if self.config_name == "v1":
            return squad_v1_score(dataset_json, preds)
        na_probs = {p["id"]: p[NA_PROB] for p in predictions} if predictions and NA_PROB in predictions[0] else None
        return squad_v2_score(dataset_json, preds, na_probs=na_probs, na_prob_thresh=no_answer_threshold)


def _article(references: list[dict]) -> dict:
    """References in evaluate's format as one article of the raw SQuAD JSON (order kept)."""
    qas = [
        {
            "id": r["id"],
            "answers": [{"text": t} for t in r["answers"]["text"]],  # scoring uses the texts only
        }
        for r in references
    ]
    return {"title": "", "paragraphs": [{"context": "", "qas": qas}]}
