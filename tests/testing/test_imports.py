"""`wandb_files.testing` is where users import the test helpers from; the old paths still work, with a warning."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest

import wandb_files.testing
from wandb_files.testing import BackgroundServer, FaultProxy, free_port


def test_the_old_import_paths_work_for_one_release_with_a_deprecation_warning() -> None:
    from wandb_files.server import background, proxy

    with pytest.warns(DeprecationWarning, match="import BackgroundServer from wandb_files.testing"):
        assert background.BackgroundServer is BackgroundServer
    with pytest.warns(DeprecationWarning, match="wandb_files.testing"):
        assert background.free_port is free_port
    with pytest.warns(DeprecationWarning, match="import FaultProxy from wandb_files.testing"):
        assert proxy.FaultProxy is FaultProxy
    with pytest.raises(AttributeError):
        background.NoSuchThing


def test_the_new_paths_warn_nothing_and_import_neither_the_server_nor_aiohttp_until_used() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert wandb_files.testing.FaultProxy is FaultProxy
    code = (
        "import sys, wandb_files.testing as t; "
        "print(sorted(m for m in ('sqlalchemy', 'aiohttp', 'ariadne', 'wandb_files.server') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
