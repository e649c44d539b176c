"""Prediction shared by torchrun ranks (`tasks.core.shares`, `tasks.predict`, `tasks.train.ddp.TorchRanks`): two
real gloo processes give the same files, byte for byte, as one process, for every family; each rank runs only its
share of the batches; `qaflow predict --nproc_per_node 2` too. `qaflow train --nproc_per_node 2`'s evaluations and
--do_eval / --do_predict are in test_train_eval."""

from __future__ import annotations

import filecmp
import json
import logging
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

from tasks.core.checkpoints import load_tokenizer
from tasks.core.data import load_dataset_file
from tasks.core.features import FeatureSettings
from tasks.core.postprocess import NBestSettings
from tasks.core.shares import Share, SharedPredictionFailed, put_rows, take_rows, together
from tasks.core.specs import GenerationSettings, InferenceRecipe
from tasks.families.extractive import ExtractiveFamily
from tasks.families.registry import resolve_family
from tasks.families.seq2seq import Generated
from tasks.predict import predict_examples
from tasks.train.ddp import TorchRanks
from tests.conftest import REPO_ROOT
from tests.tiny_models import SAMPLE_DEV_V1, SAMPLE_DEV_V2, cached_model_dir

CHUNK = 9  # examples per chunk: several chunks, batch counts odd and even, the last chunk small
FILES = ("predictions.json", "nbest_predictions.json", "null_odds.json")


@dataclass(frozen=True)
class Case:
    name: str
    family: str
    model: str  # bert | xlnet | t5
    data: Path
    examples: int
    batch_size: int

    @property
    def v2(self) -> bool:
        return self.data == SAMPLE_DEV_V2

    def recipe(self) -> InferenceRecipe:
        windows = FeatureSettings(max_seq_length=96, doc_stride=32)
        nbest = NBestSettings(n_best_size=5, max_answer_length=20, version_2_with_negative=self.v2)
        generation = GenerationSettings(max_new_tokens=4, num_beams=2)
        return InferenceRecipe(self.family, windows, nbest, generation, batch_size=self.batch_size)


CASES = (
    Case("extractive-v1", "extractive", "bert", SAMPLE_DEV_V1, 30, 4),
    Case("extractive-v2", "extractive", "bert", SAMPLE_DEV_V2, 30, 3),
    Case("beam-v2", "beam", "xlnet", SAMPLE_DEV_V2, 14, 4),
    Case("seq2seq-v2", "seq2seq", "t5", SAMPLE_DEV_V2, 14, 4),
)


class PlanlessFamily(ExtractiveFamily):
    """A plug-in family written before batch plans: under torchrun rank 0 predicts it alone."""

    batches = None


def predict(case: Case, model_dir: Path, out: Path, ranks: TorchRanks | None, family: Any = None):
    family = family or resolve_family(case.family, str(model_dir))
    model, tokenizer = family.load_model(str(model_dir)), load_tokenizer(str(model_dir))
    examples = load_dataset_file(case.data, max_samples=case.examples).examples
    return predict_examples(family, model, tokenizer, examples, case.recipe(), out, chunk_examples=CHUNK, ranks=ranks)


def shared_rank(rank: int, port: int, jobs: list[tuple[Case, Path]], root: Path) -> None:
    """One of two gloo ranks: every case shared, each rank's log lines in root/rank<N>.log."""
    handler = logging.FileHandler(root / f"rank{rank}.log")
    logging.getLogger("tasks").addHandler(handler)
    logging.getLogger("tasks").setLevel(logging.INFO)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        ranks = TorchRanks.current()
        assert ranks is not None and (ranks.rank, ranks.size) == (rank, 2)
        for case, model_dir in jobs:
            run = predict(case, model_dir, root / case.name / "shared", ranks)
            assert (run is None) == (rank != 0)
            if run is not None:
                assert run.metrics["predict_ranks"] == 2.0
        case, model_dir = jobs[0]
        alone = predict(case, model_dir, root / "planless", ranks, PlanlessFamily())
        assert (alone is None) == (rank != 0) and (alone is None or "predict_ranks" not in alone.metrics)
        try:  # a failure on one rank fails both, none waits forever
            together(ranks, lambda: fail_on_rank_one(rank))
        except (ValueError, SharedPredictionFailed) as exc:
            (root / f"failure{rank}.txt").write_text(f"{type(exc).__name__}: {exc}")
    finally:
        dist.destroy_process_group()


