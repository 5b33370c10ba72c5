"""Device names: ``auto`` follows CUDA's presence; a bad name is a one-line error, not a torch traceback."""

from __future__ import annotations

import pytest
import torch

from lmstack.devices import resolve_device
from lmstack.errors import LmstackError


def test_auto_follows_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


def test_bad_name_is_a_clear_error(monkeypatch):
    with pytest.raises(LmstackError, match="device: 'gpu0' is not a valid torch device"):
        resolve_device("gpu0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(LmstackError, match="device: 'cuda' asked for, but .* sees no CUDA GPU"):
        resolve_device("cuda")
