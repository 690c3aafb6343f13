"""Fuzzing (``make fuzz``): bounded, loopback only; the same cases every run unless
MEMBERBOT_FUZZ_RANDOM=1 (then new ones: run it that way now and then)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.e2e.conftest import clock, fake_api, make_bot  # noqa: F401

RANDOM = os.environ.get("MEMBERBOT_FUZZ_RANDOM") == "1"



@pytest.fixture
def fast_tmp(tmp_path):
    """A folder on tmpfs when there is one: the fuzzers write thousands of fsynced commits
    and measure the server's answers, not the disk."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    d = Path(tempfile.mkdtemp(prefix="memberbot-fuzz-", dir=shm))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)
