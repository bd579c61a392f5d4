"""`make up` is idempotent: run again while up, it starts nothing and keeps every process."""

from __future__ import annotations

import subprocess
import sys

import pytest

from devstack import kafka, postgres, services
from tests.support.processes import ROOT
from tests.support.stack import Stack

pytestmark = pytest.mark.stack


def test_up_again_while_up_changes_nothing(stack: Stack) -> None:
    if stack.mode != "local":
        pytest.skip("this run does not use the native local stack")
    managed = [kafka.BROKER, postgres.SERVER, *(s.process for s in services.SERVICES)]
    before = {p.name: p.pid() for p in managed}
    assert all(before.values()), before
    done = subprocess.run(
        [sys.executable, "-m", "devstack", "up"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "started: nothing" in done.stdout
    assert {p.name: p.pid() for p in managed} == before
