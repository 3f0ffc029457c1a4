from __future__ import annotations

import pytest
import torch
from conftest import build_tiny, randomize_adapters
from sdmad.losses import SDMADLoss
from sdmad.networks import SDMADNetwork, load_clip, map_adapter_blocks


def test_map_adapter_blocks():
    assert map_adapter_blocks([6, 12, 18, 24], depth=24) == [6, 12, 18, 24]
    assert map_adapter_blocks([6, 12, 18, 24], depth=4) == [1, 2, 3, 4]
    assert map_adapter_blocks([6, 12, 18, 24], depth=12) == [3, 6, 9, 12]
    assert map_adapter_blocks([6, 8, 18, 24], depth=24) == [6, 8, 18, 24]  # the paper's text variant
    with pytest.raises(ValueError, match="outside 1..24"):
        map_adapter_blocks([0, 6], depth=24)


def test_lambda_one_gives_frozen_clip_features(small_signs):
    torch.manual_seed(0)
    frozen_clip, tokenizer = load_clip("sdmad-tiny")
    network = build_tiny(small_signs, seed=0, lam=1.0)
    randomize_adapters(network)  # whatever the adapters hold, lambda = 1 ignores them
    images = torch.rand(2, 3, 240, 240)
    with torch.no_grad():
        assert torch.equal(network.encode_images(images), frozen_clip.encode_image(images, normalize=True))
        prompts = small_signs.sign_prompts
        expected_text = frozen_clip.encode_text(tokenizer(prompts), normalize=True)
        assert torch.equal(network.encode_prompts(prompts), expected_text)
        torch.testing.assert_close(network.sign_features(), expected_text, rtol=0, atol=1e-6)


def test_adapters_change_features(tiny_network):
    images = torch.rand(2, 3, 240, 240)
    before = tiny_network.encode_images(images).detach()
    randomize_adapters(tiny_network)
    assert not torch.allclose(before, tiny_network.encode_images(images))


def test_only_adapter_parameters_train_and_their_count_follows_the_config(small_signs):
    network = build_tiny(small_signs, bottleneck_ratio=0.25)
    trainable = {name: p for name, p in network.named_parameters() if p.requires_grad}
    assert all(name.startswith(("image_adapters.", "text_adapter.")) for name in trainable)
    assert sorted({name.split(".")[1] for name in trainable if name.startswith("image_adapters.")}) == [
        "1",
        "2",
        "3",
        "4",
    ]
    image_width, text_width = 128, 128  # sdmad-tiny.json
    expected = 4 * 2 * image_width * round(image_width * 0.25) + 2 * text_width * round(text_width * 0.25)
    assert network.adapter_parameter_count() == expected == sum(p.numel() for p in trainable.values())
    no_text = build_tiny(small_signs, text_adapter=False)
    assert not any(name.startswith("text_adapter") for name, _ in no_text.named_parameters())


def test_features_are_unit_norm(tiny_network, small_signs):
    randomize_adapters(tiny_network)
    ones = lambda x: torch.testing.assert_close(x.norm(dim=-1), torch.ones(x.shape[:-1]))  # noqa: E731
    ones(tiny_network.encode_images(torch.rand(3, 3, 240, 240)))
    ones(tiny_network.encode_prompts(["any prompt"]))
    ones(tiny_network.sign_features())
    ones(tiny_network.anchor_feature())


def test_cached_text_path_equals_full_path(tiny_network, small_signs):
    randomize_adapters(tiny_network)
    full = tiny_network.encode_prompts(small_signs.sign_prompts)
    cached = tiny_network.sign_features()
    torch.testing.assert_close(cached, full, rtol=0, atol=1e-6)
    normal_full = torch.nn.functional.normalize(tiny_network.encode_prompts(list(small_signs.normal)).mean(0), dim=-1)
    torch.testing.assert_close(tiny_network.anchor_feature(), normal_full, rtol=0, atol=1e-6)


def test_gradient_reaches_adapters_only(tiny_network, small_signs):
    randomize_adapters(tiny_network, scale=0.1)
    tiny_network.train()
    labels = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    parts = SDMADLoss()(
        tiny_network.encode_images(torch.rand(2, 3, 240, 240)),
        labels,
        tiny_network.sign_features(),
        tiny_network.sign_category,
        tiny_network.anchor_feature(),
    )
    parts.total.backward()
    for name, parameter in tiny_network.named_parameters():
        if parameter.requires_grad:
            assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
        else:
            assert parameter.grad is None, name
    assert not tiny_network.clip.training  # frozen CLIP stays in eval mode


def test_forward_gives_one_score_per_category(tiny_network, small_signs):
    scores = tiny_network(torch.rand(5, 3, 240, 240))
    assert scores.shape == (5, len(small_signs.category_names)) and scores.dtype == torch.float32
    assert bool(((scores >= -1) & (scores <= 1)).all())


def test_state_dict_holds_adapters_only_and_loads_strictly(tiny_network, small_signs):
    randomize_adapters(tiny_network)
    state = tiny_network.state_dict()
    assert all(key.startswith(("image_adapters.", "text_adapter.")) for key in state)
    other = build_tiny(small_signs, seed=0)
    other.load_state_dict(state)  # strict: only adapter keys are checked
    images = torch.rand(2, 3, 240, 240)
    assert torch.equal(other(images), tiny_network(images))
    different_blocks = build_tiny(small_signs, seed=0, image_adapter_blocks=[12, 24])
    with pytest.raises(RuntimeError, match="Unexpected key"):
        different_blocks.load_state_dict(state)


def test_paper_model_at_240px_builds_with_adapters_on_the_right_blocks(small_signs):
    network = SDMADNetwork(small_signs, model_name="ViT-L-14-336", pretrained=None, image_size=240)
    visual = network.clip.visual
    assert tuple(visual.grid_size) == (17, 17)
    assert visual.positional_embedding.shape[0] == 17 * 17 + 1
    assert len(visual.transformer.resblocks) == 24 and network.image_blocks == [6, 12, 18, 24]
    hooked = [index + 1 for index, block in enumerate(visual.transformer.resblocks) if block._forward_hooks]
    assert hooked == [6, 12, 18, 24]
    text_blocks = network.clip.transformer.resblocks
    assert [i for i, block in enumerate(text_blocks) if block._forward_hooks] == [len(text_blocks) - 1]
    width = visual.transformer.width
    assert network.image_adapters["6"].down.weight.shape == (width // 2, width)
    with torch.no_grad():
        assert network(torch.rand(1, 3, 240, 240)).shape == (1, 3)


def test_a_model_of_other_backbone_weights_of_the_same_name_and_size_is_refused(small_signs, tmp_path):
    """Two pretraining recipes give weights files of one name and size; a model.pt of one is not loaded onto the
    other (the record holds the file's edge digest)."""
    from sdmad.checkpoints import CheckpointError, load_model, save_model
    from sdmad.networks import load_clip

    first, second = tmp_path / "a" / "weights.pt", tmp_path / "b" / "weights.pt"
    for seed, path in ((0, first), (1, second)):
        torch.manual_seed(seed)
        path.parent.mkdir()
        torch.save(load_clip("sdmad-tiny")[0].state_dict(), path)
    assert first.stat().st_size == second.stat().st_size
    model = tmp_path / "model.pt"
    save_model(build_tiny(small_signs, pretrained=str(first)), model)
    load_model(build_tiny(small_signs, pretrained=str(first)), model)
    with pytest.raises(CheckpointError, match="pretrained: checkpoint 'weights.pt .* vs config 'weights.pt"):
        load_model(build_tiny(small_signs, pretrained=str(second)), model)
