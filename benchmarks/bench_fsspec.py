"""What `wandb://` reads move: bytes on the wire for small reads, a column of a parquet file, and a glob.

    python benchmarks/bench_fsspec.py [--size-mib 64] [--files 2000]

Starts the embedded server on 127.0.0.1, uploads one `--size-mib` file of random bytes, a parquet file of two
columns, and a run of `--files` small files plus two that a glob matches. Every request then goes through a
byte-counting relay; the script prints the bytes the server's answers carried (headers included) for each read,
against the size of what it read from, and the time of a whole read through the filesystem against
`File.download` of the same file.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent))  # tests.support, when run from anywhere

import wandb_files
from tests.support import CountingRelay, write_files
from wandb_files.fsspec import WandbFileSystem
from wandb_files.testing import BackgroundServer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=64)
    parser.add_argument("--files", type=int, default=2000)
    args = parser.parse_args()
    import pyarrow as pa
    import pyarrow.parquet as pq

    with tempfile.TemporaryDirectory() as tmp, BackgroundServer(Path(tmp) / "data") as server:
        api = wandb_files.Api(api_key=server.api_key, base_url=server.base_url)
        size = args.size_mib << 20
        rows = 500_000
        noise = pa.FixedSizeBinaryArray.from_buffers(pa.binary(8), rows, [None, pa.py_buffer(os.urandom(rows * 8))])
        source = Path(tmp) / "src"
        source.mkdir()
        pq.write_table(pa.table({"noise": noise, "a": pa.array(range(rows))}), source / "t.parquet")
        (source / "big.bin").write_bytes(os.urandom(size))
        run = api.create_run(project="bench")
        run.upload_files([source / "big.bin", source / "t.parquet"], root=source, progress=False)
        many = {f"logs/step_{i:06d}.txt": b"x" for i in range(args.files)} | {"media/pred_1.png": b"p"}
        write_files(source / "many", many)
        crowd = api.create_run(project="bench")
        crowd.upload_files([source / "many" / n for n in many], root=source / "many", progress=False)
        big, table, crowded = "/".join(run.path) + "/big.bin", "/".join(run.path) + "/t.parquet", "/".join(crowd.path)

        with CountingRelay(server.base_url) as relay:
            fs = WandbFileSystem(api_key=server.api_key, base_url=relay.url, skip_instance_cache=True)
            fs.info(big)
            fs.info(table)

            def moved(what: str, of: int, call: object) -> None:
                relay.reset()
                call()  # type: ignore[operator]
                print(f"{what:<52} {relay.received:>12,} B on the wire, of {of:,} B ({relay.received / of:.5%})")

            moved("cat_file(path, 10 MiB, 10 MiB + 100)", size, lambda: fs.cat_file(big, 10 << 20, (10 << 20) + 100))

            def buffered(**options: object) -> None:
                with fs.open(big, "rb", **options) as f:
                    f.seek(10 << 20)
                    f.read(100)

            moved("open(rb) seek + read(100), default read-ahead", size, buffered)
            moved("open(rb, cache_type='none') seek + read(100)", size, lambda: buffered(cache_type="none"))
            parquet_size = fs.size(table)
            moved(
                "pyarrow.parquet.read_table(columns=['a'])",
                parquet_size,
                lambda: pq.read_table(table, filesystem=fs, columns=["a"]),
            )
            fs.info(crowded)
            relay.reset()
            fs.glob(f"{crowded}/media/pred_*.png")
            glob_bytes = relay.received
            relay.reset()
            fs.find(crowded)
            whole = relay.received
            print(f"glob media/pred_*.png in a run of {len(many):,} files: {glob_bytes:,} B; find(run): {whole:,} B")
        direct = WandbFileSystem(api_key=server.api_key, base_url=server.base_url, skip_instance_cache=True)
        direct.info(big)
        started = time.perf_counter()
        data = direct.cat_file(big)
        cat_seconds = time.perf_counter() - started
        assert len(data) == size
        del data
        started = time.perf_counter()
        direct.get_file(big, str(Path(tmp) / "got.bin"))
        get_seconds = time.perf_counter() - started
        started = time.perf_counter()
        api.run("/".join(run.path)).file("big.bin").download(root=str(Path(tmp) / "sdk"), replace=True).close()
        sdk_seconds = time.perf_counter() - started
        print(
            f"whole {args.size_mib} MiB: fs.cat_file {cat_seconds:.2f} s, fs.get_file {get_seconds:.2f} s, "
            f"File.download {sdk_seconds:.2f} s (get_file / download = {get_seconds / sdk_seconds:.2f})"
        )


if __name__ == "__main__":
    main()
