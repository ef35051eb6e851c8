"""The bulk engine (#14): both engines (pure Python, pycurl) agree; a bandwidth limit holds within 20 %;
429s lower the concurrency and the download still completes; listing and downloading overlap; dry runs write
nothing; the progress bar and the summaries count in the same units."""

from __future__ import annotations

import http.server
import io
import os
import sys
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from tqdm import tqdm

import wandb_files
from tests.support import LiveServer, md5_b64, random_files, write_files
from wandb_files import transfer
from wandb_files.errors import DownloadError, IntegrityError, LocalFilesDifferError, NotFoundError
from wandb_files.formatting import BYTE_UNIT, human_size
from wandb_files.graphql import GraphQLClient
from wandb_files.retry import RetryPolicy
from wandb_files.transfer.curl import CurlPool, curl_available
from wandb_files.transfer.flow import Cancel, ProgressCallback
from wandb_files.transfer.jobs import DownloadJob
from wandb_files.transfer.runner import Pool, ThreadPool

ENGINES = ["python", pytest.param("curl", marks=pytest.mark.skipif(not curl_available(), reason="no pycurl"))]


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("WANDB_FILES_ENGINE", request.param)
    return str(request.param)


@pytest.fixture(scope="module")
def api(live_server: LiveServer) -> wandb_files.Api:
    return wandb_files.Api(api_key=live_server.api_key, base_url=live_server.base_url)


def _run(api: wandb_files.Api, tmp_path: Path, contents: dict[str, bytes], project: str) -> wandb_files.Run:
    run = api.create_run(project=project)
    source = tmp_path / f"src-{run.id}"
    write_files(source, contents)
    run.upload_files([source / n for n in contents], root=source, progress=False)
    return run


@pytest.fixture(scope="module")
def forty(api: wandb_files.Api, tmp_path_factory: pytest.TempPathFactory) -> tuple[wandb_files.Run, dict]:
    contents = {f"d{i % 3}/{n}": data for i, (n, data) in enumerate(random_files(40, 20_000).items())}
    return _run(api, tmp_path_factory.mktemp("forty"), contents, "engine"), contents


