"""`qaflow tune` without training: the tune section's checks, search space, resume hygiene, pruning, CLI errors."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
import torch
import yaml

from flows.cli import main
from tasks.core.config import ConfigError, TrackingConfig, load_config
from tasks.pipeline import tuning
from tasks.pipeline.runplan import run_key
from tasks.tracking.tracker import Tracker
from tests.conftest import REPO_ROOT

SAMPLE = REPO_ROOT / "data" / "sample"

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"tune.n_trials": 0}, "tune.n_trials: 0 must be >= 1"),
        ({"tune.timeout_s": 0}, "tune.timeout_s: 0.0 must be > 0"),
        ({"tune.metric": "loss"}, "tune.metric: 'loss' is not one of"),
        ({"tune.pruner": "hyperband"}, "tune.pruner: 'hyperband' is not one of"),
        ({"tune.learning_rate_range": "[1e-4, 1e-5]"}, "must be [low, high] with low <= high"),
        ({"tune.learning_rate_range": "[0, 1e-4]"}, "must be > 0 (log scale)"),
        ({"tune.epochs_range": "[0, 2]"}, "tune.epochs_range: [0, 2] must lie >= 1"),
        ({"tune.warmup_ratio_range": "[0.0, 1.0]"}, "must lie >= 0 and < 1"),
        ({"tune.batch_size_choices": "[]"}, "tune.batch_size_choices: [] must be one or more sizes >= 1"),
        ({"tune.window_choices": "[[128, 128]]"}, "tune.window_choices: [128, 128] must be [max_seq_length >= 8"),
        ({"tune.window_choices": "[[128]]"}, "tune.window_choices: [128] must be"),
        ({"tune.study_name": "../x"}, "tune.study_name: '../x' must be letters"),
    ],
)
def test_bad_tune_settings_fail_in_one_line(override: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, override)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_the_tune_section_is_not_part_of_the_run_key() -> None:
    base = load_config(None)
    assert run_key(base, "v1") == run_key(load_config(None, {"tune.n_trials": 99, "tune.metric": "exact_match"}), "v1")


def test_tune_refuses_what_it_would_ignore() -> None:
    cfg = load_config(None)
    with pytest.raises(ConfigError, match="learning_rate is searched by tune"):
        tuning.check_tunable(cfg, {"learning_rate": "1e-4"})
    with pytest.raises(ConfigError, match="output_dir is set by tune"):
        tuning.check_tunable(cfg, {"train.output_dir": "x"})
    with pytest.raises(ConfigError, match="train.max_steps: 5 must be -1 for tune"):
        tuning.check_tunable(load_config(None, {"max_steps": 5}), {})
    with pytest.raises(ConfigError, match="train.eval_strategy: tune scores each epoch itself"):
        tuning.check_tunable(load_config(None, {"eval_strategy": "epoch"}), {})
    tuning.check_tunable(cfg, {"weight_decay": "0.1"})


def test_suggestions_stay_in_the_space_and_become_the_trial_config() -> None:
    cfg = load_config(None, {"tune.window_choices": "[[96, 32], [64, 24]]", "tune.epochs_range": "[1, 3]"})
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(12):
        trial = study.ask()
        params = tuning.suggest(trial, cfg.tune)
        tcfg = tuning.trial_config(cfg, params)
        assert 1e-5 <= tcfg.train.learning_rate <= 1e-4
        assert tcfg.train.per_device_train_batch_size in (8, 16, 32)
        assert tcfg.train.num_train_epochs in (1.0, 2.0, 3.0)
        assert 0.0 <= tcfg.train.warmup_ratio <= 0.2
        assert [tcfg.features.max_seq_length, tcfg.features.doc_stride] in ([96, 32], [64, 24])
        assert cfg.train.learning_rate == 3e-5 and cfg.features.max_seq_length == 384  # base config untouched
        study.tell(trial, 0.0)


def test_metric_value_reads_v1_and_v2_names() -> None:
    assert tuning.metric_value({"exact_match": 40.0, "f1": 50.0}, "exact_match") == 40.0
    assert tuning.metric_value({"exact": 30.0, "f1": 45.0}, "exact_match") == 30.0
    assert tuning.metric_value({"exact": 30.0, "f1": 45.0}, "f1") == 45.0


def test_a_killed_search_fails_and_requeues_its_running_trial(tmp_path: Path) -> None:
    tune = load_config(None, {"tune.study_name": "s"}).tune
    study = tuning.open_study(tune, tmp_path)
    done = study.ask()
    tuning.suggest(done, tune)
    study.tell(done, 10.0)
    interrupted = study.ask()
    params = tuning.suggest(interrupted, tune)  # ... and the process dies here

    resumed = tuning.open_study(tune, tmp_path)
    tracker = Tracker.from_config(TrackingConfig(), tmp_path)
    assert tuning.recover_interrupted(tracker, resumed) == [interrupted.number]
    assert not tracker.store_exists()  # the trial had no run yet: nothing to mark
    states = [t.state for t in resumed.get_trials()]
    assert states == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL, optuna.trial.TrialState.WAITING]
    assert tuning.finished_trials(resumed) == 1
    retry = resumed.ask()
    assert retry.user_attrs["retry_of"] == interrupted.number
    assert tuning.suggest(retry, tune) == params  # the queued trial runs with the interrupted trial's parameters


def test_a_resumed_study_does_not_replay_its_first_suggestions(tmp_path: Path) -> None:
    tune = load_config(None, {"tune.study_name": "s"}).tune
    first = tuning.open_study(tune, tmp_path)
    trial = first.ask()
    original = tuning.suggest(trial, tune)
    first.tell(trial, 1.0)
    resumed = tuning.open_study(tune, tmp_path)
    assert tuning.suggest(resumed.ask(), tune) != original


def test_a_study_keeps_its_direction(tmp_path: Path) -> None:
    tuning.open_study(load_config(None, {"tune.study_name": "s"}).tune, tmp_path)
    with pytest.raises(ConfigError, match="tune.direction: study s was created to maximize"):
        tuning.open_study(load_config(None, {"tune.study_name": "s", "tune.direction": "minimize"}).tune, tmp_path)


def pruning_study() -> optuna.Study:
    """One finished trial that scored 50 after epoch 1; the median pruner judges from the first finished trial."""
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.MedianPruner(n_startup_trials=1))
    earlier = study.ask()
    earlier.report(50.0, 1)
    study.tell(earlier, 60.0)
    return study


def epoch_end(report: tuning.PruningReport, epoch: float, model: torch.nn.Module) -> None:
    report.on_epoch_end(None, SimpleNamespace(epoch=epoch), None, model=model)


def test_the_pruning_report_stops_a_trial_below_the_median() -> None:
    study, model = pruning_study(), torch.nn.Linear(2, 2)
    report = tuning.PruningReport(study.ask(), lambda m: (m.eval(), 10.0)[1], epochs=3)
    with pytest.raises(optuna.TrialPruned, match="epoch 1: 10.00"):
        epoch_end(report, 1.0, model)
    assert report.reports == {1: 10.0} and model.training  # the model goes back to training mode


def test_the_pruning_report_lets_a_good_trial_go_on_and_skips_the_last_epoch() -> None:
    study, scored = pruning_study(), []
    report = tuning.PruningReport(study.ask(), lambda m: scored.append(1) or 70.0, epochs=2)
    epoch_end(report, 1.0, torch.nn.Linear(2, 2))
    epoch_end(report, 2.0, torch.nn.Linear(2, 2))  # the final score follows training: no second evaluation
    assert report.reports == {1: 70.0} and len(scored) == 1


def write_params(path: Path, **tune) -> Path:
    path.write_text(yaml.safe_dump({"tune": tune}))
    return path


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--learning_rate", "1e-4"], "qaflow tune: error: override: learning_rate is searched by tune"),
        (["--n_trials", "0"], "qaflow tune: error: tune.n_trials: 0 must be >= 1"),
        (["--max_steps", "3"], "qaflow tune: error: train.max_steps: 3 must be -1 for tune"),
        (["--train_file", "missing.json"], "qaflow tune: error:"),
        (
            [
                "--train_file",
                str(SAMPLE / "squad-v1.1-sample-train.json"),
                "--validation_file",
                str(SAMPLE / "squad-v1.1-sample-dev.json"),
                "--window_choices",
                "[[128, 48], [24, 8]]",
                "--max_train_samples",
                "40",
                "--max_eval_samples",
                "20",
            ],
            "qaflow tune: error: ",
        ),
    ],
)
def test_tune_cli_errors_exit_2_with_one_line(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    write_params(tmp_path / "params.yaml", study_name="cli")
    assert main(["tune", "--root", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(message) and "\n" not in err
    if "--window_choices" in argv:  # the too-small window is refused before any trial, naming the policy
        assert "question_policy" in err
    assert not (tmp_path / "outputs").exists()  # nothing started


def test_features_are_built_once_per_window_and_inputs(tmp_path: Path, tiny_bert_dir: Path) -> None:
    from tasks.core.checkpoints import load_tokenizer
    from tasks.families.registry import resolve_family

    cfg = load_config(
        None,
        {
            "model_name_or_path": str(tiny_bert_dir),
            "max_seq_length": 96,
            "doc_stride": 32,
            "train_file": str(SAMPLE / "squad-v1.1-sample-train.json"),
            "max_train_samples": 8,
            "validation_file": str(SAMPLE / "squad-v1.1-sample-dev.json"),
            "max_eval_samples": 4,
        },
    )
    family, tokenizer = resolve_family("auto", tiny_bert_dir), load_tokenizer(tiny_bert_dir)
    data = tuning.load_tune_data(cfg, tmp_path)
    first = tuning.cached_features(cfg, family, tokenizer, data, tmp_path)
    stamp = first.stat().st_mtime_ns
    assert tuning.cached_features(cfg, family, tokenizer, data, tmp_path) == first
    assert first.stat().st_mtime_ns == stamp  # reused, not rebuilt
    data.train.examples = data.train.examples[:4]  # another data version: other features
    other = tuning.cached_features(cfg, family, tokenizer, data, tmp_path)
    assert other != first and other.exists() and not list(tmp_path.glob("features/.tmp-*"))
    assert len(family.load_train_features(other)) < len(family.load_train_features(first))
