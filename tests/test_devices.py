"""The cheap pipeline lookups (`concepts.devices`) answer as diffusers does, also after a move."""

import torch

from concepts.devices import execution_device, unet_dtype
from concepts.tiny import build_tiny_pipeline


def test_lookups_match_diffusers_and_follow_a_move():
    pipe = build_tiny_pipeline()  # its own: this test moves it
    assert execution_device(pipe) == pipe._execution_device
    assert unet_dtype(pipe) == pipe.unet.dtype == torch.float32
    pipe.to(dtype=torch.float64)
    assert unet_dtype(pipe) == pipe.unet.dtype == torch.float64
    assert execution_device(pipe) == pipe._execution_device


def test_each_pipeline_has_its_own_answer():
    first, second = build_tiny_pipeline(), build_tiny_pipeline()
    second.to(dtype=torch.float64)
    assert (unet_dtype(first), unet_dtype(second)) == (torch.float32, torch.float64)
