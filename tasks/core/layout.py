"""The one owner of the `outputs/` layout: every path a flow or command writes under the checkout.

```
outputs/
  data/<data version>/       snapshot of the DVC stage outputs a run trains on (train.json, eval.json, train.npz, ...)
  runs/<run id>/             one retrain run: params.yaml, train/ (a TrainPaths directory: the model,
                             run_qa's result files, checkpoints/), predict/ (predictions, n-best, null odds,
                             raw_predictions/, metrics.json)
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


# run_qa.py's output directory, as `trainer.save_model()`, `save_state()`, `save_metrics(split)` and its
# post-processing (`prefix` "eval" / "predict") write it; qaflow's own files sit beside them (TrainPaths).
RESULT_SPLITS = ("train", "eval", "predict")
ALL_RESULTS = "all_results.json"
TRAINER_STATE = "trainer_state.json"
MODEL_CARD = "README.md"
TRAIN_RECORD = "train_record.json"
PREDICT_SUMMARY = "predict_summary.json"  # `qaflow predict --nproc_per_node`: rank 0's summary, for the launcher
# files at a TrainPaths root that are a run's outputs, not part of the model (everything else there is the model:
# weights, config, tokenizer files, inference_recipe.json, training_args.bin, the model card)
RUN_OUTPUT_FILES = (
    "*_results.json", TRAINER_STATE, TRAIN_RECORD, "train_features.npz", "ddp_job.json", "ddp_steps.json", "ipu_*",
    *(f"{split}_*" for split in RESULT_SPLITS if split != "train"),
)  # fmt: skip


@dataclass(frozen=True)
class TrainPaths:
    """A training output directory in run_qa.py's layout, with qaflow's extras beside it.

    ```
    <root>/
      config.json, model.safetensors, tokenizer files,   the final model (run_qa: trainer.save_model(output_dir)),
        training_args.bin, inference_recipe.json         the recipe qaflow predicts it with
      trainer_state.json                                 the Trainer's state: log history, best checkpoint, ...
      train_results.json, eval_results.json,             run_qa's metrics per step (trainer.save_metrics), merged
        predict_results.json, all_results.json           into all_results.json
      eval_predictions.json, eval_nbest_predictions.json,  --do_eval / in-training evaluation: run_qa's
        eval_null_odds.json (v2)                         post-processing files (prefix "eval"); qaflow adds
        eval_raw_predictions/, eval_slices.json/.png     raw logits and error slices
      predict_predictions.json, ...                      --do_predict (prefix "predict")
      README.md                                          the model card (written when pushing to the hub)
      checkpoints/checkpoint-N/                          the Trainer's checkpoints (run_qa: at the root)
      train_record.json                                  qaflow's record: metrics, device, resume point, artifacts
      train_features.npz, autotune/, ddp_job.json        `qaflow train`'s features, Inductor logs, the DDP job,
        ddp_steps.json                                   the DDP workers' --do_eval / --do_predict results
    ```
    """

    root: Path

    @property
    def checkpoints_dir(self) -> Path:
        return self.root / "checkpoints"

    @property
    def model_dir(self) -> Path:
        """The final model lives at the root, as run_qa.py's `trainer.save_model(output_dir)` puts it."""
        return self.root

    @property
    def result_file(self) -> Path:
        """qaflow's training record (`tasks.core.artifacts.TrainResult`)."""
        return self.root / TRAIN_RECORD

    @property
    def steps_file(self) -> Path:
        """The --do_eval / --do_predict results DDP workers hand to the launcher (`pipeline.train_eval`)."""
        return self.root / "ddp_steps.json"

    @property
    def state_file(self) -> Path:
        return self.root / TRAINER_STATE

    def results_file(self, split: str) -> Path:
        """run_qa's `{split}_results.json` (train, eval, predict), or `all_results.json` for split "all"."""
        if split == "all":
            return self.root / ALL_RESULTS
        if split not in RESULT_SPLITS:
            raise ValueError(f"no results file for split {split!r} (one of {RESULT_SPLITS} or 'all')")
        return self.root / f"{split}_results.json"

    @property
    def model_card(self) -> Path:
        return self.root / MODEL_CARD

    @property
    def autotune_dir(self) -> Path:
        return self.root / "autotune"

    @property
    def features_file(self) -> Path:
        """Training features built by `qaflow train` outside the DVC pipeline."""
        return self.root / "train_features.npz"


def model_files(directory: Path) -> list[Path]:
    """The files of the model saved in `directory`: its plain files, less a TrainPaths root's run outputs.

    A model directory written elsewhere (a checkpoint, a hub download) has no run outputs: all its files."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(
        path for path in directory.iterdir()
        if path.is_file() and not path.name.startswith(".") and not any(path.match(g) for g in RUN_OUTPUT_FILES)
    )  # fmt: skip


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
