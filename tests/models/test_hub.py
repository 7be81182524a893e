"""Remote weights offline: a cache miss names the file or folder to put in place."""

from __future__ import annotations

import time
import urllib.error

import pytest
import torch

from visionkit.errors import WeightsError
from visionkit.models import create_model
from visionkit.models._hub import hf_cache_dir, offline


def test_offline_is_read_at_call_time(monkeypatch):
    monkeypatch.setenv("VISIONKIT_OFFLINE", "1")
    assert offline()
    monkeypatch.setenv("VISIONKIT_OFFLINE", "0")
    assert not offline()
    monkeypatch.delenv("VISIONKIT_OFFLINE")
    assert not offline()


@pytest.mark.parametrize("spec", ["IMAGENET1K_V1", "DEFAULT"])
def test_an_uncached_torchvision_enum_offline_names_the_file_to_place(empty_caches, spec):
    expected = empty_caches / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    with pytest.raises(WeightsError, match="downloads are off") as error:
        create_model("resnet18", weights=spec)
    message = str(error.value)
    assert error.value.file == str(expected)
    assert f"place it as resnet18-f37072fd.pth in {expected.parent}" in message
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in message
    assert "\n" not in message


def test_a_failed_download_names_the_file_to_place(empty_caches, monkeypatch):
    monkeypatch.delenv("VISIONKIT_OFFLINE")
    calls = []

    def unreachable(url, dst, hash_prefix=None, progress=True):
        calls.append((url, dst, hash_prefix))
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(torch.hub, "download_url_to_file", unreachable)
    expected = empty_caches / "torch" / "hub" / "checkpoints" / "mobilenet_v3_small-047dcff4.pth"
    with pytest.raises(WeightsError, match=r"download failed.*no route to host") as error:
        create_model("mobilenet_v3_small", weights="DEFAULT")
    assert error.value.file == str(expected)
    assert calls == [(calls[0][0], str(expected), "047dcff4")]  # checked against its hash


def test_an_uncached_hf_repo_offline_names_the_cache_folder(empty_caches, monkeypatch):
    monkeypatch.delenv("VISIONKIT_OFFLINE")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cache = empty_caches / "hf" / "hub"
    assert hf_cache_dir() == cache

    start = time.monotonic()
    with pytest.raises(WeightsError, match="downloads are off") as error:
        create_model("deit-tiny", weights="DEFAULT")
    assert time.monotonic() - start < 10  # no network retries
    message = str(error.value)
    assert error.value.file == str(cache / "models--facebook--deit-tiny-patch16-224")
    assert f"into {cache}" in message and "hf download facebook/deit-tiny-patch16-224" in message
    assert "\n" not in message


def test_visionkit_offline_also_keeps_hf_off_the_network(empty_caches):
    with pytest.raises(WeightsError, match="models--facebook--deit-small-patch16-224"):
        create_model("deit-small", weights="hf:facebook/deit-small-patch16-224")


def test_a_missing_hf_folder_is_named(tmp_path):
    folder = tmp_path / "no" / "such" / "folder"
    with pytest.raises(WeightsError, match="no such folder") as error:
        create_model("deit-tiny", weights=f"hf:{folder}")
    assert error.value.file == str(folder)


def test_hf_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "explicit"))
    assert hf_cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.delenv("HF_HOME", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert hf_cache_dir() == tmp_path / "xdg" / "huggingface" / "hub"
