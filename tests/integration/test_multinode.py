"""Multi-node training on torchrun's own rendezvous, two "nodes" as two launchers on localhost (c10d, gloo):
the same weights and loss as one node with two workers, and --do_eval shared by the nodes' workers; a killed
worker is restarted and training resumes (the restarted group joins under its own store keys:
`tasks.train.ddp.join_worker_group`)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from safetensors.numpy import load_file

from tasks.core.artifacts import read_result
from tests.test_train import DEV, run_env, train_argv

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def weights(out: Path) -> dict:
    return load_file(str(out / "model.safetensors"))


def test_two_nodes_train_the_same_model_as_one_node_with_two_workers(tiny_bert_dir: Path, tmp_path: Path) -> None:
    budget = ("--max_steps", "4", "--save_steps", "2", "--seed", "7")
    # Bitwise-equal training needs the same threads per worker in both layouts: left alone, each one-worker node
    # would take every core and the two-worker node half of them (the CPU backend's share), and float sums
    # over a different number of threads round differently.
    env = {**run_env(), "OMP_NUM_THREADS": "1"}
    one = subprocess.run(train_argv(tiny_bert_dir, tmp_path / "one", *budget, "--nproc_per_node", "2"),
                         env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert one.returncode == 0, one.stderr[-3000:]

    rendezvous = ("--nnodes", "2", "--nproc_per_node", "1", "--rdzv_backend", "c10d",
                  "--rdzv_endpoint", f"127.0.0.1:{free_port()}", "--rdzv_id", "qaflow-test")  # fmt: skip
    # each node's worker runs its share of --do_eval
    shared_eval = ("--do_train", "--do_eval", "--validation_file", str(DEV), "--max_eval_samples", "20",
                   "--per_device_eval_batch_size", "4")  # fmt: skip
    nodes = [
        subprocess.Popen(
            train_argv(tiny_bert_dir, tmp_path / "two", *budget, *rendezvous, *shared_eval),
            env=env,
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
        read_result(tmp_path / "two" / "train_record.json"),
        read_result(tmp_path / "one" / "train_record.json"),
    )
    assert two.device.world_size == single.device.world_size == 2
    assert two.metrics["train_loss"] == pytest.approx(single.metrics["train_loss"], rel=1e-6)
    w_two, w_one = weights(tmp_path / "two"), weights(tmp_path / "one")
    assert w_two.keys() == w_one.keys()
    for name in w_one:
        assert abs(w_two[name] - w_one[name]).max() <= 1e-6, name
    ran = [int(line.split("the model ran ")[1].split()[0]) for _, err in outputs for line in err.splitlines()
           if "the model ran" in line]  # fmt: skip
    evaluated = json.loads((tmp_path / "two" / "eval_results.json").read_text())
    assert len(ran) == 2 and min(ran) > 0 and sum(ran) == evaluated["eval_samples"], ran
    assert (tmp_path / "two" / "eval_predictions.json").is_file()


def _worker_pids(root: int) -> list[int]:
    """The DDP worker processes among `root`'s descendants (torchrun puts its workers in their own sessions)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    descendants, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - descendants
        descendants |= frontier
    workers = []
    for pid in descendants:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"tasks.pipeline.ddp_worker" in cmdline and b"torch.distributed.run" not in cmdline:
            workers.append(pid)
    return workers


def test_a_killed_worker_is_restarted_and_training_resumes(tiny_bert_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "restart"
    argv = train_argv(tiny_bert_dir, out, "--max_steps", "10", "--save_steps", "2", "--nproc_per_node", "2",
                      "--max_restarts", "1")  # fmt: skip
    launcher = subprocess.Popen(argv, env=run_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 600
    while not (out / "checkpoints" / "checkpoint-4" / "trainer_state.json").exists():
        assert launcher.poll() is None and time.monotonic() < deadline, "training ended before a worker was killed"
        time.sleep(0.1)
    victims = _worker_pids(launcher.pid)
    assert victims, "no worker found"
    os.kill(victims[0], signal.SIGKILL)
    _, err = launcher.communicate(timeout=600)
    assert launcher.returncode == 0, err[-3000:]
    result = read_result(out / "train_record.json")
    assert result.resumed_from and int(result.resumed_from.rsplit("-", 1)[1]) >= 4
    assert (out / "model.safetensors").exists()
    assert "restart" in err.lower() or "Restarting" in err, "the launcher restarted the worker group"
