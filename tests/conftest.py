"""Shared test setup: every test gets its own SEQPLAY_HOME, so runs and caches never leak."""

import pytest


@pytest.fixture(autouse=True)
def _seqplay_home(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("seqplay_home")
    monkeypatch.setenv("SEQPLAY_HOME", str(home))
    return home
