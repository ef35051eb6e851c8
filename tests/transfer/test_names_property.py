"""Property tests over generated file names: nothing is ever written outside the destination."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import wandb_files
from tests.support import LiveServer
from wandb_files import transfer
from wandb_files.server.names import InvalidName, validate_file_name

# Path-ish text: separators, dots, drive letters, NUL and control characters, look-alikes, long runs.
PIECES = st.sampled_from(["/", "\\", ".", "..", ":", "C:", "\x00", "\n", "a", "b", "Ａ", "․", "\u2215", " ", "~"])
NAMES = st.one_of(
    st.lists(PIECES, max_size=12).map("".join),
    st.text(max_size=40),
    st.text(alphabet="ab./", min_size=300, max_size=1200),
)
ROOT = Path("/tmp/wandb-files-property-root")


@given(NAMES)
@settings(max_examples=600, deadline=None)
def test_client_targets_are_inside_root_or_refused(name: str) -> None:
    try:
        target = transfer.target_path(ROOT, name)
    except ValueError:
        return
    assert target.is_relative_to(ROOT.resolve()) and target != ROOT.resolve()


@given(NAMES)
@settings(max_examples=600, deadline=None)
def test_every_name_the_server_accepts_lands_exactly_at_root_slash_name(name: str) -> None:
    try:
        validate_file_name(name)
    except InvalidName:
        return
    assert transfer.target_path(ROOT, name) == ROOT.resolve() / name


@pytest.mark.parametrize(
    "name", ["../x", "a/../../x", "/etc/passwd", "C:\\x", "C:x", "\\\\server\\x", "a\x00b", "a//b", "./a", "a/", ""]
)
def test_hostile_names_are_refused_by_the_server_and_nothing_is_created(
    live_server: LiveServer, name: str, unique: str, tmp_path: Path
) -> None:
    api = wandb_files.Api(api_key=live_server.api_key, base_url=live_server.base_url)
    run = api.create_run(project=f"hostile{unique}")
    with pytest.raises(wandb_files.BadRequestError, match="name"):
        run._upload_urls([name, "fine.txt"])
    assert len(run.files()) == 0


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_generated_names_round_trip_through_the_live_server(
    live_server: LiveServer, tmp_path_factory: pytest.TempPathFactory, name: str
) -> None:
    api = wandb_files.Api(api_key=live_server.api_key, base_url=live_server.base_url)
    run = api.create_run(project="generated-names")
    try:
        validate_file_name(name)
        accepted = True
    except InvalidName:
        accepted = False
    if not accepted:
        with pytest.raises(wandb_files.BadRequestError):
            run._upload_urls([name])
        return
    source = tmp_path_factory.mktemp("src")
    local = source / "payload"
    local.write_bytes(name.encode())
    url = run._upload_urls([name])[0][name]
    transfer.upload(api.client, url, local, name=name)
    root = tmp_path_factory.mktemp("dst")
    run.file(name).download(root=root).close()
    assert (root / name).read_bytes() == name.encode()
    assert [p for p in root.rglob("*") if p.is_file()] == [root / name]
