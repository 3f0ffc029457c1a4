"""The speed/memory switches give the plain fp32 path's results (within bfloat16 rounding) on the tiny model."""

from __future__ import annotations

import torch
from conftest import build_tiny, randomize_adapters
from sdmad.losses import SDMADLoss


def _loss_gradients(network, images, labels) -> dict[str, torch.Tensor]:
    network.train()
    network.zero_grad(set_to_none=True)
    image_features, sign_features, anchor = network(images, output="features")
    parts = SDMADLoss(margin=0.2)(image_features, labels, sign_features, network.sign_category, anchor)
    parts.total.backward()
    return {name: p.grad.clone() for name, p in network.named_parameters() if p.requires_grad}


def _saved_tensor_bytes(network, images) -> int:
    """Bytes autograd keeps for the backward pass of one training forward."""
    saved = []

    def pack(tensor):
        saved.append(tensor.numel() * tensor.element_size())
        return tensor

    network.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        network(images, output="features")
    return sum(saved)


def test_bfloat16_frozen_encoder_scores_like_float32(small_signs):
    plain = build_tiny(small_signs, seed=0)
    fast = build_tiny(small_signs, seed=0, frozen_dtype="bfloat16")
    randomize_adapters(plain, scale=0.05)
    fast.load_state_dict(plain.state_dict())  # same checkpoint for both
    assert all(p.dtype == torch.float32 for p in fast.parameters() if p.requires_grad)
    assert next(fast.clip.visual.parameters()).dtype == torch.bfloat16
    images = torch.rand(4, 3, 240, 240)
    with torch.inference_mode():
        plain_features, fast_features = plain.encode_images(images), fast.encode_images(images)
        assert fast_features.dtype == torch.float32
        assert torch.nn.functional.cosine_similarity(plain_features, fast_features).min() > 0.99
        torch.testing.assert_close(
            fast.score(images).category_scores, plain.score(images).category_scores, rtol=0, atol=0.02
        )
        torch.testing.assert_close(fast.sign_features(), plain.sign_features())  # the text side stays float32


def test_bfloat16_training_gradients_follow_float32(small_signs):
    plain = build_tiny(small_signs, seed=0)
    fast = build_tiny(small_signs, seed=0, frozen_dtype="bfloat16")
    randomize_adapters(plain, scale=0.05)
    fast.load_state_dict(plain.state_dict())
    images, labels = torch.rand(4, 3, 240, 240), torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0]])
    expected, got = _loss_gradients(plain, images, labels), _loss_gradients(fast, images, labels)
    for name in expected:
        cosine = torch.nn.functional.cosine_similarity(expected[name].flatten(), got[name].flatten(), dim=0)
        assert cosine > 0.95, name


def test_activation_checkpointing_gives_the_same_gradients_and_keeps_less(small_signs):
    plain = build_tiny(small_signs, seed=0)
    checkpointed = build_tiny(small_signs, seed=0, grad_checkpointing=True)
    randomize_adapters(plain, scale=0.05)
    checkpointed.load_state_dict(plain.state_dict())
    images, labels = torch.rand(2, 3, 240, 240), torch.tensor([[1.0, 0, 0], [0, 1, 1]])
    expected, got = _loss_gradients(plain, images, labels), _loss_gradients(checkpointed, images, labels)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=1e-6)
    assert _saved_tensor_bytes(checkpointed, images) < _saved_tensor_bytes(plain, images) / 2


def test_blocks_before_the_first_adapter_keep_no_activations(small_signs):
    """Autograd records nothing until a tensor needs grad: the frozen blocks before the first adapter run as if
    under no_grad, so an adapter on the last block only keeps that block's activations."""
    images = torch.rand(2, 3, 240, 240)
    all_blocks = _saved_tensor_bytes(build_tiny(small_signs, image_adapter_blocks=[6, 12, 18, 24]), images)
    last_block = _saved_tensor_bytes(build_tiny(small_signs, image_adapter_blocks=[24]), images)
    assert last_block < all_blocks / 2
