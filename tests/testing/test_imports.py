"""`wandb_files.testing` is where users import the test helpers from."""

from __future__ import annotations

import subprocess
import sys
import warnings

import wandb_files.testing
from wandb_files.testing import FaultProxy


def test_the_helpers_warn_nothing_and_import_neither_the_server_nor_aiohttp_until_used() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert wandb_files.testing.FaultProxy is FaultProxy
    code = (
        "import sys, wandb_files.testing as t; "
        "print(sorted(m for m in ('sqlalchemy', 'aiohttp', 'ariadne', 'wandb_files.server') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
