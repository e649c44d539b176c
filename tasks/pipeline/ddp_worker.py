"""One DDP worker, started by torchrun: `python -m tasks.pipeline.ddp_worker JOB.json`."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from tasks.pipeline.training import run_ddp_worker


def main(argv: list[str] | None = None) -> int:
    (job_path,) = argv if argv is not None else sys.argv[1:]
    rank = os.environ.get("RANK", "0")  # qaflow's own log lines, each naming its rank; other libraries' warnings
    logging.basicConfig(format=f"%(asctime)s %(levelname)s [rank {rank}] %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("tasks").setLevel(logging.INFO)
    run_ddp_worker(Path(job_path))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
