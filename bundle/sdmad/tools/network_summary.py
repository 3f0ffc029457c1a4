"""A plain-text description of a built SD-MAD network, measured on the network itself."""

from __future__ import annotations

import io
import time

import torch

from sdmad.networks.sdmad_network import SDMADNetwork


def _state_dict_bytes(network: SDMADNetwork) -> int:
    buffer = io.BytesIO()
    torch.save(network.state_dict(), buffer)
    return buffer.tell()


def _patch_heads(network: SDMADNetwork) -> str:
    if not network.has_patch_path:
        return "none (method sdmad: image level only)"
    head = next(iter(network.patch_heads.values()))
    count = sum(p.numel() for p in network.patch_heads.parameters())
    return (
        f"method {network.method}: on blocks {network.image_blocks}, {head.down.in_features} -> "
        f"{head.down.out_features} -> {head.up.out_features} over CLIP's patch projection, {count:,} parameters "
        "(stage 2)"
    )


@torch.no_grad()
def describe_network(
    network: SDMADNetwork, image_size: int, device: torch.device | str = "cpu", batch_size: int = 2
) -> str:
    """What the network is (backbone, adapters, parameters, signs) and one timed forward on random images."""
    network = network.to(device).eval()
    visual = network.clip.visual
    grid = visual.grid_size
    total = sum(p.numel() for p in network.parameters())
    trainable = network.adapter_parameter_count()
    trainable_names = sorted({name.split(".")[0] for name, p in network.named_parameters() if p.requires_grad})
    images = torch.rand(batch_size, 3, image_size, image_size, device=device)
    network(images)  # warm-up
    start = time.perf_counter()
    scores = network(images)
    seconds = time.perf_counter() - start
    selection = network.select_signs()
    adapter = next(iter(network.image_adapters.values()), None)  # method mvfa has none
    image_adapters = (
        f"on blocks {network.image_blocks} (1-based), lambda {adapter.lam}, bottleneck {adapter.down.out_features}, "
        f"{type(adapter.act).__name__}"
        if adapter is not None
        else f"none (method {network.method}: CLIP's own stream)"
    )
    text_depth = len(network.clip.transformer.resblocks)
    text_adapter = f"on the last of {text_depth} text blocks" if network.text_adapter is not None else "none"
    lines = [
        f"backbone           {network.backbone}",
        f"image input        3 x {image_size} x {image_size} -> {grid[0]} x {grid[1]} patches, "
        f"{len(visual.transformer.resblocks)} blocks of width {visual.transformer.width}",
        f"image adapters     {image_adapters}",
        f"text adapter       {text_adapter}",
        f"patch heads        {_patch_heads(network)}",
        f"parameters         {total:,} in all, {trainable:,} trainable ({100 * trainable / total:.2f} %), "
        f"all in {trainable_names}",
        f"checkpoint size    {_state_dict_bytes(network) / 1e6:.2f} MB (adapters only)",
        f"feature size       {network.sign_features().shape[-1]}",
        f"signs              {len(network.signs.sign_prompts)} over {len(network.signs.category_names)} categories, "
        f"{len(network.signs.normal)} normal prompt(s) for the anchor",
        f"output             {tuple(scores.shape)} per-category scores s_c for a batch of {batch_size}, "
        f"{1000 * seconds / batch_size:.1f} ms per image on {device}",
        "sign selection     (Eq. 6, current adapters)",
    ]
    width = max(len(name) for name in network.signs.category_names)
    for name, entry in selection.to_dict(network.signs.sign_prompts).items():
        forced = ", forced keep" if entry["forced_keep"] else ""
        lines.append(f"  {name:<{width}}  kept {entry['kept']}, dropped {entry['dropped']}{forced}")
    return "\n".join(lines)
