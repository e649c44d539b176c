"""Multi-node training on torchrun's own rendezvous, two "nodes" as two launchers on localhost (c10d, gloo):
the same weights and loss as one node with two workers."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest
from safetensors.numpy import load_file

from tasks.core.artifacts import read_result
from tests.test_train import run_env, train_argv

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def weights(out: Path) -> dict:
    return load_file(str(out / "model" / "model.safetensors"))


def test_two_nodes_train_the_same_model_as_one_node_with_two_workers(tiny_bert_dir: Path, tmp_path: Path) -> None:
    budget = ("--max_steps", "4", "--save_steps", "2", "--seed", "7")
    one = subprocess.run(train_argv(tiny_bert_dir, tmp_path / "one", *budget, "--nproc_per_node", "2"),
                         env=run_env(), capture_output=True, text=True, timeout=600)  # fmt: skip
    assert one.returncode == 0, one.stderr[-3000:]

    rendezvous = ("--nnodes", "2", "--nproc_per_node", "1", "--rdzv_backend", "c10d",
                  "--rdzv_endpoint", f"127.0.0.1:{free_port()}", "--rdzv_id", "qaflow-test")  # fmt: skip
    nodes = [
        subprocess.Popen(
            train_argv(tiny_bert_dir, tmp_path / "two", *budget, *rendezvous),
            env=run_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for _ in range(2)
    ]
    outputs = [node.communicate(timeout=600) for node in nodes]
    for node, (_, err) in zip(nodes, outputs, strict=True):
        assert node.returncode == 0, err[-3000:]
    two, single = (
        read_result(tmp_path / "two" / "train_result.json"),
        read_result(tmp_path / "one" / "train_result.json"),
    )
    assert two.device.world_size == single.device.world_size == 2
    assert two.metrics["train_loss"] == pytest.approx(single.metrics["train_loss"], rel=1e-6)
    w_two, w_one = weights(tmp_path / "two"), weights(tmp_path / "one")
    assert w_two.keys() == w_one.keys()
    for name in w_one:
        assert abs(w_two[name] - w_one[name]).max() <= 1e-6, name
