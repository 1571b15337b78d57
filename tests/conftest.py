from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from tiny import save_tiny_wan  # noqa: E402


@pytest.fixture(scope="session")
def tiny_wan(tmp_path_factory) -> Path:
    return save_tiny_wan(tmp_path_factory.mktemp("models") / "tiny-wan")


@pytest.fixture(scope="session")
def tiny_wan_euler(tmp_path_factory) -> Path:
    return save_tiny_wan(tmp_path_factory.mktemp("models") / "tiny-wan-euler", scheduler="euler")


@pytest.fixture(scope="session")
def tiny_wan_perframe(tmp_path_factory) -> Path:
    return save_tiny_wan(tmp_path_factory.mktemp("models") / "tiny-wan-perframe", vae="kl")
