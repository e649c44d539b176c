"""The IPU environment check: probe the separate IPU interpreter (`cfg.ipu.ipu_python`) for poptorch,
optimum-graphcore and attached IPUs before any real work; `IPUUnavailableError` says what is missing and how to
get it (`SETUP_HINT`)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tasks.train.resources import BackendUnavailableError

log = logging.getLogger(__name__)

SETUP_HINT = (
    "create the IPU environment with `python -m venv .venv-ipu && .venv-ipu/bin/pip install -r "
    "requirements-ipu.txt`, install the Poplar SDK's poptorch wheel into it "
    "(`.venv-ipu/bin/pip install <sdk>/poptorch-*.whl`), run `source <sdk>/enable` in the shell that starts "
    "qaflow, and point `ipu.ipu_python` at that interpreter"
)


class IPUUnavailableError(BackendUnavailableError):
    """The IPU environment cannot run: the message says what is missing and how to get it."""


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
    raw = last_json_object(proc.stdout)
    if proc.returncode != 0 or raw is None:
        tail = tail_lines(proc.stderr or proc.stdout, 10)
        raise IPUUnavailableError(f"IPU environment probe failed with {exe} (exit {proc.returncode}):\n{tail}")
    return report_from_probe(str(exe), raw, require_hardware)


def report_from_probe(exe: str, raw: dict[str, Any], require_hardware: bool) -> IPUEnvReport:
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


def tail_lines(text: str, n: int) -> str:
    return "\n".join(text.rstrip().splitlines()[-n:])


def last_json_object(text: str, require_key: str | None = None) -> dict[str, Any] | None:
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
