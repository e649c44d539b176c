"""Compile caches (tasks/train/compile_cache) kept in the tracking store, where any worker of the project finds them.

One run per cache key in the experiment `<experiment>-compile-cache` (beside the training runs, out of their list
and of `qaflow compare`): the packed Inductor cache as its artifact `compile_cache/<key>.tar.gz`, the key's fields
and the archive's SHA-256 as tags. `fetch` takes the newest finished run of a key and checks the archive against
its recorded digest before handing it out; an archive that does not match is refused (the run starts cold).
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from pathlib import Path

from tasks.core.artifacts import StoredCache
from tasks.tracking import tags as tag
from tasks.tracking.tracker import Tracker

log = logging.getLogger(__name__)

EXPERIMENT_SUFFIX = "-compile-cache"
ARTIFACT_DIR = "compile_cache"


class TrackedCompileCacheStore:
    """A `CompileCacheStore` in the store `tracker` is bound to (picklable: the tracker pickles to its settings)."""

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = Tracker(tracker.uri, tracker.experiment_name + EXPERIMENT_SUFFIX, tracker.model_name,
                               tracker.artifacts)  # fmt: skip

    def fetch(self, key: str) -> StoredCache | None:
        client = self.tracker.client
        runs = client.search_runs(
            [self.tracker.experiment_id],
            filter_string=f"tags.`{tag.COMPILE_CACHE_KEY}` = '{key}' and attributes.status = 'FINISHED'",
            order_by=["attributes.start_time DESC"], max_results=3,
        )  # fmt: skip
        for run in runs:
            with tempfile.TemporaryDirectory() as tmp:
                path = client.download_artifacts(run.info.run_id, f"{ARTIFACT_DIR}/{key}.tar.gz", tmp)
                blob = Path(path).read_bytes()
            if hashlib.sha256(blob).hexdigest() == run.data.tags.get(tag.COMPILE_CACHE_SHA256):
                return StoredCache(blob, f"run {run.info.run_id}")
            log.warning("compile cache: run %s's archive does not match its recorded SHA-256; ignored", run.info.run_id)
        return None

    def store(self, key: str, blob: bytes, fields: dict[str, str]) -> None:
        tags = {f"{tag.COMPILE_CACHE_FIELD}{name}": value for name, value in fields.items()}
        tags.update({tag.KIND: tag.KIND_COMPILE_CACHE, tag.COMPILE_CACHE_KEY: key,
                     tag.COMPILE_CACHE_SHA256: hashlib.sha256(blob).hexdigest()})  # fmt: skip
        with self.tracker.run(f"compile-cache-{key}", tags=tags) as run_id, tempfile.TemporaryDirectory() as tmp:
            archive = Path(tmp) / f"{key}.tar.gz"
            archive.write_bytes(blob)
            self.tracker.log_artifacts(run_id, [(archive, ARTIFACT_DIR)])
