"""Build what the GPU suite needs and the device machine lacks, small enough to travel (≤ 64 MiB in all).

    python benchmarks/gpu_payload.py --out gpu_payload        # then: run(..., carry=["gpu_payload"])

Writes `gpu_payload/minilm/` (the offline MiniLM checkpoint with bf16 weights, ~44 MB instead of 87 MB; training
upcasts them to fp32 master weights, so only the bf16-rounded starting point differs) and gzipped SQuAD v1.1
train/dev from `../shared/data` (qaflow reads `.json.gz` directly). Prints the sizes; refuses to exceed the limit.
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tasks.core.model_spec import resolve_model_path  # noqa: E402

LIMIT_BYTES = 60 * 2**20  # leave room for the working tree under the 64 MiB carry limit
MODEL_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


def write_minilm_bf16(out: Path) -> None:
    source = Path(resolve_model_path("minilm"))
    out.mkdir(parents=True, exist_ok=True)
    for name in MODEL_FILES:
        if (source / name).exists():
            shutil.copy2(source / name, out / name)
    weights = load_file(source / "model.safetensors")
    save_file({k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in weights.items()},
              out / "model.safetensors", metadata={"format": "pt"})  # fmt: skip


def gzip_copy(source: Path, target: Path) -> None:
    with open(source, "rb") as src, gzip.open(target, "wb", compresslevel=9) as dst:
        shutil.copyfileobj(src, dst)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "gpu_payload"))
    ap.add_argument("--shared", default=str(ROOT.parent / "shared" / "data"))
    a = ap.parse_args()
    out, shared = Path(a.out), Path(a.shared)
    if not (shared / "squad-v1.1" / "train-v1.1.json").exists():
        print(f"{shared}: no SQuAD v1.1 train file; the payload needs ../shared/data", file=sys.stderr)
        return 2
    shutil.rmtree(out, ignore_errors=True)
    write_minilm_bf16(out / "minilm")
    for name in ("train-v1.1.json", "dev-v1.1.json"):
        gzip_copy(shared / "squad-v1.1" / name, out / f"{name}.gz")
    sizes = {str(p.relative_to(out)): p.stat().st_size for p in sorted(out.rglob("*")) if p.is_file()}
    total = sum(sizes.values())
    for name, size in sizes.items():
        print(f"{size / 2**20:8.2f} MiB  {name}")
    print(f"{total / 2**20:8.2f} MiB  total")
    if total > LIMIT_BYTES:
        print(f"payload {total / 2**20:.1f} MiB exceeds {LIMIT_BYTES / 2**20:.0f} MiB", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
