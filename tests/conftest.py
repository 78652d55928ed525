"""Session-wide test setup: offline model hubs, a throwaway GRAPHREC_HOME, fresh settings per test.

Done at import time (before any test module imports ``transformers`` or builds settings):

- ``HF_HUB_OFFLINE=1`` and ``TRANSFORMERS_OFFLINE=1``: nothing downloads model weights.
- ``GRAPHREC_HOME`` points at a temporary folder, so tests never touch the user's models,
  snapshots or provisioned server. The user's real home is kept in ``GRAPHREC_TEST_JAR_HOME``:
  throwaway Neo4j servers reuse the Neo4j jars already downloaded there (see
  ``tests/integration/conftest.py``) instead of downloading them again.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from platformdirs import user_cache_dir

#: The graphrec home before the tests replaced it; holds the shared Neo4j jar cache.
ORIGINAL_GRAPHREC_HOME = Path(os.environ.get("GRAPHREC_HOME") or user_cache_dir("graphrec")).expanduser().absolute()

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRAPHREC_TEST_JAR_HOME", str(ORIGINAL_GRAPHREC_HOME))
_TEST_HOME = Path(tempfile.mkdtemp(prefix="graphrec-test-home-"))
os.environ["GRAPHREC_HOME"] = str(_TEST_HOME)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove the temporary GRAPHREC_HOME at the end of the session."""
    shutil.rmtree(_TEST_HOME, ignore_errors=True)


@pytest.fixture(autouse=True)
def _fresh_settings() -> Iterator[None]:
    """Clear the ``get_settings`` cache around every test, so env changes (monkeypatch.setenv) take effect."""
    from graphrec.settings import get_settings

    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def graphrec_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private, empty GRAPHREC_HOME for one test (settings cache cleared)."""
    from graphrec.settings import get_settings

    home = tmp_path / "graphrec-home"
    home.mkdir()
    monkeypatch.setenv("GRAPHREC_HOME", str(home))
    get_settings.cache_clear()
    return home
