"""A nearest-centroid probe of a backbone's frozen image features: what a backbone offers before adaptation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from monai.data import DataLoader, Dataset

from sdmad.data import CLIPInput, PrepareSlices, collate_slices, load_split, scan_transforms
from sdmad.metrics import category_auroc


def nearest_centroid_probe(
    network: Any, splits_file: str | Path, batch_size: int = 32, split: str = "test"
) -> dict[str, Any]:
    """Category AUROC of the frozen image features, no adapters, no text: each category's centroid of its few-shot
    items' features scores the ``split`` items by cosine. An upper-bound-style check of what a backbone offers;
    compare backbone recipes on ``split="val"``, never on the test split."""
    network.bypass_adapters()
    network.eval()

    prepare_batch = PrepareSlices(
        CLIPInput(network.config_record()["image_size"], mean=network.image_mean, std=network.image_std)
    )

    def features(items: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
        loader = DataLoader(Dataset(items, scan_transforms()), batch_size=batch_size, collate_fn=collate_slices)
        with torch.no_grad():
            batches = [prepare_batch(b, "cpu") for b in loader]
            return torch.cat([network.encode_images(x) for x, _ in batches]), torch.cat([y for _, y in batches])

    train_features, train_labels = features(load_split(splits_file, "train"))
    test_features, test_labels = features(load_split(splits_file, split))
    centroids = torch.stack(
        [
            torch.nn.functional.normalize(train_features[train_labels[:, c] > 0].mean(0), dim=0)
            for c in range(train_labels.shape[1])
        ]
    )
    return category_auroc((test_features @ centroids.T).numpy(), test_labels.numpy(), network.signs.category_names)