def _tree(root: Path) -> dict[str, tuple[int, int, bool]]:
    """Every path under `root` with its size, mtime and whether it is a link: what a dry run must not change."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            info = path.lstat()
            found[str(path.relative_to(root))] = (info.st_size, info.st_mtime_ns, path.is_symlink())
    return found


# --- both engines ---------------------------------------------------------------------------------------


def test_both_engines_download_byte_exact_and_skip_what_is_there(engine: str, forty: tuple, tmp_path: Path) -> None:
    run, contents = forty
    paths = run.files(per_page=7).download(tmp_path, progress=False)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in paths) == sorted(contents)
    assert all((tmp_path / n).read_bytes() == d for n, d in contents.items())
    assert not list(tmp_path.rglob("*.part"))
    mtimes = {n: (tmp_path / n).stat().st_mtime_ns for n in contents}
    again = run.files().download(tmp_path, progress=False)  # all there: nothing fetched
    assert len(again) == len(contents) and {n: (tmp_path / n).stat().st_mtime_ns for n in contents} == mtimes


def test_both_engines_fail_each_file_when_its_folder_cannot_be_made(engine: str, forty: tuple) -> None:
    """A folder no one may create (under /proc): every file fails with the OSError, promptly. The curl engine's
    loop died on it (an unbound name in its error path), and the download then waited forever."""
    run, contents = forty
    root = Path("/proc/wandb-files-cannot-be-made")
    outcome: list[BaseException] = []

    def download() -> None:
        try:
            run.files(per_page=50).download(root, progress=False)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome.append(exc)

    worker = threading.Thread(target=download, daemon=True)  # a daemon: a hang fails the test, not the suite
    worker.start()
    worker.join(timeout=20)
    assert not worker.is_alive(), "the download hung"
    with pytest.raises(DownloadError) as caught:
        raise outcome[0]
    assert len(caught.value.failures) == len(contents)
    assert all(isinstance(error, OSError) for _, error in caught.value.failures), caught.value.failures[:3]


def test_both_engines_raise_the_same_errors(
    engine: str, api: wandb_files.Api, live_server: LiveServer, tmp_path: Path, unique: str
) -> None:
    contents = {"good.bin": os.urandom(50_000), "bad.bin": os.urandom(50_000), "gone.bin": os.urandom(10)}
    run = _run(api, tmp_path, contents, f"errors{unique}")
    listed = {f.name: f for f in run.files()}
    blob = next(
        p for p in (live_server.data_dir / "blobs").rglob("*") if p.is_file() and p.read_bytes() == contents["bad.bin"]
    )
    blob.write_bytes(contents["bad.bin"][:-1] + bytes([contents["bad.bin"][-1] ^ 1]))
    run.file("gone.bin").delete()
    client = GraphQLClient(
        live_server.base_url, live_server.api_key, retry=RetryPolicy(max_attempts=2, backoff_base=0.01)
    )
    jobs = [listed[n].download_job(tmp_path / "out") for n in sorted(listed)]
    with pytest.raises(DownloadError) as caught:
        transfer.download_many(client, jobs, engine=transfer.choose_engine(client), progress=False)
    failures = dict(caught.value.failures)
    assert isinstance(failures["bad.bin"], IntegrityError) and isinstance(failures["gone.bin"], NotFoundError)
    assert caught.value.results == [tmp_path / "out/good.bin"]
    assert (tmp_path / "out/good.bin").read_bytes() == contents["good.bin"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.bin"]  # no partial, no temp file


def test_both_engines_resume_a_temp_file_left_by_a_crash(engine: str, forty: tuple, tmp_path: Path) -> None:
    run, contents = forty
    name = sorted(contents)[0]
    part = transfer.part_path(tmp_path / name)
    part.parent.mkdir(parents=True)
    part.write_bytes(contents[name][:7_000])  # what a killed download left
    run.files(names=[name]).download(tmp_path, progress=False)
    assert (tmp_path / name).read_bytes() == contents[name] and not part.exists()


def test_the_engine_a_caller_passes_is_the_one_used(
    engine: str, api: wandb_files.Api, forty: tuple, tmp_path: Path
) -> None:
    """`download_many` runs the engine its caller gives it: every job of the call goes to that engine's pool,
    which is the one `choose_engine` picked for the setting (wrapped here to count what it is given)."""
    run, contents = forty
    chosen = transfer.choose_engine(api.client)
    pools: list[Pool[DownloadJob, Path]] = []
    submitted: list[str] = []

    class Counting:
        def __init__(self, workers: int, fallback: Any, advance: ProgressCallback, cancel: Cancel) -> None:
            self.pool = chosen(workers, fallback, advance, cancel)
            pools.append(self.pool)

        def submit(self, job: DownloadJob) -> Future[Path]:
            submitted.append(job.name)
            return self.pool.submit(job)

        def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
            self.pool.shutdown(wait, cancel_futures=cancel_futures)

    jobs = [f.download_job(tmp_path) for f in run.files(per_page=50)]
    paths = transfer.download_many(api.client, jobs, engine=Counting, progress=False)
    assert sorted(submitted) == sorted(contents) and len(pools) == 1
    assert type(pools[0]) is (CurlPool if engine == "curl" else ThreadPool)
    assert paths == [job.target for job in jobs]
    assert all((tmp_path / n).read_bytes() == d for n, d in contents.items())


def test_the_engine_follows_the_setting_pycurl_and_the_session(monkeypatch: pytest.MonkeyPatch) -> None:
    """`choose_engine`'s rules: ``WANDB_FILES_ENGINE`` (``python``, ``curl``, ``auto``), whether pycurl imports,
    and whether the session is one only requests understands (proxies of its own)."""
    client = GraphQLClient("http://127.0.0.1:9", "k" * 40)  # never contacted
    monkeypatch.setenv("WANDB_FILES_ENGINE", "python")
    assert transfer.choose_engine(client) is ThreadPool
    monkeypatch.setenv("WANDB_FILES_ENGINE", "fastest")
    with pytest.raises(ValueError, match="WANDB_FILES_ENGINE must be one of auto, curl, python"):
        transfer.choose_engine(client)
    if curl_available():
        for choice in ("auto", "curl"):
            monkeypatch.setenv("WANDB_FILES_ENGINE", choice)
            assert transfer.choose_engine(client) is not ThreadPool
        client.session.proxies = {"https": "http://127.0.0.1:9"}
        assert transfer.choose_engine(client) is ThreadPool
    monkeypatch.setitem(sys.modules, "pycurl", None)  # as without pycurl: importing it fails
    monkeypatch.setenv("WANDB_FILES_ENGINE", "auto")
    assert transfer.choose_engine(client) is ThreadPool
    monkeypatch.setenv("WANDB_FILES_ENGINE", "curl")
    with pytest.raises(ImportError, match="WANDB_FILES_ENGINE=curl needs pycurl"):
        transfer.choose_engine(client)


# --- politeness -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [1_500_000, "1.5MB"])
def test_max_bandwidth_holds_within_20_percent(
    engine: str, api: wandb_files.Api, tmp_path: Path, unique: str, limit: float | str
) -> None:
    contents = random_files(12, 250_000)  # 3 MB: 2 s at 1.5 MB/s
    run = _run(api, tmp_path, contents, f"bw{unique}")
    started = time.monotonic()
    run.files().download(tmp_path / "out", max_bandwidth=limit, progress=False)
    elapsed = time.monotonic() - started
    assert 0.8 * 2.0 <= elapsed <= 1.2 * 2.0, elapsed
    assert all((tmp_path / "out" / n).read_bytes() == d for n, d in contents.items())


def test_max_bandwidth_from_the_environment_and_for_uploads(
    api: wandb_files.Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unique: str
) -> None:
    contents = random_files(8, 250_000)  # 2 MB: 2 s at 1 MB/s
    write_files(tmp_path / "src", contents)
    run = api.create_run(project=f"bwup{unique}")
    monkeypatch.setenv("WANDB_FILES_MAX_BANDWIDTH", "1MB")
    started = time.monotonic()
    run.upload_files([tmp_path / "src" / n for n in contents], root=tmp_path / "src", progress=False)
    elapsed = time.monotonic() - started
    assert 0.8 * 2.0 <= elapsed <= 1.2 * 2.0, elapsed
    assert {f.name: f.md5 for f in run.files()} == {n: md5_b64(d) for n, d in contents.items()}
    monkeypatch.setenv("WANDB_FILES_MAX_BANDWIDTH", "fast")
    with pytest.raises(ValueError, match="WANDB_FILES_MAX_BANDWIDTH"):
        run.files().download(tmp_path / "out")
    with pytest.raises(ValueError, match="max_bandwidth"):
        run.files().download(tmp_path / "out", max_bandwidth=0)
    assert not (tmp_path / "out").exists()


class _Busy(http.server.ThreadingHTTPServer):
    """Serves /<i> (20 kB each, 50 ms an answer) and answers 429 to any request beyond `limit` at once;
    records, for every request, how many were in flight when it arrived."""

    daemon_threads = True
    request_queue_size = 64  # the default backlog of 5 would turn 32 connections away at the start

    def __init__(self, limit: int, bodies: list[bytes]) -> None:
        self.limit = limit
        self.bodies = bodies
        self.lock = threading.Lock()
        self.active = 0
        self.seen: list[tuple[int, int]] = []  # (in flight on arrival, status)
        super().__init__(("127.0.0.1", 0), _BusyHandler)


class _BusyHandler(http.server.BaseHTTPRequestHandler):
    server: _Busy
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        server = self.server
        with server.lock:
            server.active += 1
            busy = server.active > server.limit
            server.seen.append((server.active, 429 if busy else 200))
        try:
            time.sleep(0.05)  # every answer takes a while, so that what is in flight is what the client sent
            if busy:
                self.send_response(429)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = server.bodies[int(self.path.strip("/"))]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        finally:
            with server.lock:
                server.active -= 1

    def log_message(self, *args: Any) -> None:
        pass


def test_429s_lower_the_concurrency_and_the_download_completes(engine: str, tmp_path: Path) -> None:
    bodies = [os.urandom(20_000) for _ in range(150)]
    server = _Busy(4, bodies)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        client = GraphQLClient(base, "k" * 40, retry=RetryPolicy(max_attempts=30, backoff_base=0.05, backoff_max=0.5))
        jobs = [
            transfer.DownloadJob(f"{base}/{i}", tmp_path / f"{i:03d}.bin", f"{i:03d}.bin", len(b), md5_b64(b))
            for i, b in enumerate(bodies)
        ]
        paths = transfer.download_many(
            client, jobs, engine=transfer.choose_engine(client), max_workers=32, progress=False
        )
    finally:
        server.shutdown()
    assert all(p.read_bytes() == b for p, b in zip(paths, bodies, strict=True))
    first, last = server.seen[:60], server.seen[-60:]
    peak, settled = max(active for active, _ in first), max(active for active, _ in last)
    assert peak > 8 and settled <= 8 and settled < peak, server.seen  # from all 32 workers to the server's pace
    assert sum(status == 429 for _, status in last) < sum(status == 429 for _, status in first), server.seen


# --- pipelining -----------------------------------------------------------------------------------------


def _slow_pages(api: wandb_files.Api, root: Path, monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """Each files page after the first waits 0.3 s (a long listing); returns, for every page request, how many
    files were already under `root` when it was sent."""
    real = api.client.execute
    pages: list[tuple[int, int]] = []

    def execute(document: Any, variables: Any = None, **kwargs: Any) -> Any:
        if variables and "fileCursor" in variables:
            on_disk = sum(1 for p in root.rglob("*.bin") if p.is_file()) if root.exists() else 0
            pages.append((len(pages), on_disk))
            if variables.get("fileCursor"):
                time.sleep(0.3)
        return real(document, variables, **kwargs)

    monkeypatch.setattr(api.client, "execute", execute)
    return pages


@pytest.mark.parametrize("how", ["Files.download", "download_files"])
def test_the_first_files_are_on_disk_before_the_last_page_is_requested(
    engine: str, api: wandb_files.Api, forty: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    run, contents = forty
    root = tmp_path / "out"
    pages = _slow_pages(api, root, monkeypatch)
    files = api.run("/".join(run.path)).files(per_page=10)
    if how == "Files.download":
        files.download(root, max_workers=4, progress=False)
        done = root
    else:
        wandb_files.download_files(files, root, max_workers=4, progress=False)
        done = root / run.id
    assert len(pages) == 4  # 40 files, 10 a page
    assert pages[-1][1] >= 1, pages  # files of the first pages were done while the last was still to come
    assert all((done / n).read_bytes() == d for n, d in contents.items())


def test_a_folder_holding_files_is_checked_before_anything_moves(forty: tuple, tmp_path: Path) -> None:
    run, contents = forty
    name = sorted(contents)[-1]  # on the last page: found only once the whole listing is read
    write_files(tmp_path, {name: b"mine"})
    with pytest.raises(LocalFilesDifferError):
        run.files(per_page=10).download(tmp_path, progress=False)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == [tmp_path / name]


# --- dry runs -------------------------------------------------------------------------------------------


def test_a_dry_run_says_what_would_happen_and_writes_nothing(forty: tuple, tmp_path: Path) -> None:
    run, contents = forty
    names = sorted(contents)
    root = tmp_path / "out"
    write_files(root, {names[0]: contents[names[0]], names[1]: b"differs"})
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", root / "d2")  # a folder on the way that is a link: refused
    before = _tree(tmp_path)

    planned = run.files(per_page=10).download(root, dry_run=True)
    assert _tree(tmp_path) == before
    by_name = {r.name: r for r in planned}
    assert set(by_name) == set(names)
    assert by_name[names[0]].action == "skip" and "same bytes" in (by_name[names[0]].reason or "")
    assert by_name[names[1]].action == "refuse" and "LocalFilesDifferError" in (by_name[names[1]].reason or "")
    d2 = [n for n in names if n.startswith("d2/")]
    assert all(by_name[n].action == "refuse" and "symbolic link" in (by_name[n].reason or "") for n in d2)
    fresh = [n for n in names[2:] if not n.startswith("d2/")]
    assert all(by_name[n].action == "download" and by_name[n].path == root / n for n in fresh)
    assert sum(by_name[n].size or 0 for n in fresh) == sum(len(contents[n]) for n in fresh)

    replaced = {r.name: r for r in run.files().download(root, replace=True, dry_run=True)}
    assert replaced[names[1]].action == "download" and replaced[names[1]].replaces
    kept = {r.name: r for r in run.files().download(root, exist_ok=True, dry_run=True)}
    assert kept[names[1]].action == "skip"
    table = wandb_files.download_files(run.files(), tmp_path / "table", dry_run=True)
    assert {r.action for r in table} == {"download"} and len(table) == len(names)
    assert all(isinstance(r, wandb_files.DryRunFile) for r in table)
    assert _tree(tmp_path) == before


def test_the_cli_dry_run_prints_the_plan_and_writes_nothing(
    forty: tuple, live_server: LiveServer, tmp_path: Path
) -> None:
    from tests.support import cli

    run, contents = forty
    root = tmp_path / "out"
    name = sorted(contents)[0]
    write_files(root, {name: contents[name]})
    before = _tree(tmp_path)
    env = {**os.environ, "WANDB_BASE_URL": live_server.base_url, "WANDB_API_KEY": live_server.api_key}
    out = cli("download", "/".join(run.path), "-o", str(root), "--dry-run", env=env).stdout
    assert out.count("\nwould download ") == len(contents) - 1 and f"would skip {name}" in out
    total = sum(len(d) for n, d in contents.items() if n != name)
    assert f"would download {len(contents) - 1} files ({total:,} bytes" in out and "nothing written" in out
    assert _tree(tmp_path) == before
    bad = cli("download", "/".join(run.path), "-o", str(root), "--max-bandwidth", "lots", env=env, check=False)
    assert bad.returncode == 2 and "--max-bandwidth" in bad.stderr


# --- units ----------------------------------------------------------------------------------------------


def test_the_bar_and_the_summaries_count_in_the_same_units() -> None:
    for n in (999, 1_500, 2_340_000, 7_100_000_000):
        bar = tqdm(total=n, unit="B", unit_scale=True, unit_divisor=BYTE_UNIT, file=io.StringIO(), initial=n)
        shown = bar.format_dict
        bar.close()
        text = tqdm.format_sizeof(shown["total"], divisor=shown["unit_divisor"])
        number, unit = human_size(n).split()
        assert (text[-1] if text[-1] in "kMGT" else "") + "B" == unit, (text, unit)
        assert abs(float(text.rstrip("kMGT")) - float(number)) < 0.06 * float(number), (text, number)


# --- crashes --------------------------------------------------------------------------------------------

KILLED_CHILD = """
import sys
import wandb_files
base_url, key, path, root = sys.argv[1:5]
wandb_files.Api(api_key=key, base_url=base_url).run(path).files().download(root=root, max_workers=4, progress=False)
"""


def test_kill_9_mid_download_on_either_engine_leaves_no_wrong_file_and_a_rerun_completes(
    engine: str, api: wandb_files.Api, live_server: LiveServer, tmp_path: Path, unique: str
) -> None:
    import signal
    import subprocess
    import sys

    from wandb_files.testing import FaultProxy

    contents = random_files(16, 300_000)
    run = _run(api, tmp_path, contents, f"kill{unique}")
    root = tmp_path / "out"
    with FaultProxy(live_server.base_url, bytes_per_second=600_000) as proxy:
        child = subprocess.Popen(
            [sys.executable, "-c", KILLED_CHILD, proxy.url, live_server.api_key, "/".join(run.path), str(root)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 30
        while not (root.exists() and any(p.name.startswith("f_") for p in root.iterdir())):
            assert time.monotonic() < deadline and child.poll() is None, child.communicate()
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=30)
    finals = [p for p in root.iterdir() if p.name.startswith("f_")]
    assert 0 < len(finals) < len(contents)
    assert all(p.read_bytes() == contents[p.name] for p in finals)  # never a partial file under a final name
    run.files().download(root, progress=False)
    assert all((root / n).read_bytes() == d for n, d in contents.items())
    assert not list(root.glob(".*.part"))
