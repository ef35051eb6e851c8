"""The `wandb-files` command line, run as a user runs it (the keyless first start is in tests/server)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import wandb_files
from tests.support import LiveServer, cli, md5_b64, server_in_this_python, write_files
from wandb_files.patterns import glob_to_like


@server_in_this_python
def test_help_lists_the_server_commands() -> None:
    out = cli("--help").stdout
    assert "server" in out and "user" in out
    assert "--data-dir" in cli("server", "--help").stdout


@server_in_this_python
def test_user_add_prints_a_working_key_and_refuses_bad_or_taken_names(live_server: LiveServer) -> None:
    data = str(live_server.data_dir)
    out = cli("user", "add", "carol", "--data-dir", data).stdout
    key = out.strip().splitlines()[-1].split()[-1]
    assert out.strip().startswith("API key for carol:") and len(key) == 40
    assert wandb_files.Api(api_key=key, base_url=live_server.base_url).default_entity == "carol"

    again = cli("user", "add", "carol", "--data-dir", data, check=False)
    assert again.returncode == 1 and "carol" in again.stderr and "Traceback" not in again.stderr
    bad = cli("user", "add", "no/slash", "--data-dir", data, check=False)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr


# --- the file commands: ls, download, upload, rm ---------------------------------------------------------------

#: Names chosen so that `_` and `%` would match as wildcards if the glob were not escaped.
CONTENTS = {
    "config.yaml": b"lr: 0.1\n",
    "media/img_1.png": os.urandom(3000),
    "media/imgX1.png": os.urandom(1200),
    "data/100%.csv": b"a,b\n1,2\n",
}


def _env(server: LiveServer, api_key: str | None = None) -> dict[str, str]:
    return {**os.environ, "WANDB_BASE_URL": server.base_url, "WANDB_API_KEY": api_key or server.api_key}


def _api(server: LiveServer) -> wandb_files.Api:
    return wandb_files.Api(api_key=server.api_key, base_url=server.base_url)


def _run_with(server: LiveServer, tmp_path: Path, project: str, files: dict[str, bytes]) -> wandb_files.Run:
    run = _api(server).create_run(project=project)
    source = tmp_path / "src"
    write_files(source, files)
    run.upload_files([source / name for name in files], root=source, progress=False)
    return run


def _path(run: wandb_files.Run) -> str:
    return "/".join(run.path)


@pytest.mark.parametrize(
    ("glob", "like"),
    [
        ("*.json", "%.json"),
        ("media/img_?.png", "media/img\\__.png"),
        ("data/100%.csv", "data/100\\%.csv"),
        ("a\\b*", "a\\\\b%"),
        ("plain/name.txt", "plain/name.txt"),
    ],
)
def test_glob_to_like_translates_wildcards_and_escapes_like_metacharacters(glob: str, like: str) -> None:
    assert glob_to_like(glob) == like


def test_usage_errors_exit_2_before_any_request() -> None:
    from click.testing import CliRunner

    from wandb_files.cli import main

    runner = CliRunner()
    both = runner.invoke(
        main, ["--base-url", "http://127.0.0.1:9", "download", "e/p/r", "--replace", "--skip-existing"]
    )
    assert both.exit_code == 2 and "cannot be combined" in both.output
    neither = runner.invoke(main, ["rm", "e/p/r"])
    assert neither.exit_code == 2 and "NAMES or --pattern" in neither.output
    workers = runner.invoke(main, ["download", "e/p/r", "--workers", "0"])
    assert workers.exit_code == 2 and "--workers" in workers.output


def test_help_imports_neither_the_server_nor_rich_and_documents_exit_codes_and_examples() -> None:
    probe = (
        "import sys\n"
        "from wandb_files.cli import main\n"
        "for args in (['--help'], ['ls', '--help'], ['download', '--help'], ['upload', '--help'], ['rm', '--help']):\n"
        "    try:\n"
        "        main(args, prog_name='wandb-files')\n"
        "    except SystemExit as exc:\n"
        "        assert exc.code == 0, exc.code\n"
        "    print('@@', sorted(m for m in ('ariadne', 'sqlalchemy', 'starlette', 'rich') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.count("@@ []") == 5  # after each help page: no server module, no rich
    top, *commands = out.split("Usage: wandb-files")[1:]
    assert "Run the W&B-compatible file server" in top and "Manage the users" in top
    for code in ("0  success", "1  a file, the run or the server failed", "2  usage error", "3  authentication"):
        assert code in top
    assert len(commands) == 4 and all("Examples:\n    wandb-files " in page for page in commands)


def test_ls_prints_a_table_with_totals_json_lines_and_filters_by_glob(live_server: LiveServer, tmp_path: Path) -> None:
    run = _run_with(live_server, tmp_path, "cli-ls", CONTENTS)
    env = _env(live_server)

    table = cli("ls", _path(run), env=env).stdout
    rows = {line.split()[0]: line for line in table.splitlines() if line.split() and line.split()[0] in CONTENTS}
    assert set(rows) == set(CONTENTS)
    assert "3.0 kB" in rows["media/img_1.png"] and "8 B" in rows["config.yaml"]
    assert md5_b64(CONTENTS["data/100%.csv"]) in rows["data/100%.csv"]
    total = sum(map(len, CONTENTS.values()))
    assert f"4 files, {total:,} bytes" in table

    lines = [json.loads(line) for line in cli("ls", _path(run), "--json", env=env).stdout.splitlines()]
    assert {d["name"]: (d["size"], d["md5"]) for d in lines} == {n: (len(b), md5_b64(b)) for n, b in CONTENTS.items()}
    assert all(d["updated_at"] and d["url"] and d["mimetype"] for d in lines)

    def names(glob: str) -> list[str]:
        listed = cli("ls", _path(run), "--json", "--pattern", glob, env=env).stdout
        return [json.loads(line)["name"] for line in listed.splitlines()]

    assert names("media/img_?.png") == ["media/img_1.png"]  # `_` is literal: imgX1.png does not match
    assert names("*%*") == ["data/100%.csv"]  # `%` is literal
    filtered = cli("ls", _path(run), "--pattern", "*.yaml", env=env).stdout
    assert "config.yaml" in filtered and "img_1" not in filtered and "1 file, 8 bytes" in filtered


def test_download_writes_exact_bytes_and_respects_local_files(live_server: LiveServer, tmp_path: Path) -> None:
    run = _run_with(live_server, tmp_path, "cli-download", CONTENTS)
    env, out = _env(live_server), tmp_path / "out"

    first = cli("download", _path(run), "-o", str(out), "--workers", "2", env=env).stdout
    for name, data in CONTENTS.items():
        assert (out / name).read_bytes() == data
    total = sum(map(len, CONTENTS.values()))
    summary = rf"Downloaded 4 files \({total:,} bytes, .*\) in [\d.]+ s \([\d.]+ MB/s\) to {re.escape(str(out))}"
    assert re.search(summary, first)

    (out / "config.yaml").write_bytes(b"my local edit")
    refused = cli("download", _path(run), "-o", str(out), env=env, check=False)
    assert refused.returncode == 2 and "--replace" in refused.stderr and "--skip-existing" in refused.stderr
    assert (out / "config.yaml").read_bytes() == b"my local edit"

    kept = cli("download", _path(run), "-o", str(out), "--skip-existing", env=env)
    assert "Downloaded 0 files" in kept.stdout and "4 already there" in kept.stdout
    assert (out / "config.yaml").read_bytes() == b"my local edit"

    replaced = cli("download", _path(run), "-o", str(out), "--replace", "--no-progress", env=env)
    assert "Downloaded 1 file (8 bytes" in replaced.stdout and "3 already there" in replaced.stdout
    assert (out / "config.yaml").read_bytes() == CONTENTS["config.yaml"]

    some = tmp_path / "some"
    picked = cli("download", _path(run), "config.yaml", "nope.txt", "-o", str(some), env=env, check=False)
    assert picked.returncode == 1 and "not in run" in picked.stderr and "nope.txt" in picked.stderr
    assert [p.name for p in some.rglob("*") if p.is_file()] == ["config.yaml"]
    by_glob = tmp_path / "glob"
    cli("download", _path(run), "--pattern", "media/img_?.png", "-o", str(by_glob), env=env)
    assert sorted(p.relative_to(by_glob).as_posix() for p in by_glob.rglob("*") if p.is_file()) == ["media/img_1.png"]


def test_download_lists_the_file_that_failed_and_exits_1(live_server: LiveServer, tmp_path: Path) -> None:
    good, broken = os.urandom(777), os.urandom(1777)
    run = _run_with(live_server, tmp_path, "cli-broken", {"good.bin": good, "broken.bin": broken})
    blob = next(
        p
        for p in (live_server.data_dir / "blobs").rglob("*")
        if p.is_file() and p.stat().st_size == len(broken) and p.read_bytes() == broken
    )
    blob.unlink()  # the server now answers 404 for broken.bin's bytes

    result = cli("download", _path(run), "-o", str(tmp_path / "out"), env=_env(live_server), check=False)
    assert result.returncode == 1
    assert (tmp_path / "out" / "good.bin").read_bytes() == good
    assert not (tmp_path / "out" / "broken.bin").exists()
    assert "Downloaded 1 file (777 bytes" in result.stdout
    failed = [line for line in result.stderr.splitlines() if line.startswith("failed: ")]
    assert len(failed) == 1 and failed[0].startswith("failed: broken.bin: ") and "404" in failed[0]
    assert "1 of 2 files failed" in result.stderr and "Traceback" not in result.stderr
    assert "again" not in result.stderr  # a missing file stays missing: rerunning would not help


def test_upload_a_folder_then_ls_then_rm_refused_without_a_terminal_and_done_with_yes(
    live_server: LiveServer, tmp_path: Path, unique: str
) -> None:
    env = _env(live_server)
    folder = tmp_path / "results"
    files = {"results/metrics.json": b"{}", "results/plots/loss_1.png": os.urandom(500), "results/a b.txt": b"x"}
    write_files(tmp_path, files)
    path = f"admin/cli-upload/{unique}"

    missing = cli("upload", path, str(folder), "--root", str(tmp_path), env=env, check=False)
    assert missing.returncode == 1 and "--create" in missing.stderr
    up = cli("upload", path, str(folder), "--root", str(tmp_path), "--create", env=env).stdout
    assert f"Uploaded 3 files ({sum(map(len, files.values())):,} bytes" in up
    listed = [json.loads(line) for line in cli("ls", path, "--json", env=env).stdout.splitlines()]
    assert {d["name"]: d["size"] for d in listed} == {name: len(data) for name, data in files.items()}

    # No terminal and no --yes: refuse, remove nothing.
    refused = subprocess.run(
        [sys.executable, "-m", "wandb_files", "rm", path, "--pattern", "results/plots/*"],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )
    assert refused.returncode == 1 and "--yes" in refused.stderr and "results/plots/loss_1.png" in refused.stdout
    run = _api(live_server).run(path)
    assert len(run.files()) == 3

    removed = cli("rm", path, "results/plots/loss_1.png", "results/a b.txt", "--yes", env=env).stdout
    assert "Removed 2 files (501 bytes)" in removed
    assert [f.name for f in run.files()] == ["results/metrics.json"]


def test_errors_are_one_line_with_an_exit_code_and_debug_adds_the_traceback(
    live_server: LiveServer, unique: str
) -> None:
    api = _api(live_server)
    run = api.create_run(unique, "cli-errors")

    wrong_key = cli("ls", _path(run), env=_env(live_server, api_key="0" * 40), check=False)
    assert wrong_key.returncode == 3
    assert wrong_key.stderr.count("\n") == 1 and wrong_key.stderr.startswith("error: ")
    assert "WANDB_API_KEY" in wrong_key.stderr and "0" * 40 not in wrong_key.stderr

    unknown = cli("ls", f"admin/cli-errors/{unique}-nope", env=_env(live_server), check=False)
    assert unknown.returncode == 1 and unknown.stderr.count("\n") == 1
    assert "not found" in unknown.stderr and f"{unique}-nope" in unknown.stderr and "Traceback" not in unknown.stderr

    bad_path = cli("ls", "a/b/c/d/e", env=_env(live_server), check=False)
    assert bad_path.returncode == 2 and bad_path.stderr.startswith("error: run path")
    assert bad_path.stderr.count("\n") == 1

    debug = cli("--debug", "ls", f"admin/cli-errors/{unique}-nope", env=_env(live_server), check=False)
    assert debug.returncode == 1 and "Traceback (most recent call last)" in debug.stderr
    assert "NotFoundError" in debug.stderr and debug.stderr.rstrip().splitlines()[-1].startswith("error: ")


def _plant_file(server: LiveServer, run: wandb_files.Run, name: str) -> None:
    """A file row the server's name rules would refuse today: as old data, or another server, may hold."""
    import secrets
    import sqlite3

    with sqlite3.connect(server.data_dir / "wandb-files.db") as db:
        (run_id,) = db.execute(
            "SELECT runs.id FROM runs JOIN projects ON runs.project_id = projects.id "
            "WHERE projects.name = ? AND runs.name = ?",
            (run.project, run.id),
        ).fetchone()
        db.execute(
            "INSERT INTO files (run_id, name, size_bytes, md5, mimetype, blob_key, updated_at) "
            "VALUES (?, ?, 3, 'rL0Y20zC+Fzt72VPzMSk2A==', 'text/plain', ?, '2026-01-01 00:00:00')",
            (run_id, name, secrets.token_hex(16)),
        )
        db.execute("UPDATE runs SET file_count = file_count + 1 WHERE id = ?", (run_id,))


