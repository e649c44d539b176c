"""Parsing Inductor's max-autotune output, the artifacts, and capturing stderr at the fd level."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tasks.train.autotune import (
    RAW_LOG_NAME,
    TABLE_CSV_NAME,
    TABLE_MD_NAME,
    autotune_table_markdown,
    capture_autotune,
    parse_autotune_log,
    write_autotune_artifacts,
)

# torch 2.4+ format (as written by AlgorithmSelectorCache.log_results in torch 2.13), with the noise that
# surrounds it in a real stderr: warnings, the "Autotune Choices Stats" JSON, a prescreening table.
TORCH_213 = textwrap.dedent(
    """\
    /venv/torch/_inductor/select_algorithm.py:4799: UserWarning: TypedStorage is deprecated.
      current_out_size = out_base.storage().size()
    Autotune Choices Stats:
    {"num_choices": 20, "num_triton_choices": 19, "best_kernel": "triton_mm_4", "best_time": 0.0123}
    AUTOTUNE mm(1536x384, 384x1536)
    strides: [384, 1], [1, 384]
    dtypes: torch.bfloat16, torch.bfloat16
      triton_mm_4 0.0123 ms 100.0% ACC_TYPE='tl.float32', ALLOW_TF32=False, BLOCK_K=32, BLOCK_M=64, num_warps=4
      mm 0.0150 ms 82.0%
      triton_mm_1 0.0201 ms 61.2% ACC_TYPE='tl.float32', BLOCK_K=16, BLOCK_M=32, BLOCK_N=32, num_warps=2
      triton_mm_9 inf ms 0.0% ACC_TYPE='tl.float32', BLOCK_K=128
    SingleProcess AUTOTUNE benchmarking takes 1.2345 seconds and 0.5678 seconds precompiling for 20 choices
    some unrelated line 3.0 ms 50%? no
    PRESCREENING CANDIDATE TIMINGS
      cutlass_1 0.0100 ms 100.0% swizzle=1
      cutlass_2 0.0200 ms 50.0% swizzle=2
    AUTOTUNE addmm(64x96, 64x128, 128x96)
    strides: [0, 1], [128, 1], [1, 128]
    dtypes: torch.float32, torch.float32, torch.float32
      bias_addmm 0.0050 ms 100.0%
      addmm 0.0055 ms 90.9%
      broken_choice 0.0000 ms <DIVIDED BY ZERO ERROR>
    SubProcess AUTOTUNE benchmarking takes 0.5000 seconds and 0.2500 seconds precompiling for 3 choices \
    and 0.1000 seconds prescreening
    """
)

# torch 2.1 (no strides/dtypes, no descriptions, "AUTOTUNE takes") and torch 2.2 ("benchmarking takes ... and Y
# seconds precompiling" without "for N choices").
TORCH_21 = textwrap.dedent(
    """\
    AUTOTUNE bmm(12x512x64, 12x64x512)
      bmm 0.0148 ms 100.0%
      triton_bmm_8 0.0154 ms 96.5%
    SubProcess AUTOTUNE takes 4.7125 seconds
    """
)
TORCH_22 = textwrap.dedent(
    """\
    AUTOTUNE convolution(8x3x224x224, 64x3x7x7)
      convolution 0.1000 ms 100.0%
      triton_convolution_2 0.2000 ms 50.0% KERNEL_H=7, KERNEL_W=7
    SingleProcess AUTOTUNE benchmarking takes 2.5000 seconds and 0.0000 seconds precompiling
    """
)
# lines shipped through a log collector: prefixes and a literal "\n" at the end
PREFIXED = textwrap.dedent(
    """\
    2025-01-18 22:59:25.214 | info | pod-1 | AUTOTUNE addmm(4096x3840, 4096x1280, 1280x3840)\\n
    2025-01-18 22:59:25.214 | info | pod-1 |   bias_addmm 0.1874 ms 100.0%\\n
    2025-01-18 22:59:25.214 | info | pod-1 |   triton_mm_780 0.1894 ms 98.9%\\n
    2025-01-18 22:59:25.214 | info | pod-1 | SingleProcess AUTOTUNE benchmarking takes 10.0688 seconds and \
    0.0000 seconds precompiling\\n
    """
)


def test_parse_torch_213_blocks_and_ignores_noise() -> None:
    rows = parse_autotune_log(TORCH_213)
    assert [(r.block, r.op, r.candidate) for r in rows] == [
        (0, "mm", "triton_mm_4"),
        (0, "mm", "mm"),
        (0, "mm", "triton_mm_1"),
        (0, "mm", "triton_mm_9"),
        (1, "addmm", "bias_addmm"),
        (1, "addmm", "addmm"),
        (1, "addmm", "broken_choice"),
    ]
    best = rows[0]
    assert best.shapes == "1536x384, 384x1536"
    assert best.strides == "[384, 1], [1, 384]"
    assert best.dtypes == "torch.bfloat16, torch.bfloat16"
    assert best.time_ms == pytest.approx(0.0123)
    assert best.pct_of_best == pytest.approx(100.0)
    assert best.is_best
    assert best.description.startswith("ACC_TYPE='tl.float32'") and best.description.endswith("num_warps=4")
    assert (best.autotune_seconds, best.precompile_seconds, best.n_choices) == (1.2345, 0.5678, 20)
    assert best.process == "SingleProcess" and best.prescreening_seconds is None
    assert rows[1].description == "" and rows[1].pct_of_best == pytest.approx(82.0)
    assert rows[3].time_ms == float("inf")
    addmm = rows[4:]
    assert {r.process for r in addmm} == {"SubProcess"}
    assert {(r.autotune_seconds, r.precompile_seconds, r.prescreening_seconds, r.n_choices) for r in addmm} == {
        (0.5, 0.25, 0.1, 3)
    }
    assert addmm[2].time_ms == 0.0 and addmm[2].pct_of_best is None and not addmm[2].is_best
    assert not any(r.candidate.startswith("cutlass") for r in rows)  # prescreening table skipped


def test_parse_older_formats() -> None:
    old = parse_autotune_log(TORCH_21)
    assert [(r.op, r.shapes, r.candidate) for r in old] == [
        ("bmm", "12x512x64, 12x64x512", "bmm"),
        ("bmm", "12x512x64, 12x64x512", "triton_bmm_8"),
    ]
    assert {(r.autotune_seconds, r.precompile_seconds, r.n_choices, r.process) for r in old} == {
        (4.7125, None, None, "SubProcess")
    }
    assert old[0].strides is None and old[0].dtypes is None
    mid = parse_autotune_log(TORCH_22)
    assert [r.candidate for r in mid] == ["convolution", "triton_convolution_2"]
    assert mid[1].description == "KERNEL_H=7, KERNEL_W=7"
    assert {(r.autotune_seconds, r.precompile_seconds, r.n_choices) for r in mid} == {(2.5, 0.0, None)}


def test_parse_prefixed_lines_and_several_logs_concatenated() -> None:
    rows = parse_autotune_log(PREFIXED)
    assert [(r.op, r.candidate, r.time_ms) for r in rows] == [
        ("addmm", "bias_addmm", 0.1874),
        ("addmm", "triton_mm_780", 0.1894),
    ]
    assert rows[0].shapes == "4096x3840, 4096x1280, 1280x3840"
    assert rows[0].autotune_seconds == pytest.approx(10.0688)
    combined = parse_autotune_log(TORCH_21 + TORCH_213 + TORCH_22)
    assert sorted({r.block for r in combined}) == [0, 1, 2, 3]
    assert [r.op for r in combined if r.is_best] == ["bmm", "mm", "addmm", "convolution"]


def test_truncated_block_and_garbage() -> None:
    cut = "AUTOTUNE mm(8x8, 8x8)\n  mm 0.0010 ms 100.0%\n  triton_mm_0 0.0020 ms 50.0%\nTraceback (most recent"
    rows = parse_autotune_log(cut)
    assert [r.candidate for r in rows] == ["mm", "triton_mm_0"]
    assert rows[0].autotune_seconds is None and rows[0].precompile_seconds is None
    garbage = "  mm 0.0010 ms 100.0%\nSingleProcess AUTOTUNE benchmarking takes 1.0 seconds\nhello\n\n{}\n"
    assert parse_autotune_log(garbage) == []  # choice-like lines outside a block are not rows
    assert parse_autotune_log("") == []


def test_markdown_table() -> None:
    rows = parse_autotune_log(TORCH_213)
    md = autotune_table_markdown(rows)
    lines = md.strip().splitlines()
    assert lines[0].startswith("| block | op | shapes | candidate | time (ms) | % of best")
    assert len(lines) == 2 + len(rows)
    assert "| **triton_mm_4** | 0.0123 | 100.0 | 1.2345 | 0.5678 |" in md
    assert "| broken_choice | 0.0000 | div/0 |" in md
    weird = parse_autotune_log("AUTOTUNE mm(2x2, 2x2)\n  mm 1.0000 ms 100.0% a|b\n")
    assert "a\\|b" in autotune_table_markdown(weird)
    assert autotune_table_markdown([]).startswith("_No AUTOTUNE blocks")


def test_write_artifacts(tmp_path: Path) -> None:
    raw, table_csv, table_md = write_autotune_artifacts(TORCH_213, tmp_path / "at")
    assert (raw.name, table_csv.name, table_md.name) == (RAW_LOG_NAME, TABLE_CSV_NAME, TABLE_MD_NAME)
    assert raw.read_text(encoding="utf-8") == TORCH_213
    with open(table_csv, newline="", encoding="utf-8") as f:
        records = list(csv.DictReader(f))
    assert len(records) == 7
    assert records[0]["candidate"] == "triton_mm_4" and float(records[0]["time_ms"]) == pytest.approx(0.0123)
    assert records[6]["pct_of_best"] == "" and records[6]["n_choices"] == "3"
    assert "**triton_mm_4**" in table_md.read_text(encoding="utf-8")
    assert sorted(p.name for p in (tmp_path / "at").iterdir()) == sorted(
        [RAW_LOG_NAME, TABLE_CSV_NAME, TABLE_MD_NAME]
    )  # no temporary files left behind


def _fd2_identity() -> tuple[int, int]:
    st = os.fstat(2)
    return st.st_dev, st.st_ino


CHILD = (
    "import os, sys\n"
    "os.write(2, b'AUTOTUNE mm(4x4, 4x4)\\n  mm 0.0010 ms 100.0%\\n')\n"
    "sys.stderr.write('  cpp_gemm_0 0.0020 ms 50.0% from-child-python\\n')\n"
    "sys.stderr.flush()\n"
    "os.write(2, b'SingleProcess AUTOTUNE benchmarking takes 0.1000 seconds and 0.0500 seconds precompiling"
    " for 2 choices\\n')\n"
)


def test_capture_round_trips_fd2_of_subprocess_and_python(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    before = _fd2_identity()
    with capture_autotune(tmp_path, echo=True) as cap:
        os.write(2, b"C-level write before\n")
        subprocess.run([sys.executable, "-c", CHILD], check=True)  # the child inherits our fd 2
        print("python-level stderr line", file=sys.stderr)
        print("stdout is not captured")
    assert _fd2_identity() == before  # fd 2 restored
    assert "C-level write before" in cap.text and "python-level stderr line" in cap.text
    assert "stdout is not captured" not in cap.text
    assert [(r.candidate, r.time_ms) for r in cap.rows] == [("mm", 0.001), ("cpp_gemm_0", 0.002)]
    assert cap.rows[1].description == "from-child-python" and cap.rows[0].n_choices == 2
    assert cap.raw_log_path is not None and cap.raw_log_path.read_text(encoding="utf-8") == cap.text
    assert cap.table_md_path is not None and "**mm**" in cap.table_md_path.read_text(encoding="utf-8")
    assert not list(tmp_path.glob(".autotune_capture.*"))
    echoed = capfd.readouterr()
    assert "AUTOTUNE mm(4x4, 4x4)" in echoed.err  # the tee still showed it on the original stderr
    assert "stdout is not captured" in echoed.out


def test_capture_keeps_artifacts_when_the_block_fails(tmp_path: Path) -> None:
    before = _fd2_identity()
    with pytest.raises(RuntimeError, match="boom"), capture_autotune(tmp_path, echo=False):
        os.write(2, b"AUTOTUNE mm(2x2, 2x2)\n  mm 0.5000 ms 100.0%\n")
        raise RuntimeError("boom")
    assert _fd2_identity() == before
    assert "mm 0.5000 ms" in (tmp_path / RAW_LOG_NAME).read_text(encoding="utf-8")
    assert "**mm**" in (tmp_path / TABLE_MD_NAME).read_text(encoding="utf-8")


def test_capture_include_stdout(tmp_path: Path) -> None:
    with capture_autotune(tmp_path, echo=False, include_stdout=True) as cap:
        print("to stdout")
        os.write(1, b"fd1 write\n")
    assert "to stdout" in cap.text and "fd1 write" in cap.text


@pytest.mark.slow
def test_real_cpu_max_autotune_is_captured(tmp_path: Path) -> None:
    """torch 2.13 on CPU tunes a frozen linear layer (mkl vs C++ GEMM template) and prints an AUTOTUNE block."""
    torch = pytest.importorskip("torch")
    import torch._inductor.config as inductor_config

    torch._dynamo.reset()
    model = torch.nn.Sequential(torch.nn.Linear(128, 96), torch.nn.ReLU()).eval()
    x = torch.randn(64, 128)
    with (
        capture_autotune(tmp_path, echo=False, fresh_cache=True, show_all_choices=True) as cap,
        inductor_config.patch(freezing=True),
        torch.no_grad(),
    ):
        out = torch.compile(model, mode="max-autotune")(x)
    torch._dynamo.reset()
    assert torch.allclose(out, model(x), atol=1e-4)
    assert "AUTOTUNE" in cap.text, cap.text[-2000:]
    assert cap.rows, cap.text[-2000:]
    assert len({r.candidate for r in cap.rows}) >= 2
    assert sum(r.is_best for r in cap.rows) >= 1
    assert all(r.autotune_seconds is not None and r.time_ms >= 0 for r in cap.rows)
    assert cap.rows[0].dtypes is not None and "torch.float32" in cap.rows[0].dtypes
