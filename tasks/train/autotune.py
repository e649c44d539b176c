"""PyTorch Inductor max-autotune results: capture them during a run and turn them into a table.

With `torch.compile(mode="max-autotune")` (or `torch._inductor.config.max_autotune[_gemm]`), Inductor
benchmarks the candidate kernels of each tunable op (mm, addmm, bmm, convolution, flex attention, ...) and
writes one block per op straight to `sys.stderr` (`AlgorithmSelectorCache.log_results`,
`torch/_inductor/select_algorithm.py`):

    AUTOTUNE mm(1536x384, 384x1536)
    strides: [384, 1], [1, 384]                      (torch >= 2.4)
    dtypes: torch.bfloat16, torch.bfloat16           (torch >= 2.4)
      triton_mm_4 0.0123 ms 100.0% ACC_TYPE='tl.float32', ..., num_warps=4   (description: torch >= 2.2)
      mm 0.0150 ms 82.0%
      bad_choice 0.0000 ms <DIVIDED BY ZERO ERROR>
    SingleProcess AUTOTUNE benchmarking takes 1.2345 seconds and 0.5678 seconds precompiling for 20 choices

Older torch prints `SingleProcess AUTOTUNE takes 5.1835 seconds`; `SubProcess` replaces `SingleProcess` with
`TORCHINDUCTOR_AUTOTUNE_IN_SUBPROC=1`; newer torch may append `and X seconds prescreening`. Only the top
`TORCHINDUCTOR_AUTOTUNE_NUM_CHOICES_DISPLAYED` (default 10; "all" for every) candidates are printed. This is
not a `logging` record (`TORCH_LOGS=autotuning` adds debug logs, not this table), and nothing is printed when
the FX graph / autotune caches already hold the result, hence `capture_autotune(..., fresh_cache=True)`.

On CPU only ops with several candidates are tuned: in torch 2.13 that is e.g. a frozen linear layer in
inference (`torch._inductor.config.freezing = True`, under `no_grad`): `_mkl_linear` vs the C++ GEMM
template. Training matmuls on CPU have a single ATen choice and print nothing; on CUDA the Triton
templates are tuned.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import re
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from tasks.core.io import write_bytes_atomic

RAW_LOG_NAME = "autotune_raw.log"
TABLE_CSV_NAME = "autotune_table.csv"
TABLE_MD_NAME = "autotune_table.md"

_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|inf|nan"
_HEADER = re.compile(r"(?:^|[\s|:\]])AUTOTUNE (?P<op>[A-Za-z_][\w.]*)\((?P<shapes>.*)\)\s*$")
_STRIDES = re.compile(r"^\s*strides:\s*(?P<v>.*?)\s*$")
_DTYPES = re.compile(r"^\s*dtypes:\s*(?P<v>.*?)\s*$")
_CHOICE = re.compile(
    rf"(?:^|\s)(?P<name>[A-Za-z_][\w.\-]*)\s+(?P<time>{_NUM})\s*ms\s+"
    rf"(?:(?P<pct>{_NUM})%|(?P<div0><DIVIDED BY ZERO ERROR>))(?P<desc>.*)$"
)
_TAKES = re.compile(
    rf"(?P<proc>SingleProcess|SubProcess)?\s*AUTOTUNE\s+(?:benchmarking\s+)?takes\s+(?P<bench>{_NUM})\s+seconds"
    rf"(?:\s+and\s+(?P<pre>{_NUM})\s+seconds\s+precompiling)?"
    rf"(?:\s+for\s+(?P<n>\d+)\s+choices)?"
    rf"(?:\s+and\s+(?P<ps>{_NUM})\s+seconds\s+prescreening)?"
)
_PRESCREEN = re.compile(r"PRESCREENING CANDIDATE TIMINGS")


@dataclass(frozen=True)
class AutotuneRow:
    """One benchmarked candidate of one AUTOTUNE block (`block` numbers the blocks in log order, from 0)."""

    block: int
    op: str
    shapes: str
    candidate: str
    time_ms: float
    pct_of_best: float | None  # None when torch printed <DIVIDED BY ZERO ERROR> (a 0 ms timing)
    description: str = ""
    strides: str | None = None
    dtypes: str | None = None
    autotune_seconds: float | None = None  # the block's "benchmarking takes X seconds"
    precompile_seconds: float | None = None
    prescreening_seconds: float | None = None
    n_choices: int | None = None  # candidates benchmarked (printed rows may be fewer)
    process: str | None = None  # SingleProcess | SubProcess

    @property
    def is_best(self) -> bool:
        return self.pct_of_best is not None and self.pct_of_best >= 100.0 - 1e-9


@dataclass
class _Block:
    index: int
    op: str
    shapes: str
    strides: str | None = None
    dtypes: str | None = None
    rows: list[AutotuneRow] = field(default_factory=list)


def _float(text: str | None) -> float | None:
    return None if text is None else float(text)


def _clean(line: str) -> str:
    """Strip a trailing newline, a literal `\\n` left by log shippers, and trailing whitespace."""
    line = line.rstrip("\r\n")
    if line.endswith("\\n"):
        line = line[:-2]
    return line.rstrip()


def parse_autotune_log(text: str) -> list[AutotuneRow]:
    """All candidate rows of all AUTOTUNE blocks in `text`; any other line is ignored.

    Tolerates the format variants listed in the module docstring and prefixes on each line (timestamps,
    `[rank0]:`). A block's `autotune_seconds`/`precompile_seconds` come from its closing "takes" line and stay
    None when the log was cut before it. Prescreening tables (`PRESCREENING CANDIDATE TIMINGS`) are skipped.
    """
    rows: list[AutotuneRow] = []
    block: _Block | None = None
    skipping_prescreen = False
    n_blocks = 0

    def close(timing: re.Match[str] | None) -> None:
        nonlocal block
        if block is None:
            return
        if timing is None:
            rows.extend(block.rows)
        else:
            extra = {
                "autotune_seconds": _float(timing["bench"]),
                "precompile_seconds": _float(timing["pre"]),
                "prescreening_seconds": _float(timing["ps"]),
                "n_choices": int(timing["n"]) if timing["n"] else None,
                "process": timing["proc"],
            }
            rows.extend(AutotuneRow(**{**asdict(r), **extra}) for r in block.rows)
        block = None

    for raw in text.splitlines():
        line = _clean(raw)
        if not line.strip():
            continue
        if m := _HEADER.search(line):
            close(None)
            block = _Block(n_blocks, m["op"], m["shapes"].strip())
            n_blocks += 1
            skipping_prescreen = False
            continue
        if _PRESCREEN.search(line):
            close(None)
            skipping_prescreen = True
            continue
        if m := _TAKES.search(line):
            close(m)
            skipping_prescreen = False
            continue
        if block is None or skipping_prescreen:
            continue
        if not block.rows and (m := _STRIDES.match(line)):
            block.strides = m["v"]
        elif not block.rows and (m := _DTYPES.match(line)):
            block.dtypes = m["v"]
        elif m := _CHOICE.search(line):
            block.rows.append(
                AutotuneRow(
                    block=block.index,
                    op=block.op,
                    shapes=block.shapes,
                    candidate=m["name"],
                    time_ms=float(m["time"]),
                    pct_of_best=None if m["div0"] else float(m["pct"]),
                    description=m["desc"].strip(),
                    strides=block.strides,
                    dtypes=block.dtypes,
                )
            )
    close(None)
    return rows


def _fmt(value: float | int | str | None, digits: int = 4) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}f}" if math.isfinite(value) else str(value)
    return str(value)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def autotune_table_markdown(rows: list[AutotuneRow]) -> str:
    """A Markdown table, one line per candidate, blocks in log order, the winner of each block in bold."""
    if not rows:
        return "_No AUTOTUNE blocks found in the captured log._\n"
    header = (
        "| block | op | shapes | candidate | time (ms) | % of best | autotune (s) | precompile (s) "
        "| config |\n"
        "|---:|---|---|---|---:|---:|---:|---:|---|\n"
    )
    lines = []
    for r in rows:
        name = f"**{r.candidate}**" if r.is_best else r.candidate
        pct = "div/0" if r.pct_of_best is None else f"{r.pct_of_best:.1f}"
        cells = [
            str(r.block), r.op, r.shapes, name, _fmt(r.time_ms), pct,
            _fmt(r.autotune_seconds), _fmt(r.precompile_seconds), r.description,
        ]  # fmt: skip
        lines.append("| " + " | ".join(_md_cell(c) for c in cells) + " |")
    return header + "\n".join(lines) + "\n"


def autotune_table_csv(rows: list[AutotuneRow]) -> str:
    """CSV with every `AutotuneRow` field (empty cells for None)."""
    names = [f.name for f in fields(AutotuneRow)]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(names)
    for r in rows:
        writer.writerow([_fmt(getattr(r, n), 6) for n in names])
    return buf.getvalue()


def write_autotune_artifacts(log_text: str, out_dir: str | os.PathLike[str]) -> tuple[Path, Path, Path]:
    """Write the raw log, the CSV table and the Markdown table (each atomically) into `out_dir`."""
    out = Path(out_dir)
    rows = parse_autotune_log(log_text)
    raw = write_bytes_atomic(log_text.encode("utf-8", "backslashreplace"), out / RAW_LOG_NAME)
    table_csv = write_bytes_atomic(autotune_table_csv(rows).encode("utf-8"), out / TABLE_CSV_NAME)
    table_md = write_bytes_atomic(autotune_table_markdown(rows).encode("utf-8"), out / TABLE_MD_NAME)
    return raw, table_csv, table_md


# ----------------------------------------------------------------------------------------------------
# capture


@dataclass
class AutotuneCapture:
    """What `capture_autotune` collected; `text`, `rows` and the paths are filled when the block exits."""

    out_dir: Path
    text: str = ""
    rows: list[AutotuneRow] = field(default_factory=list)
    raw_log_path: Path | None = None
    table_csv_path: Path | None = None
    table_md_path: Path | None = None


class _Echo(threading.Thread):
    """Copies what lands in the capture file to the original stream while the capture runs (a tee)."""

    def __init__(self, path: Path, fd: int, interval: float) -> None:
        super().__init__(daemon=True, name="autotune-capture-echo")
        self.path, self.fd, self.interval = path, fd, interval
        self.stop = threading.Event()
        self.pos = 0

    def drain(self) -> None:
        with open(self.path, "rb") as f:
            f.seek(self.pos)
            while chunk := f.read(1 << 16):
                self.pos += len(chunk)
                with contextlib.suppress(OSError):
                    os.write(self.fd, chunk)

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            self.drain()


def _flush_std() -> None:
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        with contextlib.suppress(Exception):
            if stream is not None:
                stream.flush()


@contextlib.contextmanager
def _inductor_settings(show_all_choices: bool, fresh_cache: bool) -> Iterator[None]:
    if not (show_all_choices or fresh_cache):
        yield
        return
    import torch._inductor.config as inductor_config

    patch: dict[str, object] = {}
    if show_all_choices:
        patch["autotune_num_choices_displayed"] = None
    if fresh_cache:
        patch["force_disable_caches"] = True
    with inductor_config.patch(patch):
        yield


@contextlib.contextmanager
def capture_autotune(
    out_dir: str | os.PathLike[str],
    *,
    echo: bool = True,
    include_stdout: bool = False,
    show_all_choices: bool = False,
    fresh_cache: bool = False,
    poll_interval: float = 0.2,
) -> Iterator[AutotuneCapture]:
    """Capture everything written to stderr (fd 2) in the block; on exit write the autotune artifacts.

    Works at the file-descriptor level (`dup2`), so C-level writes and child processes (Inductor's compile and
    autotune workers) are caught too; `sys.stderr` is pointed at the redirected fd for the duration, so Python
    writes are caught even where it had been replaced (pytest, notebooks). With `echo` the output still
    reaches the original stderr, copied by a thread. `include_stdout` captures fd 1 as well;
    `show_all_choices` prints every candidate, `fresh_cache` disables Inductor's caches so cached results do
    not hide the tuning. Children that outlive the block keep writing into the (then unlinked) capture file.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    capture = AutotuneCapture(out_dir=out)
    capture_path = out / f".autotune_capture.{os.getpid()}.{time.monotonic_ns()}.tmp"
    fds = (2, 1) if include_stdout else (2,)
    _flush_std()
    sink = os.open(capture_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
    saved = {fd: os.dup(fd) for fd in fds}
    old_streams = (sys.stderr, sys.stdout)
    echo_thread = _Echo(capture_path, saved[2], poll_interval) if echo else None
    body_ok = False
    try:
        for fd in fds:
            os.dup2(sink, fd)
        sys.stderr = _reopen(2)
        if include_stdout:
            sys.stdout = _reopen(1)
        if echo_thread:
            echo_thread.start()
        with _inductor_settings(show_all_choices, fresh_cache):
            yield capture
        body_ok = True
    finally:
        _flush_std()
        for stream, old in ((sys.stderr, old_streams[0]), (sys.stdout, old_streams[1])):
            if stream is not old:
                with contextlib.suppress(Exception):
                    stream.close()
        sys.stderr, sys.stdout = old_streams
        for fd, copy in saved.items():
            os.dup2(copy, fd)
        os.close(sink)
        if echo_thread and echo_thread.ident is not None:
            echo_thread.stop.set()
            echo_thread.join()
            echo_thread.drain()
        for copy in saved.values():
            os.close(copy)
        capture.text = capture_path.read_bytes().decode("utf-8", "backslashreplace")
        capture_path.unlink(missing_ok=True)
        # keep the artifacts of a failed run too, without masking its exception
        with contextlib.suppress(Exception) if not body_ok else contextlib.nullcontext():
            paths = write_autotune_artifacts(capture.text, out)
            capture.raw_log_path, capture.table_csv_path, capture.table_md_path = paths
            capture.rows = parse_autotune_log(capture.text)


def _reopen(fd: int) -> io.TextIOWrapper:
    """A line-buffered text stream on a duplicate of `fd` (closing it leaves `fd` open)."""
    return open(os.dup(fd), "w", buffering=1, encoding="utf-8", errors="backslashreplace")  # noqa: SIM115
