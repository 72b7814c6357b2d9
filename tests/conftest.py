"""Tiny shared fixtures: a clean environment, a temp install (config + .env + ledger)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support.install import write_install

ENV_PREFIXES = ("IPTVSYNC_", "MONETIZZE_", "PANEL_", "SMTP_")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """No stray setting from the developer's shell may leak into a test."""
    for key in list(os.environ):
        if key.startswith(ENV_PREFIXES):
            monkeypatch.delenv(key)


@pytest.fixture
def install(tmp_path) -> Path:
    """A ready install on the embedded defaults (dry-run panel, maildir); returns config.toml."""
    return write_install(tmp_path / "install")


@pytest.fixture
def cfg(install):
    from iptvsync.config import load_config

    return load_config(install)
