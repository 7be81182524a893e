"""Fixtures of the model tests: a private registry, an empty offline cache, a tiny DeiT."""

from __future__ import annotations

from pathlib import Path

import pytest

from visionkit.models import registry


@pytest.fixture
def private_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """A copy of the registry for this test, so names it registers do not leak into others."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


@pytest.fixture
def empty_caches(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Empty torch hub and Hugging Face caches under ``tmp_path``, with downloads off."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("VISIONKIT_OFFLINE", "1")
    return tmp_path


@pytest.fixture
def tiny_deit() -> dict:
    """``ViTConfig`` overrides that make a DeiT small enough to build in milliseconds."""
    return {
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "patch_size": 8,
    }
