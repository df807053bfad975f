"""Shared test setup: every test gets its own SEQPLAY_HOME, so runs and caches never leak."""

import pytest


@pytest.fixture(autouse=True)
def _seqplay_home(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("seqplay_home")
    monkeypatch.setenv("SEQPLAY_HOME", str(home))
    return home


def pytest_addoption(parser):
    parser.addoption("--corpora", default="/work/shared/corpora",
                     help="Folder holding tinyshakespeare.txt and wikitext-2/ for the slow corpus tests.")


@pytest.fixture
def wikitext2(request):
    """The WikiText-2 split folder given through --corpora (the test is skipped without it)."""
    from pathlib import Path

    path = Path(request.config.getoption("--corpora")) / "wikitext-2"
    if not (path / "train.txt").exists():
        pytest.skip(f"{path} not found (pass --corpora DIR)")
    return path
