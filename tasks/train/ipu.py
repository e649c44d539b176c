"""Graphcore IPU backend: optimum-graphcore 0.7.1 in its own environment, driven as a subprocess.

optimum-graphcore 0.7.1 pins transformers 4.29.2 and needs Graphcore's `poptorch` (shipped with the Poplar
SDK, not on PyPI), so it can never be imported next to qaflow's transformers 5. The IPU environment is a
separate virtual environment (`requirements-ipu.txt`) whose interpreter is `cfg.ipu.ipu_python`; this module
only translates the configuration, checks that environment, writes a JSON job spec and runs
`tasks/train/ipu_worker.py` inside it.

Device allocation rule (as in Graphcore's notebooks, where one 4-IPU pipeline is replicated over the
pod): a replica is one pipelined copy of the model over `ipus_per_replica` IPUs (`len(layers_per_ipu)`,
or 4 when `layers_per_ipu` is not set, the layout of Graphcore's BERT IPU configs), and the pod is filled
with data-parallel replicas: `replication_factor = pod_ipus // ipus_per_replica` (pod4→1, pod8→2,
pod16→4, pod32→8, pod64→16 for a 4-IPU pipeline). The optimizer sees
`global_batch_size = micro_batch_size × gradient_accumulation × replicas`.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tasks.core.artifacts import DeviceInfo, TrainResult
from tasks.core.config import QAFlowConfig
from tasks.core.data import load_dataset_file, to_squad_json
from tasks.core.io import write_json_atomic
from tasks.core.layout import TrainPaths
from tasks.core.model_spec import resolve_model_path
from tasks.train.resources import BackendUnavailableError

log = logging.getLogger(__name__)

WORKER_PATH = Path(__file__).resolve().with_name("ipu_worker.py")
POD_IPUS: dict[str, int] = {"pod4": 4, "pod8": 8, "pod16": 16, "pod32": 32, "pod64": 64}
DEFAULT_IPUS_PER_REPLICA = 4
JOB_SPEC_NAME = "ipu_job.json"
LOG_NAME = "ipu_train.log"
SPEC_VERSION = 1
# worker exit codes (see ipu_worker.py)
EXIT_BAD_SPEC = 2
EXIT_NO_POPTORCH = 3
EXIT_NO_OPTIMUM = 4

SETUP_HINT = (
    "create the IPU environment with `python -m venv .venv-ipu && .venv-ipu/bin/pip install -r "
    "requirements-ipu.txt`, install the Poplar SDK's poptorch wheel into it "
    "(`.venv-ipu/bin/pip install <sdk>/poptorch-*.whl`), run `source <sdk>/enable` in the shell that starts "
    "qaflow, and point `ipu.ipu_python` at that interpreter"
)


class IPUUnavailableError(BackendUnavailableError):
    """The IPU environment cannot run: the message says what is missing and how to get it."""


class IPUJobError(RuntimeError):
    """The IPU worker failed; carries its exit code and the tail of its log."""

    def __init__(self, message: str, returncode: int | None, log_tail: str) -> None:
        super().__init__(message)
        self.returncode = returncode
        self.log_tail = log_tail


class IPUWorkerEnvironmentError(IPUJobError, IPUUnavailableError):
    """The worker started but its environment lacks poptorch (exit 3) or optimum-graphcore (exit 4)."""


# ----------------------------------------------------------------------------------------------------
# configuration translation


@dataclass(frozen=True)
class IPUAllocation:
    pod_type: str
    pod_ipus: int
    ipus_per_replica: int
    replication_factor: int

    @property
    def total_ipus(self) -> int:
        return self.replication_factor * self.ipus_per_replica


def pod_ipus(pod_type: str) -> int:
    """Number of IPUs in a pod type (`pod4` ... `pod64`, case-insensitive)."""
    key = str(pod_type).strip().lower()
    if key not in POD_IPUS:
        raise ValueError(f"unknown ipu.pod_type {pod_type!r}; choose one of {', '.join(POD_IPUS)}")
    return POD_IPUS[key]


def device_allocation(cfg: QAFlowConfig) -> IPUAllocation:
    """Replicas × IPUs per replica for `cfg.ipu` (rule in the module docstring)."""
    ipu = cfg.ipu
    n_pod = pod_ipus(ipu.pod_type)
    layers = ipu.layers_per_ipu
    if layers is not None:
        if not layers or any(n < -1 for n in layers):
            raise ValueError(f"ipu.layers_per_ipu {layers!r}: needs one entry per IPU, each >= -1 (-1 = auto)")
        per_replica = len(layers)
    else:
        per_replica = DEFAULT_IPUS_PER_REPLICA
    if per_replica > n_pod:
        raise ValueError(f"ipu.layers_per_ipu pipelines the model over {per_replica} IPUs; {ipu.pod_type} has {n_pod}")
    return IPUAllocation(ipu.pod_type.lower(), n_pod, per_replica, n_pod // per_replica)


def global_batch_size(cfg: QAFlowConfig) -> int:
    """Samples per optimizer step: micro batch × gradient accumulation × replication factor."""
    ipu = cfg.ipu
    if ipu.micro_batch_size < 1 or ipu.ipu_gradient_accumulation_steps < 1:
        raise ValueError("ipu.micro_batch_size and ipu.ipu_gradient_accumulation_steps must be >= 1")
    return ipu.micro_batch_size * ipu.ipu_gradient_accumulation_steps * device_allocation(cfg).replication_factor


def default_executable_cache_dir() -> Path:
    """`$POPLAR_EXECUTABLE_CACHE_DIR` (the variable Graphcore's notebooks read), else `./exe_cache`."""
    return Path(os.environ.get("POPLAR_EXECUTABLE_CACHE_DIR") or "exe_cache").resolve()


def ipu_config_overrides(cfg: QAFlowConfig, cache_dir: Path | None = None) -> dict[str, Any]:
    """Keyword arguments for `IPUConfig.from_pretrained(cfg.ipu.ipu_config_name, **overrides)`.

    Only real `IPUConfig` attributes go here (it rejects unknown ones); the micro batch size and the loss
    scaling factor are `IPUTrainingArguments` fields in optimum-graphcore, see `ipu_training_arguments`.
    """
    alloc = device_allocation(cfg)
    overrides: dict[str, Any] = {
        "replication_factor": alloc.replication_factor,
        "gradient_accumulation_steps": cfg.ipu.ipu_gradient_accumulation_steps,
        "executable_cache_dir": str(cache_dir if cache_dir is not None else default_executable_cache_dir()),
    }
    if cfg.ipu.layers_per_ipu is not None:
        overrides["layers_per_ipu"] = list(cfg.ipu.layers_per_ipu)
        overrides["ipus_per_replica"] = alloc.ipus_per_replica
    return overrides


def ipu_training_arguments(cfg: QAFlowConfig, output_dir: Path) -> dict[str, Any]:
    """Keyword arguments for `IPUTrainingArguments` (micro batch, loss scaling, precision, schedule)."""
    t, ipu = cfg.train, cfg.ipu
    if t.bf16:
        raise ValueError("train.bf16: IPUs have no bfloat16; use train.fp16 (Graphcore's default) or fp32")
    if ipu.loss_scaling is not None and ipu.loss_scaling <= 0:
        raise ValueError(f"ipu.loss_scaling must be > 0, got {ipu.loss_scaling}")
    args: dict[str, Any] = {
        "output_dir": str(Path(output_dir).resolve()),
        "per_device_train_batch_size": ipu.micro_batch_size,
        "per_device_eval_batch_size": ipu.micro_batch_size,
        "gradient_accumulation_steps": ipu.ipu_gradient_accumulation_steps,
        "learning_rate": t.learning_rate,
        "num_train_epochs": t.num_train_epochs,
        "max_steps": t.max_steps,
        "warmup_ratio": t.warmup_ratio,
        "weight_decay": t.weight_decay,
        "seed": t.seed,
        "logging_steps": t.logging_steps,
        "save_strategy": t.save_strategy,
        "save_steps": t.save_steps,
        "save_total_limit": t.save_total_limit,
        "dataloader_num_workers": t.dataloader_num_workers,
        "dataloader_drop_last": True,  # compiled graphs need full batches
        "fp32": not t.fp16,
        "report_to": "none",
    }
    if ipu.loss_scaling is not None:
        args["loss_scaling"] = ipu.loss_scaling
    return args


# ----------------------------------------------------------------------------------------------------
# environment check

# Runs inside the IPU interpreter (Python 3.8+): reports what it can import as one JSON line on stdout.
_PROBE = r"""
import json, os, sys
r = {"python": sys.executable, "python_version": sys.version.split()[0], "missing": [], "broken": {},
     "sdk_enabled": bool(os.environ.get("POPLAR_SDK_ENABLED")), "num_ipus": None}
try:
    from importlib.metadata import version as _v, PackageNotFoundError
except ImportError:
    _v = None
def dist_version(name):
    try:
        return _v(name) if _v else None
    except Exception:
        return None
try:
    import poptorch
    r["poptorch"] = getattr(poptorch, "__version__", None) or dist_version("poptorch") or "unknown"
    try:
        n = 0
        for k in (1, 2, 4, 8, 16, 32, 64):
            if not poptorch.ipuHardwareIsAvailable(k):
                break
            n = k
        r["num_ipus"] = n
    except Exception as e:
        r["broken"]["ipu_query"] = "%s: %s" % (type(e).__name__, e)
except ModuleNotFoundError as e:
    if e.name == "poptorch":
        r["missing"].append("poptorch")
    else:
        r["broken"]["poptorch"] = "%s: %s" % (type(e).__name__, e)
except Exception as e:
    r["broken"]["poptorch"] = "%s: %s" % (type(e).__name__, e)
r["transformers"] = dist_version("transformers")
r["optimum_graphcore"] = dist_version("optimum-graphcore")
if r["optimum_graphcore"] is None:
    r["missing"].append("optimum-graphcore")
elif "poptorch" in r:
    try:
        import optimum.graphcore
    except Exception as e:
        r["broken"]["optimum-graphcore"] = "%s: %s" % (type(e).__name__, e)
print(json.dumps(r))
"""


@dataclass
class IPUEnvReport:
    python: str
    python_version: str
    poptorch_version: str
    optimum_graphcore_version: str
    transformers_version: str | None
    num_ipus: int | None
    sdk_enabled: bool
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def resolve_ipu_python(python: str) -> Path:
    """The IPU interpreter as an absolute path (a bare name is looked up on PATH); raises if it is missing."""
    if os.sep not in python and not python.startswith("."):
        found = shutil.which(python)
        if found:
            return Path(found)
    path = Path(python).expanduser()
    path = path if path.is_absolute() else Path.cwd() / path
    if not path.is_file() or not os.access(path, os.X_OK):
        raise IPUUnavailableError(
            f"IPU Python interpreter not found: {python} (looked at {path}); {SETUP_HINT}, "
            "or set ipu.ipu_python to an existing interpreter"
        )
    return path


def check_ipu_environment(python: str, *, timeout: float = 120.0, require_hardware: bool = True) -> IPUEnvReport:
    """Probe the IPU interpreter for poptorch, optimum-graphcore and attached IPUs, before any real work.

    Raises `IPUUnavailableError` naming what is missing (interpreter, poptorch, optimum-graphcore, or IPUs
    when `require_hardware`) and how to get it.
    """
    exe = resolve_ipu_python(python)
    try:
        proc = subprocess.run([str(exe), "-c", _PROBE], capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise IPUUnavailableError(f"IPU environment probe with {exe} timed out after {timeout:.0f} s") from exc
    except OSError as exc:
        raise IPUUnavailableError(f"cannot run the IPU Python interpreter {exe}: {exc}; {SETUP_HINT}") from exc
    raw = _last_json_object(proc.stdout)
    if proc.returncode != 0 or raw is None:
        tail = _tail(proc.stderr or proc.stdout, 10)
        raise IPUUnavailableError(f"IPU environment probe failed with {exe} (exit {proc.returncode}):\n{tail}")
    return _report_from_probe(str(exe), raw, require_hardware)


def _report_from_probe(exe: str, raw: dict[str, Any], require_hardware: bool) -> IPUEnvReport:
    problems = [f"{name} is not installed" for name in raw.get("missing", [])]
    for name, error in raw.get("broken", {}).items():
        if name == "poptorch":
            problems.append(f"poptorch is installed but cannot be imported ({error}); run `source <sdk>/enable`")
        elif name != "ipu_query":
            problems.append(f"{name} is installed but cannot be imported ({error})")
    if problems:
        raise IPUUnavailableError(f"IPU environment {exe} is not usable: {'; '.join(problems)}. To fix: {SETUP_HINT}")
    warnings = []
    if raw.get("optimum_graphcore") != "0.7.1":
        warnings.append(f"optimum-graphcore {raw.get('optimum_graphcore')} found; qaflow is tested with 0.7.1")
    if raw.get("transformers") != "4.29.2":
        warnings.append(f"transformers {raw.get('transformers')} found; optimum-graphcore 0.7.1 pins 4.29.2")
    if "ipu_query" in raw.get("broken", {}):
        warnings.append(f"could not count IPUs: {raw['broken']['ipu_query']}")
    report = IPUEnvReport(
        python=exe,
        python_version=str(raw.get("python_version")),
        poptorch_version=str(raw.get("poptorch")),
        optimum_graphcore_version=str(raw.get("optimum_graphcore")),
        transformers_version=raw.get("transformers"),
        num_ipus=raw.get("num_ipus"),
        sdk_enabled=bool(raw.get("sdk_enabled")),
        warnings=warnings,
    )
    if require_hardware and report.num_ipus == 0:
        raise IPUUnavailableError(
            f"poptorch {report.poptorch_version} imports in {exe} but sees no IPU: check `gc-info -l`, the "
            "IPUOF_VIPU_API_* partition variables and that `source <sdk>/enable` was run"
        )
    for w in warnings:
        log.warning("IPU environment: %s", w)
    return report


# ----------------------------------------------------------------------------------------------------
# job spec and launch


@dataclass
class IPUJob:
    argv: list[str]
    spec_path: Path
    log_path: Path
    output_dir: Path
    spec: dict[str, Any]


def _export_squad(source: Path, target: Path, policy: str, max_samples: int | None) -> int:
    """Validate `source` with qaflow's loader and write it as nested SQuAD JSON (the worker's one format)."""
    dataset = load_dataset_file(source, policy=policy, max_samples=max_samples)  # type: ignore[arg-type]
    write_json_atomic(to_squad_json(dataset), target)
    return len(dataset)


def build_ipu_job(cfg: QAFlowConfig, train_file: Path, eval_file: Path | None, output_dir: Path) -> IPUJob:
    """Write `output_dir/ipu_job.json` (atomically) and return the worker's command line.

    The data files are validated and normalised to nested SQuAD JSON under `output_dir/ipu_data/`, so the
    worker, which cannot import qaflow, reads one simple format.
    """
    output_dir = Path(output_dir).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    python = resolve_ipu_python(cfg.ipu.ipu_python)
    alloc = device_allocation(cfg)
    data_dir = output_dir / "ipu_data"
    policy = cfg.data.bad_record_policy
    n_train = _export_squad(Path(train_file), data_dir / "train.json", policy, cfg.data.max_train_samples)
    eval_path = None
    if eval_file is not None:
        eval_path = data_dir / "eval.json"
        _export_squad(Path(eval_file), eval_path, policy, cfg.data.max_eval_samples)
    model = resolve_model_path(cfg.model.model_name_or_path)
    spec: dict[str, Any] = {
        "spec_version": SPEC_VERSION,
        "model_name_or_path": model,
        "tokenizer_name": resolve_model_path(cfg.model.tokenizer_name) if cfg.model.tokenizer_name else model,
        "ipu_config_name": cfg.ipu.ipu_config_name,
        "ipu_config_overrides": ipu_config_overrides(cfg),
        "layers_per_ipu_set": cfg.ipu.layers_per_ipu is not None,
        "training_args": ipu_training_arguments(cfg, output_dir),
        "pod_type": alloc.pod_type,
        "pod_ipus": alloc.pod_ipus,
        "train_file": str(data_dir / "train.json"),
        "train_examples": n_train,
        "eval_file": str(eval_path) if eval_path else None,
        "max_seq_length": cfg.features.max_seq_length,
        "doc_stride": cfg.features.doc_stride,
        "output_dir": str(output_dir),
        "model_dir": str(TrainPaths(output_dir).model_dir),
        "metrics_file": str(output_dir / "ipu_metrics.json"),
    }
    spec_path = write_json_atomic(spec, output_dir / JOB_SPEC_NAME, indent=2)
    argv = [str(python), str(WORKER_PATH), str(spec_path)]
    return IPUJob(argv=argv, spec_path=spec_path, log_path=output_dir / LOG_NAME, output_dir=output_dir, spec=spec)


def run_ipu_job(
    job: IPUJob, *, timeout: float | None = None, echo: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Run the worker, stream its output (stdout and stderr) into `job.log_path`, return its final metrics.

    Non-zero exit raises `IPUJobError` (`IPUWorkerEnvironmentError` for exit 3/4, a missing poptorch or
    optimum-graphcore) with the exit code and the log tail.
    """
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    tail: collections.deque[str] = collections.deque(maxlen=40)
    log.info("IPU job: %s (log %s)", " ".join(job.argv), job.log_path)
    with open(job.log_path, "w", encoding="utf-8") as log_file:
        proc = subprocess.Popen(
            job.argv, cwd=job.output_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, encoding="utf-8", errors="replace", bufsize=1,
        )  # fmt: skip
        killed = threading.Event()

        def _kill() -> None:
            killed.set()
            proc.kill()

        timer = threading.Timer(timeout, _kill) if timeout else None
        if timer:
            timer.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                log_file.write(line)
                log_file.flush()
                tail.append(line)
                if echo:
                    echo(line.rstrip("\n"))
            returncode = proc.wait()
        finally:
            if timer:
                timer.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    text = "".join(tail).rstrip()
    if returncode != 0:
        raise _job_error(job, returncode, text, timed_out=killed.is_set())
    metrics = _last_json_object(text, require_key="train_runtime")
    if metrics is None:
        raise IPUJobError(
            f"IPU worker exited 0 but printed no final metrics line; log {job.log_path}:\n{text}", 0, text
        )
    return metrics


def _job_error(job: IPUJob, returncode: int, tail: str, timed_out: bool) -> IPUJobError:
    where = f"log {job.log_path}, last lines:\n{tail}"
    if returncode == EXIT_NO_POPTORCH:
        return IPUWorkerEnvironmentError(
            f"IPU worker exit code 3: poptorch missing in {job.argv[0]}; {SETUP_HINT}. {where}",
            returncode,
            tail,
        )
    if returncode == EXIT_NO_OPTIMUM:
        return IPUWorkerEnvironmentError(
            f"IPU worker exit code 4: optimum-graphcore/transformers missing in {job.argv[0]}; {SETUP_HINT}. {where}",
            returncode,
            tail,
        )
    reason = "timed out and was killed" if timed_out else f"failed with exit code {returncode}"
    if returncode == EXIT_BAD_SPEC:
        reason += " (bad job spec)"
    return IPUJobError(f"IPU worker {reason}; {where}", returncode, tail)


def ipu_result(cfg: QAFlowConfig, metrics: dict[str, Any], output_dir: Path) -> TrainResult:
    """Wrap the worker's metrics as a `TrainResult` (numeric metrics only; device = the IPUs used)."""
    output_dir = Path(output_dir).resolve()
    ipus = int(metrics.get("ipus") or device_allocation(cfg).total_ipus)
    replicas = int(metrics.get("replication_factor") or device_allocation(cfg).replication_factor)
    per_replica = ipus // max(replicas, 1)
    device = DeviceInfo(
        backend="ipu",
        device_name=f"Graphcore IPU {cfg.ipu.pod_type} ({replicas} x {per_replica}-IPU pipelines)",
        device_count=ipus,
        world_size=replicas,
    )
    numeric = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    return TrainResult(
        model_dir=Path(metrics.get("model_dir") or TrainPaths(output_dir).model_dir),
        metrics=numeric,
        device=device,
        artifacts={"ipu_job": output_dir / JOB_SPEC_NAME, "ipu_log": output_dir / LOG_NAME},
    )


# ----------------------------------------------------------------------------------------------------
# helpers


def _tail(text: str, n: int) -> str:
    return "\n".join(text.rstrip().splitlines()[-n:])


def _last_json_object(text: str, require_key: str | None = None) -> dict[str, Any] | None:
    """The last line of `text` that is a JSON object (holding `require_key`, if given)."""
    for line in reversed(text.splitlines()):
        line = line.strip()
        if not (line.startswith("{") and line.endswith("}")):
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict) and (require_key is None or require_key in obj):
            return obj
    return None


def main(argv: list[str] | None = None) -> int:
    """`python -m tasks.train.ipu [IPU_PYTHON]`: print the IPU environment report or what is missing."""
    args = sys.argv[1:] if argv is None else argv
    python = args[0] if args else ".venv-ipu/bin/python"
    try:
        report = check_ipu_environment(python, require_hardware=False)
    except IPUUnavailableError as exc:
        print(f"IPU unavailable: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report.to_json(), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
