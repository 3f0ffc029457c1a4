from __future__ import annotations

import logging
import time

import pytest
import torch
from conftest import build_tiny, randomize_adapters
from sdmad.networks import PretrainedWeightsUnavailableError, load_clip, resolve_pretrained


def test_local_checkpoint_reproduces_outputs_bit_for_bit(small_signs, tmp_path):
    original = build_tiny(small_signs, seed=3)
    randomize_adapters(original)
    clip_file = tmp_path / "tiny_clip.pt"
    torch.save(original.clip.state_dict(), clip_file)
    adapters = original.state_dict()

    # a different seed: every weight must come from the files, none from the random initialisation
    reloaded = build_tiny(small_signs, seed=99, pretrained=str(clip_file))
    reloaded.load_state_dict(adapters)
    images = torch.rand(3, 3, 240, 240)
    with torch.no_grad():
        assert torch.equal(reloaded(images), original(images))
        assert torch.equal(reloaded.sign_features(), original.sign_features())
    assert reloaded.backbone.endswith(str(clip_file))


def test_local_checkpoint_is_resized_to_another_image_size(tmp_path):
    torch.manual_seed(0)
    clip, _ = load_clip("sdmad-tiny")
    clip_file = tmp_path / "tiny_clip.pt"
    torch.save(clip.state_dict(), clip_file)
    resized, _ = load_clip("sdmad-tiny", pretrained=clip_file, image_size=160)
    assert tuple(resized.visual.grid_size) == (8, 8)
    assert resized.visual.positional_embedding.shape[0] == 8 * 8 + 1
    torch.testing.assert_close(resized.visual.class_embedding, clip.visual.class_embedding)


def test_offline_tag_fails_fast_with_instructions(tmp_path, monkeypatch):
    # An endpoint on loopback with nothing listening: the offline case, without touching the real internet.
    monkeypatch.setenv("HF_ENDPOINT", "https://127.0.0.1:9")
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    monkeypatch.delenv("https_proxy", raising=False)
    start = time.monotonic()
    with pytest.raises(PretrainedWeightsUnavailableError) as error:
        load_clip("ViT-B-32", pretrained="openai", cache_dir=str(tmp_path))
    assert time.monotonic() - start < 10
    message = str(error.value)
    assert "Could not fetch the pretrained weights 'openai'" in message
    assert "cannot be reached" in message and "--pretrained /path/to/" in message
    assert "huggingface.co/timm/vit_base_patch32_clip_224.openai" in message
    assert "--quick_gelu true" in message  # OpenAI weights use QuickGELU; a file cannot tell


def test_cached_tag_resolves_without_network(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "https://127.0.0.1:9")
    snapshot = tmp_path / "models--timm--vit_base_patch32_clip_224.openai" / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (snapshot / "open_clip_model.safetensors").write_bytes(b"weights")
    (tmp_path / "models--timm--vit_base_patch32_clip_224.openai" / "refs").mkdir()
    (tmp_path / "models--timm--vit_base_patch32_clip_224.openai" / "refs" / "main").write_text("0123abcd")
    resolved = resolve_pretrained("ViT-B-32", "openai", cache_dir=str(tmp_path))
    assert resolved.path.endswith("open_clip_model.safetensors") and resolved.quick_gelu


def test_unknown_tag_or_missing_file_is_an_error():
    with pytest.raises(PretrainedWeightsUnavailableError, match="neither an existing file nor an open_clip tag"):
        resolve_pretrained("ViT-B-32", "/no/such/file.pt")
    with pytest.raises(PretrainedWeightsUnavailableError, match="known tags"):
        resolve_pretrained("ViT-B-32", "no_such_tag")


@pytest.mark.parametrize("value", [None, "", "none"])
def test_no_weights_means_random_weights_with_a_warning(value, caplog):
    assert resolve_pretrained("sdmad-tiny", value) is None
    with caplog.at_level(logging.WARNING, logger="sdmad.networks.clip_loading"):
        load_clip("sdmad-tiny", pretrained=value)
    assert "RANDOM weights" in caplog.text


def test_a_model_built_to_be_pretrained_says_so_without_warnings(caplog, tmp_path):
    with caplog.at_level(logging.INFO):
        load_clip("sdmad-tiny", image_size=60, to_pretrain=True)
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert "random weights, to be pretrained" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        load_clip("sdmad-tiny", image_size=60)  # the filter is gone afterwards: random weights warn again
    assert "initialized randomly" in caplog.text and "RANDOM weights" in caplog.text
    with pytest.raises(ValueError, match="to_pretrain"):
        load_clip("sdmad-tiny", pretrained=str(tmp_path / "weights.pt"), to_pretrain=True)


def test_tiny_model_uses_the_real_tokenizer():
    _, tokenizer = load_clip("sdmad-tiny")
    tokens = tokenizer(["a brain MRI with enlarged ventricles"])
    assert tokens.shape == (1, 77)
    assert tokens[0, 0] == 49406 and 49407 in tokens[0].tolist()  # CLIP's start/end-of-text tokens
