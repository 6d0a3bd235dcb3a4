"""CI's slice of the kill -9 fault matrix (tests/faults): one trial per upload path against a
`sagestore serve` subprocess on the suite's PostgreSQL and SeaweedFS. `python -m tests.faults`
runs the full randomised matrix (50 trials per path)."""
from __future__ import annotations

import random

import pytest
from faults.clients import PATHS
from faults.matrix import Server, Target, create_bucket_row, run_trial

from sagestore.embedded import free_port


@pytest.fixture(scope="module")
def fault_server(base_settings):
    settings = base_settings.replace(s3_part_size=5 * 2**20)
    server = Server(settings, free_port())
    server.start()
    yield server, Target(server.settings, create_bucket_row(settings.database_url))
    server.stop()


@pytest.mark.parametrize("path", list(PATHS))
def test_kill_9_mid_upload_then_resume(fault_server, path):
    server, target = fault_server
    # killed at a random byte of the upload (always mid-upload, so the kill surely happens)
    result = run_trial(server, target, path, random.Random(), completion_share=0.0)
    assert result.passed, f"{result.error}\n{server.output[-3000:]}"
    assert result.kills >= 1 and result.lost == 0


@pytest.mark.parametrize("trial", range(3))
def test_ietf_kill_9_during_the_completing_patch(fault_server, trial):
    """Kills during the completing PATCH. The matrix found an IETF upload left 'completing' by such a
    kill, whose retry (empty PATCH, Upload-Complete: ?1) got 409; these trials do not reliably hit
    that window (they passed without the fix too), see docs/reliability.md."""
    server, target = fault_server
    result = run_trial(server, target, "ietf", random.Random(trial), completion_share=1.0)
    assert result.passed, f"{result.error}\n{server.output[-3000:]}"
    assert result.lost == 0
