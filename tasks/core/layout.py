"""The one owner of the `outputs/` layout: every path a flow or command writes under the checkout.

```
outputs/
  data/<data version>/       snapshot of the DVC stage outputs a run trains on (train.json, eval.json, train.npz, ...)
  runs/<run id>/             one retrain run: params.yaml, train/ (checkpoints, model/, train_result.json),
                             predict/ (predictions, n-best, null odds, raw_predictions/, metrics.json)
  evaluate/                  `qaflow evaluate`
  promote/<eval data id>/    re-scoring during promotion
  benchmark/<run mode>/      `qaflow benchmark`
  compile_cache/<key>.tar.gz Inductor caches of `qaflow train --torch_compile` runs, by key (tasks/train/compile_cache)
  compare/                   `qaflow compare` report
  tune/<study>/              `qaflow tune`: study.db (the Optuna study), features/ (per window), trial-NNN/ (TrainPaths)
  locks/run-<run key>.lock   held by the process training that run key (+ .owner: host, pid, since)
  run/                       `qaflow train` (the default `train.output_dir`; a TrainPaths directory)
metrics/                     git-tracked, declared in dvc.yaml (`dvc metrics` / `dvc plots` / `dvc exp show`):
  retrain.json               the last trained retrain run: official scores, throughput, data version, run id
  train_history.csv          its Trainer log: step, loss, learning_rate, grad_norm, steps_per_second
```
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

OUTPUTS = "outputs"

# a data snapshot's files: name in the snapshot -> DVC stage output it is copied from (see dvc.yaml)
SNAPSHOT_FILES = {
    "train.json": "data/prepared/train.json",
    "eval.json": "data/prepared/eval.json",
    "data_report.json": "data/prepared/report.json",
    "train.npz": "data/features/train.npz",
    "features_report.json": "data/features/report.json",
}


def outputs_dir(root: Path) -> Path:
    return Path(root) / OUTPUTS


def snapshots_dir(root: Path) -> Path:
    return outputs_dir(root) / "data"


def snapshot_dir(root: Path, data_version: str) -> Path:
    return snapshots_dir(root) / data_version


def evaluate_dir(root: Path) -> Path:
    return outputs_dir(root) / "evaluate"


def promote_dir(root: Path, eval_id: str) -> Path:
    return outputs_dir(root) / "promote" / eval_id


def benchmark_dir(root: Path, mode: str) -> Path:
    return outputs_dir(root) / "benchmark" / mode


def compile_cache_dir(root: Path) -> Path:
    return outputs_dir(root) / "compile_cache"


def compare_dir(root: Path) -> Path:
    return outputs_dir(root) / "compare"


def tune_dir(root: Path, study_name: str) -> Path:
    return outputs_dir(root) / "tune" / study_name


def experiment_metrics_file(root: Path) -> Path:
    return Path(root) / "metrics" / "retrain.json"


def training_history_file(root: Path) -> Path:
    return Path(root) / "metrics" / "train_history.csv"


def run_lock_file(root: Path, run_key: str) -> Path:
    return outputs_dir(root) / "locks" / f"run-{run_key}.lock"


@dataclass(frozen=True)
class TrainPaths:
    """A training output directory: checkpoints/, model/ (the final model), train_result.json, autotune/."""

    root: Path

    @property
    def checkpoints_dir(self) -> Path:
        return self.root / "checkpoints"

    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    @property
    def result_file(self) -> Path:
        return self.root / "train_result.json"

    @property
    def autotune_dir(self) -> Path:
        return self.root / "autotune"

    @property
    def features_file(self) -> Path:
        """Training features built by `qaflow train` outside the DVC pipeline."""
        return self.root / "train_features.npz"


@dataclass(frozen=True)
class RunPaths:
    """Where one retrain run keeps its files: params.yaml, train/ and predict/."""

    run_dir: Path

    @classmethod
    def for_run(cls, root: Path, run_id: str) -> RunPaths:
        return cls(outputs_dir(root) / "runs" / run_id)

    @property
    def params_file(self) -> Path:
        return self.run_dir / "params.yaml"

    @property
    def train(self) -> TrainPaths:
        return TrainPaths(self.run_dir / "train")

    @property
    def predict_dir(self) -> Path:
        return self.run_dir / "predict"

    @property
    def metrics_file(self) -> Path:
        return self.predict_dir / "metrics.json"
