"""Root conftest: light on purpose (unit tests pay nothing for it).

The kubernetes client reads ``$KUBECONFIG`` once, when it is first imported, and kopf's default
login goes through it. So the path of the test cluster's kubeconfig is exported here, at import
time, before any test module can import kubernetes or kopf. The file itself is written by the
integration tier's ``control_plane`` fixture. It also shields the developer's real cluster: no
test can reach whatever ``KUBECONFIG`` pointed at before.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SESSION_DIR = Path(tempfile.mkdtemp(prefix="dgd-tests-"))
os.environ["KUBECONFIG"] = str(SESSION_DIR / "kubeconfig")
os.environ.pop("KUBERNETES_SERVICE_HOST", None)  # never fall back to in-cluster config

# `from tests.helpers import wait_for` must work however pytest is launched.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``peer_corpus`` marker (see tests/peer_corpus.py)."""
    config.addinivalue_line(
        "markers", "peer_corpus: reads Dynamo's example files from outside the repository"
    )


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Without the peer corpus, skip its tests with a reason naming the variable; under CI fail."""
    if item.get_closest_marker("peer_corpus") is None:
        return
    from tests import peer_corpus

    if peer_corpus.present():
        return
    if peer_corpus.must_run():
        pytest.fail(peer_corpus.MISSING_REASON, pytrace=False)
    pytest.skip(peer_corpus.MISSING_REASON)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository's top-level directory."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def session_dir() -> Path:
    """A temporary directory for this test session (holds the test cluster's kubeconfig)."""
    return SESSION_DIR


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Remove the session directory after a green run; keep it (logs!) after a failure."""
    if exitstatus == 0:
        shutil.rmtree(SESSION_DIR, ignore_errors=True)