def fail_on_rank_one(rank: int) -> int:
    if rank == 1:
        raise ValueError("rank 1 broke")
    return rank


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def model_dirs(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.getbasetemp()
    return {"bert": tiny_bert_dir, "xlnet": cached_model_dir("xlnet", base), "t5": cached_model_dir("t5", base)}


def test_two_ranks_write_the_files_of_one_process_byte_for_byte(model_dirs: dict[str, Path], tmp_path: Path) -> None:
    jobs = [(case, model_dirs[case.model]) for case in CASES]
    mp.spawn(shared_rank, args=(free_port(), jobs, tmp_path), nprocs=2, join=True)
    for case, model_dir in jobs:
        alone = predict(case, model_dir, tmp_path / case.name / "alone", None)
        assert alone is not None
        for name in FILES:
            one, two = tmp_path / case.name / "alone" / name, tmp_path / case.name / "shared" / name
            assert one.exists() == two.exists() == (case.v2 or name != "null_odds.json"), (case.name, name)
            if one.exists():
                assert filecmp.cmp(one, two, shallow=False), f"{case.name}: {name} differs from one process"
        if case.family == "extractive":  # the raw logits too
            shards = sorted((tmp_path / case.name / "alone" / "raw_predictions").glob("*.npz"))
            assert len(shards) == -(-case.examples // CHUNK)
            for shard in shards:
                a, b = np.load(shard), np.load(tmp_path / case.name / "shared" / "raw_predictions" / shard.name)
                assert all(np.array_equal(a[k], b[k]) for k in a.files), shard.name

    # each rank ran only its share: together every window once, both ranks some
    shares = {}
    for rank in (0, 1):
        lines = [line for line in (tmp_path / f"rank{rank}.log").read_text().splitlines() if "the model ran" in line]
        assert len(lines) == len(CASES), lines
        shares[rank] = [int(line.split("the model ran ")[1].split()[0]) for line in lines]
    totals = [int(line.split(" of ")[1].split()[0]) for line in (tmp_path / "rank0.log").read_text().splitlines()
              if "the model ran" in line]  # fmt: skip
    for k in range(len(CASES)):
        assert shares[0][k] + shares[1][k] == totals[k] and shares[0][k] > 0 and shares[1][k] > 0, CASES[k].name
    for name in FILES[:2]:  # the planless family: rank 0 alone, as one process
        assert filecmp.cmp(tmp_path / "planless" / name, tmp_path / CASES[0].name / "alone" / name, shallow=False)
    assert (tmp_path / "failure1.txt").read_text() == "ValueError: rank 1 broke"
    assert (tmp_path / "failure0.txt").read_text() == "SharedPredictionFailed: shared prediction failed on rank 1"


def test_rows_travel_with_their_strings_and_arrays() -> None:
    outputs = Generated(["a", "", "é ü", "xyz"], np.arange(4, dtype=np.float64), None)
    share = Share([np.array([2, 0]), np.array([1]), np.array([3])], size=2)
    assert share.rows(0).tolist() == [2, 0, 3] and share.rows(1).tolist() == [1] and share.n_rows == 4
    parts = take_rows(outputs, share.rows(0), 4)
    target = Generated([""] * 4, np.zeros(4), None)
    put_rows(target, share.rows(0), parts, 4)
    assert target.texts == ["a", "", "é ü", "xyz"] and target.log_prob.tolist() == [0.0, 0.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="not one array row"):
        take_rows(Generated(["a"], np.zeros(2), None), np.array([0]), 2)


def test_one_process_has_no_ranks() -> None:
    assert not dist.is_initialized() and TorchRanks.current() is None


def test_qaflow_predict_on_two_workers_writes_the_files_of_one_process(tiny_bert_dir: Path, tmp_path: Path) -> None:
    argv = ["predict", "--model_dir", str(tiny_bert_dir), "--data", str(SAMPLE_DEV_V2), "--max_predict_samples",
            "20", "--max_seq_length", "96", "--doc_stride", "32", "--per_device_eval_batch_size", "4", "--backend",
            "cpu"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TOKENIZERS_PARALLELISM": "false"}
    printed = {}
    for name, extra in (("alone", []), ("shared", ["--nproc_per_node", "2"])):
        proc = subprocess.run([sys.executable, "-m", "flows.cli", *argv, "--output_dir", str(tmp_path / name), *extra],
                              capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        printed[name] = json.loads(proc.stdout[proc.stdout.index("{") :])
    ran = [int(line.split("the model ran ")[1].split()[0]) for line in proc.stderr.splitlines() if "model ran" in line]
    assert len(ran) == 2 and min(ran) > 0 and sum(ran) == printed["shared"]["predict_features"]
    assert printed["shared"]["predict_ranks"] == 2 and printed["shared"]["metrics"] == printed["alone"]["metrics"]
    for name in (*FILES, "metrics.json"):
        assert filecmp.cmp(tmp_path / "alone" / name, tmp_path / "shared" / name, shallow=False), name
    shards = sorted((tmp_path / "alone" / "raw_predictions").glob("*.npz"))
    assert shards
    for shard in shards:
        a, b = np.load(shard), np.load(tmp_path / "shared" / "raw_predictions" / shard.name)
        assert all(np.array_equal(a[k], b[k]) for k in a.files), shard.name
