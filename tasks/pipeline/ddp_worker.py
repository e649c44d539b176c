"""One DDP worker, started by torchrun: `python -m tasks.pipeline.ddp_worker JOB.json`. The job's "kind" says what
it runs: training (then --do_eval / --do_predict; `pipeline.training`) or `qaflow predict` (`pipeline.prediction`)."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from tasks.pipeline.prediction import run_prediction_worker
from tasks.pipeline.training import run_ddp_worker
from tasks.train.ddp import read_job


def main(argv: list[str] | None = None) -> int:
    (job_path,) = argv if argv is not None else sys.argv[1:]
    rank = os.environ.get("RANK", "0")  # qaflow's own log lines, each naming its rank; other libraries' warnings
    logging.basicConfig(format=f"%(asctime)s %(levelname)s [rank {rank}] %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("tasks").setLevel(logging.INFO)
    job = read_job(Path(job_path))
    if job.get("kind") == "predict":
        run_prediction_worker(job)
    else:
        run_ddp_worker(Path(job_path))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
