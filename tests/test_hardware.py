"""The hardware seam (tasks/train/hardware.py, tasks/train/backends/): `train.backend` parsed into one backend object
that training, prediction and the families ask; a new backend is one class and one registration."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoConfig, AutoTokenizer

from flows.cli import main
from tasks.core.config import ConfigError, QAFlowConfig, load_config
from tasks.core.data import load_dataset_file
from tasks.core.features import FeatureSettings, prepare_eval_features
from tasks.core.layout import TrainPaths
from tasks.families.extractive import forward_logits
from tasks.families.registry import get_family
from tasks.pipeline.prediction import predict_from_config
from tasks.pipeline.training import train_model
from tasks.train import hardware
from tasks.train.backends.cpu import CPUBackend
from tasks.train.backends.cuda import CUDABackend
from tasks.train.backends.ipu import IPUBackend, IPULauncher
from tasks.train.batching import pad_multiple
from tasks.train.compile_cache import compile_cache_key
from tasks.train.hardware import (
    BackendUnavailableError,
    Launch,
    backend_for,
    inference_backend,
    register,
    resolve_backend,
)
from tasks.train.ipu import IPUUnavailableError
from tasks.train.launchers import InProcessLauncher, TorchrunLauncher
from tasks.train.resources import available_cpu_cores
from tasks.train.trainer import training_arguments
from tests.conftest import REPO_ROOT

SAMPLE = REPO_ROOT / "data" / "sample" / "squad-v1.1-sample-train.json"
DEV = REPO_ROOT / "data" / "sample" / "squad-v1.1-sample-dev.json"
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")


class FakeAccelerator(CPUBackend):
    """A new accelerator as a plug-in would add one: computes on the CPU here, answers as its own hardware would."""

    name = "fake-accel"
    inference_pad_multiple = 16
    precision_pad_multiple = 4
    autocasts = 0  # forward passes in prediction that asked for this backend's mixed precision
    prepared = 0  # training processes set up

    @classmethod
    def present(cls, cfg: QAFlowConfig | None) -> bool:
        return True

    def autocast(self) -> AbstractContextManager[None]:
        FakeAccelerator.autocasts += 1
        return super().autocast()

    def prepare_training_process(self) -> None:
        FakeAccelerator.prepared += 1
        super().prepare_training_process()

    def device_name(self) -> str:
        return "Fake Accelerator X1"


@pytest.fixture
def fake_registered() -> Iterator[type[FakeAccelerator]]:
    """FakeAccelerator registered (auto considers it before the CPU) for one test; the registry restored after."""
    saved = list(hardware.BACKENDS)
    FakeAccelerator.autocasts = FakeAccelerator.prepared = 0
    register(FakeAccelerator)
    yield FakeAccelerator
    hardware.BACKENDS[:] = saved


def test_auto_takes_the_first_present_backend_cuda_then_ipu_then_cpu(fake_registered: type) -> None:
    assert [b.name for b in hardware.BACKENDS] == ["cuda", "ipu", "fake-accel", "cpu"]  # registered before the CPU
    assert resolve_backend("auto") == FakeAccelerator()  # no CUDA, no IPU environment here: the first present
    hardware.BACKENDS.remove(FakeAccelerator)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_backend("auto", load_config(None, {"ipu_python": "/nonexistent/python"})).name == expected
    assert not IPUBackend.present(load_config(None, {"ipu_python": sys.executable}))  # no poptorch, no IPUs


@no_cuda
def test_what_a_backend_cannot_honour_is_one_line() -> None:
    with pytest.raises(BackendUnavailableError) as no_gpu:
        resolve_backend("cuda")
    with pytest.raises(BackendUnavailableError) as unknown:
        resolve_backend("tpu")
    assert "no CUDA device" in str(no_gpu.value) and "--backend cpu" in str(no_gpu.value)
    assert str(unknown.value) == "train.backend: unknown backend 'tpu'; choose one of auto, cpu, cuda, ipu"
    for setting, field in ({"packing": True}, "train.packing"), ({"eval_strategy": "steps"}, "train.eval_strategy"):
        with pytest.raises(ConfigError, match=field) as refused:
            backend_for(load_config(None, {"backend": "ipu", **setting}))
        assert "IPU" in str(refused.value) and "\n" not in str(refused.value)
    assert all("\n" not in str(e.value) for e in (no_gpu, unknown))


def test_each_backend_answers_for_its_hardware() -> None:
    cpu, cuda, ipu = CPUBackend(), CUDABackend(), IPUBackend()
    assert cpu.device == torch.device("cpu") and cuda.device == torch.device("cuda")
    assert (cpu.inference_pad_multiple, cuda.inference_pad_multiple) == (1, 8)
    assert cpu.inference_autocast_dtype is None and cuda.inference_autocast_dtype == torch.bfloat16
    with cpu.autocast():
        assert not torch.is_autocast_enabled("cpu")  # prediction on the CPU runs in float32
    assert cpu.bf16_supported() and not cpu.fp16_supported and cuda.fp16_supported
    assert (cpu.use_cpu, cuda.use_cpu, cpu.pin_memory, cuda.pin_memory) == (True, False, False, True)
    assert (cpu.ddp_backend(1), cpu.ddp_backend(2), cuda.ddp_backend(2)) == (None, "gloo", None)
    assert (cpu.process_group, cuda.process_group) == ("gloo", "nccl")
    assert cuda.cuda_graphs("reduce-overhead") and not cuda.cuda_graphs("max-autotune")
    assert not cpu.cuda_graphs("reduce-overhead")
    assert not cpu.shape_sensitive and cuda.shape_sensitive
    assert int(cpu.worker_environment(2)["OMP_NUM_THREADS"]) >= 1 and cuda.worker_environment(2) == {}
    assert cpu.peak_flops("NVIDIA H100 80GB HBM3") is None and cuda.peak_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert cpu.device_info(2).backend == "cpu" and "cores" in cpu.device_info(2).device_name
    assert cpu.peak_memory_mb() > 0
    # where training runs, and where predictions run
    assert isinstance(cpu.launcher(Launch()), InProcessLauncher) and cpu.launcher(Launch()).trains_here
    assert isinstance(cuda.launcher(Launch(nproc_per_node=2)), TorchrunLauncher)
    assert isinstance(ipu.launcher(Launch()), IPULauncher) and not ipu.launcher(Launch()).trains_here
    assert not ipu.predicts_here
    present = "cuda" if torch.cuda.is_available() else "cpu"
    assert [inference_backend(name).name for name in ("auto", "cpu", "cuda", "ipu")] == [present, "cpu", present,
                                                                                         present]  # fmt: skip


def test_cpu_training_uses_every_core_unless_omp_num_threads_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    """A torchrun worker's share (worker_environment) and a user's OMP_NUM_THREADS are obeyed, not overridden."""
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        torch.set_num_threads(1)
        CPUBackend().prepare_training_process()
        assert torch.get_num_threads() == 1
        monkeypatch.delenv("OMP_NUM_THREADS")
        CPUBackend().prepare_training_process()
        assert torch.get_num_threads() == available_cpu_cores()
    finally:
        torch.set_num_threads(before)


def test_training_arguments_per_backend_are_the_hardware_rules(tmp_path: Path) -> None:
    """What each backend changes in TrainingArguments (the rules the Trainer plumbing once spelled with names)."""
    t = QAFlowConfig().train
    t.bf16, t.fp16 = False, True
    cpu, cuda = training_arguments(t, CPUBackend(), tmp_path), training_arguments(t, CUDABackend(), tmp_path)
    assert (cpu.use_cpu, cpu.fp16, cpu.dataloader_pin_memory) == (True, False, False)  # fp16 is a GPU setting
    assert (cuda.use_cpu, cuda.fp16, cuda.dataloader_pin_memory) == (False, True, True)
    assert cuda.accelerator_config.non_blocking and not cpu.accelerator_config.non_blocking
    t.fp16, t.bf16 = False, True
    assert training_arguments(t, CPUBackend(), tmp_path).bf16  # CPU bf16 through autocast
    assert training_arguments(t, CUDABackend(), tmp_path).bf16 == torch.cuda.is_bf16_supported()
    assert (pad_multiple(t, CPUBackend()), pad_multiple(t, CUDABackend())) == (1, 8)


def test_a_registered_backend_reaches_training_and_prediction_through_config(
    fake_registered: type, tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No module but this test knows the fake: `--backend fake-accel` reaches the Trainer's arguments, the batch
    widths, the compile-cache key, the run's record and the families' forward pass."""
    cfg = load_config(None, {"backend": "fake-accel", "bf16": True})
    backend = backend_for(cfg)
    assert backend == FakeAccelerator()
    assert pad_multiple(cfg.train, backend) == 4  # its own tensor sizes under bf16
    model_config = AutoConfig.from_pretrained(tiny_bert_dir)
    key = compile_cache_key(cfg.train, backend, model_config, width=96, packed_rows=(), packing=False)
    assert (key.fields["backend"], key.fields["device"]) == ("fake-accel", "Fake Accelerator X1")

    # training: `qaflow train --backend fake-accel`
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    argv = ["train", "--params", str(REPO_ROOT / "params.yaml"), "--model_name_or_path", str(tiny_bert_dir),
            "--train_file", str(SAMPLE), "--max_train_samples", "16", "--max_seq_length", "96", "--doc_stride", "32",
            "--per_device_train_batch_size", "4", "--max_steps", "2", "--save_strategy", "no", "--backend",
            "fake-accel", "--output_dir", str(out)]  # fmt: skip
    assert main(argv) == 0
    record = json.loads((out / "train_record.json").read_text())
    assert record["device"]["backend"] == "fake-accel" and record["device"]["device_name"].startswith("Fake Acc")
    assert FakeAccelerator.prepared == 1

    # prediction: `qaflow predict` from the same configuration
    settings = {"validation_file": str(DEV), "max_eval_samples": 12, "max_seq_length": 96, "doc_stride": 32}
    fake = predict_from_config(load_config(None, {**settings, "backend": "fake-accel"}), model_dir=out, data=None,
                               output_dir=tmp_path / "fake", split="eval")  # fmt: skip
    assert FakeAccelerator.autocasts > 0
    on_cpu = predict_from_config(load_config(None, {**settings, "backend": "cpu"}), model_dir=out, data=None,
                                 output_dir=tmp_path / "cpu", split="eval")  # fmt: skip
    assert fake.metrics == on_cpu.metrics  # the same model in float32 on the same CPU: the same answers

    # the families' forward pass pads each batch to the backend's multiple
    model = get_family("extractive").load_model(str(out)).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    examples = load_dataset_file(DEV, max_samples=12).examples
    features = prepare_eval_features(examples, tokenizer, FeatureSettings(max_seq_length=96, doc_stride=32))
    widths: list[int] = []

    def width_of(module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        widths.append(int(kwargs["input_ids"].shape[1]))

    model.register_forward_pre_hook(width_of, with_kwargs=True)
    forward_logits(model, features, 4, FakeAccelerator())
    assert widths and all(w % 16 == 0 or w == 96 for w in widths), widths
    widths.clear()
    forward_logits(model, features, 4, CPUBackend())
    assert any(w % 16 for w in widths), "the CPU trims to the exact width: the test would prove nothing"


@no_cuda
def test_the_ipu_launcher_runs_the_real_checks_and_names_what_is_missing(tiny_bert_dir: Path, tmp_path: Path) -> None:
    """Training with backend ipu goes through the IPU's launcher: its environment check names poptorch (absent here)."""
    cfg = load_config(None, {"backend": "ipu", "model_name_or_path": str(tiny_bert_dir), "ipu_python": sys.executable})
    with pytest.raises(IPUUnavailableError, match="poptorch"):
        train_model(cfg, features_path=tmp_path / "none.npz", data_path=SAMPLE, paths=TrainPaths(tmp_path / "run"))
    assert not (tmp_path / "run" / "ipu_job.json").exists()  # refused before any job was written
