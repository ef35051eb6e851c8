"""`make demo`: the main job, end to end, against the embedded server on a fresh machine.

Starts `wandb-files server` on a free loopback port with a temporary data folder, creates a run, uploads a few
hundred small files in nested folders (in parallel), lists them with the SDK, downloads them all (in parallel,
each md5-verified and renamed into place atomically), checks every byte, prints a summary and stops the server.
"""

from __future__ import annotations

import hashlib
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import wandb_files
from wandb_files.testing import BackgroundServer

N_FILES = 300


def make_files(root: Path, n: int) -> dict[str, bytes]:
    """Small files in nested folders, shaped like a real run's: media, checkpoints, logs."""
    rng = random.Random(0)
    contents: dict[str, bytes] = {}
    for i in range(n):
        folder = ["media/images", "media/tables", f"checkpoints/epoch_{i % 5}", "logs", ""][i % 5]
        ext = [".png", ".table.json", ".pt", ".log", ".txt"][i % 5]
        name = f"{folder}/file_{i:04d}{ext}".lstrip("/")
        data = rng.randbytes(rng.randint(0, 64 * 1024))
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        contents[name] = data
    return contents


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="wandb-files-demo-") as tmp, BackgroundServer(Path(tmp) / "data") as server:
        print(f"server: {server.base_url} (data in {server.data_dir})")
        api = wandb_files.Api(api_key=server.api_key, base_url=server.base_url)
        print(f"logged in as: {api.default_entity}")

        source = Path(tmp) / "source"
        contents = make_files(source, N_FILES)
        run = api.create_run(project="demo", display_name="demo run")
        started = time.perf_counter()
        run.upload_files([source / name for name in contents], root=source)
        upload_s = time.perf_counter() - started
        print(f"uploaded {len(contents)} files ({sum(map(len, contents.values())):,} bytes) in {upload_s:.2f}s")

        run = api.run(f"{run.entity}/{run.project}/{run.id}")
        files = run.files(per_page=50)
        images = run.files(pattern="media/images/%")
        print(f"{run!r}: {len(files)} files, {len(images)} of them under media/images/")
        for f in files[:3]:
            print(f"  {f.name:40} {f.size:>8} bytes  md5={f.md5}  {f.mimetype}")

        dest = Path(tmp) / "downloaded"
        started = time.perf_counter()
        files.download(root=dest)
        download_s = time.perf_counter() - started
        bad = [n for n, data in contents.items() if (dest / n).read_bytes() != data]
        leftovers = list(dest.rglob("*.part"))
        print(f"downloaded {len(files)} files in {download_s:.2f}s; verified md5 of each")
        print(f"byte-for-byte mismatches: {len(bad)}; temp files left: {len(leftovers)}")
        digest = hashlib.sha256(b"".join(contents[n] for n in sorted(contents))).hexdigest()[:16]
        print(f"content fingerprint: {digest}")
        api.close()
        return 1 if bad or leftovers or len(files) != len(contents) else 0


if __name__ == "__main__":
    os.environ.pop("WANDB_API_KEY", None)  # the demo uses the embedded server's own key
    sys.exit(main())
