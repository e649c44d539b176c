"""core.progress: a tqdm bar on a terminal, log lines every 10 % elsewhere; used by featurize and predict."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from tqdm.auto import tqdm

from tasks.core.checkpoints import load_tokenizer
from tasks.core.data import load_dataset_file
from tasks.core.features import FeatureSettings, prepare_train_features
from tasks.core.postprocess import NBestSettings
from tasks.core.progress import LogProgress, progress, progress_mode
from tasks.core.specs import InferenceRecipe
from tests.family_helpers import load_model, predict

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample" / "squad-v1.1-sample-dev.json"


def _lines(caplog: pytest.LogCaptureFixture, desc: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(f"{desc}:")]


def test_log_lines_every_tenth_and_at_the_end(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tasks.core.progress")
    with LogProgress(95, "work", "items") as bar:
        for _ in range(95):
            bar.update()
    lines = _lines(caplog, "work")
    assert [int(re.match(r"work: (\d+)/95 items", line).group(1)) for line in lines] == [*range(9, 91, 9), 95]
    assert lines[-1].startswith("work: 95/95 items (100 %")

    caplog.clear()
    with pytest.raises(RuntimeError), LogProgress(10, "cut", "items") as bar:
        bar.update(3)
        raise RuntimeError("stopped")
    assert [line.split(" (")[0] for line in _lines(caplog, "cut")] == ["cut: 3/10 items"]  # no "done" line


def test_mode_follows_the_terminal_and_the_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QAFLOW_PROGRESS", raising=False)
    assert progress_mode() == "log"  # pytest's stderr is not a terminal
    assert isinstance(progress(3, "x"), LogProgress)
    monkeypatch.setenv("QAFLOW_PROGRESS", "bar")
    bar = progress(3, "x")
    assert isinstance(bar, tqdm) and not bar.disable
    bar.close()
    monkeypatch.setenv("QAFLOW_PROGRESS", "off")
    assert progress(3, "x").disable
    monkeypatch.setenv("QAFLOW_PROGRESS", "nonsense")
    assert progress_mode() == "log"


def test_featurize_and_predict_report_progress(
    tiny_bert_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("QAFLOW_PROGRESS", raising=False)
    caplog.set_level(logging.INFO, logger="tasks.core.progress")
    examples = load_dataset_file(SAMPLE, max_samples=30).examples
    tokenizer = load_tokenizer(str(tiny_bert_dir))
    windows = FeatureSettings(max_seq_length=96, doc_stride=32)
    prepare_train_features(examples, tokenizer, windows, batch_size=10)
    done = [line.split(" examples")[0] for line in _lines(caplog, "featurize train")]
    assert done == ["featurize train: 10/30", "featurize train: 20/30", "featurize train: 30/30"]
    recipe = InferenceRecipe(family="extractive", windows=windows, nbest=NBestSettings(), batch_size=8)
    model = load_model("extractive", tiny_bert_dir)
    predict("extractive", model, tokenizer, examples, recipe, tmp_path / "pred", chunk_examples=15)
    done = [line.split(" examples")[0] for line in _lines(caplog, "predict (extractive)")]
    assert done == ["predict (extractive): 15/30", "predict (extractive): 30/30"]