HOSTILE = "report\u202etxt.exe"


def test_hostile_names_are_printed_escaped_and_never_downloaded(
    live_server: LiveServer, tmp_path: Path, unique: str
) -> None:
    run = _run_with(live_server, tmp_path, f"cli-hostile{unique}", {"fine.txt": b"abc"})
    _plant_file(live_server, run, HOSTILE)
    _plant_file(live_server, run, "bell\x07\x1b[2Jgone")
    env = _env(live_server)
    listed = cli("ls", _path(run), env=env).stdout
    assert "report\\u202etxt.exe" in listed and "bell\\x07\\x1b[2Jgone" in listed
    assert "\u202e" not in listed and "\x1b" not in listed and "\x07" not in listed

    download = cli("download", _path(run), "-o", str(tmp_path / "out"), env=env, check=False)
    assert download.returncode == 1
    assert (tmp_path / "out" / "fine.txt").read_bytes() == b"abc"
    assert "\u202e" not in download.stderr and "refusing to write" in download.stderr
    assert "again" not in download.stderr  # refused names are refused again: no hint to rerun
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["fine.txt"]

    refused = cli("rm", _path(run), "--pattern", "*.exe", env=env, check=False)
    assert "report\\u202etxt.exe" in refused.stdout and "\u202e" not in refused.stdout + refused.stderr
    removed = cli("rm", _path(run), "--pattern", "*.exe", "--yes", env=env)
    assert "Removed 1 file (3 bytes)" in removed.stdout


