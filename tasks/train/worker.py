"""One DDP worker, started by torchrun: `python -m tasks.train.worker JOB.json`."""

from __future__ import annotations

import sys
from pathlib import Path

from tasks.config import load_config


def main(argv: list[str] | None = None) -> int:
    from tasks.family import train_family
    from tasks.train import load_job
    from tasks.train.common import write_result

    (job_path,) = argv if argv is not None else sys.argv[1:]
    job = load_job(Path(job_path))
    overrides = {f"{section}.{k}": v for section, values in job["config"].items() for k, v in values.items()}
    cfg = load_config(None, overrides)
    output_dir = Path(job["output_dir"])
    result = train_family(cfg, Path(job["features"]), job["backend"], output_dir)
    import torch.distributed as dist

    if not dist.is_initialized() or dist.get_rank() == 0:
        write_result(result, output_dir / "train_result.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
