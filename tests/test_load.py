"""The server under concurrent load: uploads, re-uploads, deletes and listings of one run from 16 clients.

Afterwards every listing was consistent, the final state is downloadable byte-exact, there is no orphan blob
and no orphan row, no half-written temp file, and no request failed with a 5xx.
"""

from __future__ import annotations

import contextlib
import os
import random
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import wandb_files
from tests.support import ADMIN_KEY, md5_b64, start_server, stop_server

CLIENTS = 16
OPS_PER_CLIENT = 15
NAMES = [f"shared/{i:02d}.bin" for i in range(12)]


@pytest.fixture
def own_server(tmp_path_factory: pytest.TempPathFactory):
    """A server of its own, so orphan checks see only this test's data."""
    server = start_server(tmp_path_factory.mktemp("load") / "data", ADMIN_KEY)
    yield server
    stop_server(server)


@pytest.mark.slow
def test_sixteen_clients_hammering_one_run_leave_it_consistent(own_server, tmp_path: Path) -> None:
    run_path = "/".join(
        wandb_files.Api(api_key=own_server.api_key, base_url=own_server.base_url).create_run(project="load").path
    )
    versions = [os.urandom(random.Random(i).randint(1, 200_000)) for i in range(8)]
    known_md5 = {md5_b64(v) for v in versions}
    sources = tmp_path / "src"
    for i in range(len(versions)):
        (sources / str(i)).mkdir(parents=True)
    problems: list[str] = []
    lock = threading.Lock()

    def client(seed: int) -> int:
        rng = random.Random(seed)
        api = wandb_files.Api(api_key=own_server.api_key, base_url=own_server.base_url)
        run = api.run(run_path)
        done = 0
        for _ in range(OPS_PER_CLIENT):
            op = rng.choice(["upload", "upload", "delete", "list"])
            name = rng.choice(NAMES)
            try:
                if op == "upload":
                    version = rng.randrange(len(versions))
                    local = sources / str(version) / f"{seed}" / name
                    local.parent.mkdir(parents=True, exist_ok=True)
                    local.write_bytes(versions[version])
                    uploaded = run.upload_file(local, root=sources / str(version) / f"{seed}")
                    assert uploaded.name == name
                elif op == "delete":
                    matches = run.files(names=[name])
                    for f in matches:
                        # Another client may have deleted or replaced it first: a fair race.
                        with contextlib.suppress(wandb_files.NotFoundError):
                            f.delete()
                else:
                    listed = list(run.files(per_page=5))
                    names = [f.name for f in listed]
                    if names != sorted(set(names)):
                        raise AssertionError(f"listing not sorted or has duplicates: {names}")
                    for f in listed:
                        if f.md5 not in known_md5:
                            raise AssertionError(f"{f.name} lists an md5 no client ever uploaded")
                done += 1
            except (wandb_files.IntegrityError, wandb_files.NotFoundError):
                # A concurrent re-upload or delete got in between our PUT and our check: reported, not lost.
                done += 1
            except Exception as exc:  # noqa: BLE001 - collected and reported together
                with lock:
                    problems.append(f"{op} {name}: {type(exc).__name__}: {exc}")
        return done

    with ThreadPoolExecutor(CLIENTS) as pool:
        completed = sum(pool.map(client, range(CLIENTS)))
    assert not problems, "\n".join(problems[:10])
    assert completed == CLIENTS * OPS_PER_CLIENT

    api = wandb_files.Api(api_key=own_server.api_key, base_url=own_server.base_url)
    final = list(api.run(run_path).files())
    assert final, "the run should still hold some files"
    out = tmp_path / "out"
    api.run(run_path).files().download(root=out, progress=False)
    for f in final:
        assert md5_b64((out / f.name).read_bytes()) == f.md5
        assert f.md5 in known_md5

    data = own_server.data_dir
    with sqlite3.connect(f"file:{data / 'wandb-files.db'}?mode=ro", uri=True) as db:
        referenced = {key for (key,) in db.execute("SELECT blob_key FROM files")}
        rows = db.execute("SELECT COUNT(*) FROM files").fetchone()[0]
    on_disk = {p.name for p in (data / "blobs").rglob("*") if p.is_file()}
    assert rows == len(final)
    assert on_disk == referenced, f"orphan blobs: {len(on_disk - referenced)}, missing: {len(referenced - on_disk)}"
    assert not list((data / "tmp").iterdir()), "half-written uploads left in tmp/"
    assert "Traceback" not in own_server.log()  # 5xx answers would have surfaced above as ServerError


def test_blob_digests_match_their_rows(own_server, tmp_path: Path) -> None:
    """Every stored blob's md5 is the md5 its row records (the server never commits a row before its bytes)."""
    api = wandb_files.Api(api_key=own_server.api_key, base_url=own_server.base_url)
    run = api.create_run(project="digests")
    for i in range(5):
        (tmp_path / f"{i}.bin").write_bytes(os.urandom(1000 * i))
    run.upload_files([tmp_path / f"{i}.bin" for i in range(5)], root=tmp_path, progress=False)
    data = own_server.data_dir
    with sqlite3.connect(f"file:{data / 'wandb-files.db'}?mode=ro", uri=True) as db:
        for key, md5 in db.execute("SELECT blob_key, md5 FROM files"):
            blob = next((data / "blobs").rglob(key))
            assert md5_b64(blob.read_bytes()) == md5