def test_upload_checks_every_path_before_creating_the_run_and_skips_links_out_of_root(
    live_server: LiveServer, tmp_path: Path, unique: str
) -> None:
    env = _env(live_server)
    root = tmp_path / "results"
    write_files(root, {"metrics.json": b"{}", "checkpoints/epoch_10.ckpt": b"weights"})
    (root / "latest.ckpt").symlink_to("checkpoints/epoch_10.ckpt")
    (tmp_path / "secret.txt").write_text("private")
    (root / "leak.txt").symlink_to(tmp_path / "secret.txt")
    (root / "elsewhere").symlink_to(tmp_path, target_is_directory=True)

    bad = root / "bad\x1bname.txt"
    bad.write_text("x")
    path = f"admin/cli-links{unique}/r1"
    refused = cli("upload", path, str(root), "--root", str(root), "--create", env=env, check=False)
    assert refused.returncode == 2 and "cannot be a file name" in refused.stderr and "\x1b" not in refused.stderr
    with pytest.raises(wandb_files.NotFoundError):  # refused before --create made anything
        _api(live_server).run(path)
    bad.unlink()

    done = cli("upload", path, str(root), "--root", str(root), "--create", env=env)
    assert "skipped: " in done.stderr and "leak.txt" in done.stderr and "outside root" in done.stderr
    assert "elsewhere" in done.stderr and "not followed" in done.stderr
    stored = {f.name: f.md5 for f in _api(live_server).run(path).files()}
    assert stored == {
        "checkpoints/epoch_10.ckpt": md5_b64(b"weights"),
        "latest.ckpt": md5_b64(b"weights"),  # under the link's own name
        "metrics.json": md5_b64(b"{}"),
    }


def test_the_rerun_hint_follows_only_failures_a_rerun_can_fix(capsys: pytest.CaptureFixture[str]) -> None:
    from wandb_files.cli.app import report_failures as _report_failures
    from wandb_files.errors import NotFoundError, TransportError

    _report_failures([("a.bin", TransportError("a.bin: the connection broke"))], "download", 3)
    transient = capsys.readouterr().err
    assert "failed: a.bin: the connection broke\n" in transient  # the name is not repeated
    assert "1 of 4 files failed to download. Run the same command again" in transient
    _report_failures([("b.bin", NotFoundError("b.bin: HTTP 404"))], "download", 3)
    assert "again" not in capsys.readouterr().err
    _report_failures([("a", TransportError("x")), ("b", ValueError("refusing"))], "download", 0)
    assert "may help with 1 of them" in capsys.readouterr().err


@pytest.mark.slow
def test_a_closed_pipe_is_a_quiet_success_for_the_table_and_for_json(
    live_server: LiveServer, tmp_path: Path, unique: str
) -> None:
    """`wandb-files ls PATH | head`: the reader has what it wanted, whichever format it read."""
    run = _api(live_server).create_run(project=f"cli-pipe{unique}")
    source = tmp_path / "many"
    write_files(source, {f"logs/step_{i:05d}_with_a_longish_name.txt": b"x" for i in range(900)})
    run.upload_files(sorted(source.rglob("*.txt")), root=source, progress=False)
    for extra in ([], ["--json"]):
        reader = subprocess.Popen(
            [sys.executable, "-m", "wandb_files", "ls", _path(run), *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_env(live_server),
        )
        assert reader.stdout is not None and reader.stdout.readline()
        reader.stdout.close()  # as `head -1` does; more than a pipe's buffer is still to come
        _, err = reader.communicate(timeout=60)
        assert reader.returncode == 0 and err == b"", (extra, reader.returncode, err)


@server_in_this_python
def test_debug_shows_the_sdks_log_on_success_and_every_command_has_examples(
    live_server: LiveServer, tmp_path: Path, unique: str
) -> None:
    run = _run_with(live_server, tmp_path, f"cli-debug{unique}", {"a.txt": b"abc"})
    result = cli("--debug", "download", _path(run), "-o", str(tmp_path / "out"), env=_env(live_server))
    assert "RunFiles answered in" in result.stderr and "a.txt: 3 bytes verified" in result.stderr
    assert live_server.api_key not in result.stderr
    for command in (["server"], ["user"], ["user", "add"], ["ls"], ["download"], ["upload"], ["rm"]):
        assert "Examples:" in cli(*command, "--help").stdout, command


def _help_pages() -> dict[str, str]:
    """Every command's rendered `--help`, as a terminal 80 columns wide shows it."""
    from click.testing import CliRunner

    from wandb_files.cli import main

    pages = {}
    for command in (["ls"], ["download"], ["upload"], ["rm"], ["sync"], ["server"], ["user"], ["user", "add"]):
        result = CliRunner().invoke(main, [*command, "--help"], terminal_width=80)
        assert result.exit_code == 0, result.output
        pages[" ".join(command)] = result.output
    return pages


@server_in_this_python
def test_help_pages_print_no_literal_backslash_b_and_keep_each_example_on_its_line() -> None:
    pages = _help_pages()
    for command, page in pages.items():
        assert "\\b" not in page and "\b" not in page, command
        assert re.search(r"\n  Examples:\n    (wandb-files|export) ", page), command
    for line in (
        "wandb-files sync my-entity/my-project mirror/            # every run, into mirror/<run_id>/",
        "wandb-files sync my-entity/my-project/run_id mirror/ --pattern 'media/*.png'",
        "wandb-files sync my-entity/my-project mirror/ --delete --dry-run",
    ):
        assert f"\n    {line}\n" in pages["sync"], line


# --- expected conditions are typed errors with their own exit codes, never "report it" (#21) -------------------


@pytest.mark.parametrize("base_url", ["http://[::1", "http://127.0.0.1:99999", "http://127.0.0.1:port"])
def test_a_base_url_python_cannot_parse_is_a_configuration_error(base_url: str) -> None:
    """An unclosed IPv6 address was a usage error naming nothing; a port out of range was retried for 13 s."""
    result = cli(
        "ls", "admin/p/r", env={**os.environ, "WANDB_BASE_URL": base_url, "WANDB_API_KEY": "k" * 40}, check=False
    )
    assert result.returncode == 3, result.stderr
    assert result.stderr.strip() == (
        f"error: the base URL {base_url!r} is not an http(s) URL. Pass --base-url or set WANDB_BASE_URL, "
        "e.g. https://api.wandb.ai"
    )
    with pytest.raises(wandb_files.ConfigurationError, match="base_url must be an http"):
        wandb_files.Api(api_key="k" * 40, base_url=base_url)


def test_a_netrc_that_is_not_text_is_ignored_with_a_warning_naming_it(live_server: LiveServer, tmp_path: Path) -> None:
    """Bytes that are not UTF-8 in ~/.netrc were a usage error about a codec, naming neither the file nor a fix."""
    netrc = tmp_path / "netrc"
    netrc.write_bytes(b"\xff\xfe machine 127.0.0.1 login user password")
    env = {k: v for k, v in os.environ.items() if k != "WANDB_API_KEY"}
    result = cli(
        "ls", "admin/p/r", env={**env, "WANDB_BASE_URL": live_server.base_url, "NETRC": str(netrc)}, check=False
    )
    assert result.returncode == 3, result.stderr
    warning, error = result.stderr.strip().splitlines()
    assert warning.startswith(f"ignoring {netrc}: ") and "codec" in warning
    assert error.startswith(f"error: no API key for {live_server.base_url}")
