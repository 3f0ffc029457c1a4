"""fastMRI+ label join (on the real annotations), BMAD and CSV data sets, splits, few-shot sampling, phantom."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import FASTMRI_PLUS
from sdmad.data import (
    DataError,
    bmad_items,
    csv_items,
    fastmri_plus_dataset_items,
    fastmri_plus_slice_labels,
    sample_few_shot,
    split_by_group,
)
from sdmad.data.fastmri_plus import DEFAULT_CATEGORIES, h5_box
from sdmad.data.items import item_labels, load_items_json
from sdmad.tools.phantom import CATEGORIES, make_volume, to_display


@pytest.mark.parametrize(
    "slice_index, abnormal, multi, rare",
    [
        (0, 349, 67, {}),
        (5, 164, 47, {"Global label: Small vessel chronic white matter ischemic change": 0}),
        (10, 135, 36, {"Enlarged ventricles": 2, "Global label: Small vessel chronic white matter ischemic change": 0}),
    ],
)
def test_real_fastmri_plus_counts(slice_index, abnormal, multi, rare):
    labels = fastmri_plus_slice_labels(FASTMRI_PLUS / "brain.csv", FASTMRI_PLUS / "brain_file_list.csv", slice_index)
    assert labels.abnormal_files() == abnormal
    assert labels.multi_label_files() == multi
    assert labels.rare_categories() == rare


@pytest.mark.parametrize("slice_index", [5, 10])
def test_slice_task_items_from_the_real_label_files_build_with_the_papers_five_categories(tmp_path, slice_index):
    five = list(DEFAULT_CATEGORIES[:5])
    files = (FASTMRI_PLUS / "brain.csv", FASTMRI_PLUS / "brain_file_list.csv")
    labels = fastmri_plus_slice_labels(*files, slice_index, categories=five)
    for name in labels.labels:  # a stand-in data folder holding every reviewed file
        (tmp_path / f"{name}.h5").touch()
    items = fastmri_plus_dataset_items(tmp_path, *files, slice_index, categories=five)
    assert len(items) == len(labels.labels) and all(len(item["label"]) == 5 for item in items)
    positives = np.stack([item["label"] for item in items]).sum(axis=0)
    assert (positives > 0).all()  # every one of the five categories occurs, so a 1-shot split can be drawn
    chosen = sample_few_shot(items, five, shots=1, seed=0)
    assert np.stack([item["label"] for item in chosen]).sum(axis=0).min() >= 1
    with pytest.raises(DataError, match="has 0 images in the training pool.*--categories"):
        sample_few_shot(fastmri_plus_dataset_items(tmp_path, *files, slice_index), list(DEFAULT_CATEGORIES), shots=1)


def test_real_fastmri_plus_policies():
    common = (FASTMRI_PLUS / "brain.csv", FASTMRI_PLUS / "brain_file_list.csv")
    excluded = fastmri_plus_slice_labels(*common, 5)
    counted_normal = fastmri_plus_slice_labels(*common, 5, other_labels="normal")
    assert excluded.excluded and not counted_normal.excluded
    assert len(counted_normal.labels) == len(excluded.labels) + len(excluded.excluded)
    assert all(not labels & set(DEFAULT_CATEGORIES) for labels in excluded.excluded.values())
    assert "Nonspecific white matter lesion" in set().union(*excluded.excluded.values())
    propagated = fastmri_plus_slice_labels(*common, 5, study_level="all_slices")
    assert propagated.positives()[DEFAULT_CATEGORIES[5]] == 220  # the 220 study-level labels reach slice 5
    with pytest.raises(DataError, match="never occur as a label"):
        fastmri_plus_slice_labels(*common, 0, categories=["Craniotomy", "Brain tumour"])


def test_phantom_fastmri_plus_join_and_unflipped_boxes(phantom_dir):
    manifest = json.loads((phantom_dir / "manifest.json").read_text())
    truth = {v["name"]: set(v["labels"]) for v in manifest["volumes"]}
    for folder in ("h5", "dicom", "nifti"):
        items = fastmri_plus_dataset_items(
            phantom_dir / folder,
            phantom_dir / "fastmri_plus" / "brain.csv",
            phantom_dir / "fastmri_plus" / "brain_file_list.csv",
            0,
        )
        assert len(items) == len(truth)
        for item in items:
            assert set(item_labels(item, DEFAULT_CATEGORIES)) == truth[item["group"]] and item["slices"] == [0]
    # slice 5: study-level labels (global) stay on slice 0 by default
    at_five = fastmri_plus_slice_labels(
        phantom_dir / "fastmri_plus" / "brain.csv", phantom_dir / "fastmri_plus" / "brain_file_list.csv", 5
    )
    assert at_five.positives()[DEFAULT_CATEGORIES[5]] == 0
    # boxes: drawn on the display (the project's slice orientation); in the .h5 array's rows they are flipped
    name = next(n for n, labels in truth.items() if "Nonspecific lesion" in labels)
    index = [v["name"] for v in manifest["volumes"]].index(name)
    phantom = make_volume(name, tuple(manifest["volumes"][index]["labels"]), np.random.default_rng([0, index]), 64, 12)
    box = next(b for b in at_five.boxes[name] if b.label == "Nonspecific lesion")
    display = to_display(phantom.masks["Nonspecific lesion"][..., 5])

    def bounds(mask: np.ndarray) -> tuple[int, int, int, int]:
        rows, columns = np.nonzero(mask)
        return columns.min(), rows.min(), columns.max() - columns.min() + 1, rows.max() - rows.min() + 1

    assert (box.x, box.y, box.width, box.height) == bounds(display)
    in_h5 = h5_box(box, image_height=64)
    assert (in_h5.x, in_h5.y, in_h5.width, in_h5.height) == bounds(display[::-1])


def test_fastmri_plus_folder_without_the_files(tmp_path, phantom_dir):
    with pytest.raises(DataError, match="none of the .* fastMRI\\+ files of slice 0 is there"):
        fastmri_plus_dataset_items(
            tmp_path,
            phantom_dir / "fastmri_plus" / "brain.csv",
            phantom_dir / "fastmri_plus" / "brain_file_list.csv",
            0,
        )


def test_bmad_layout(phantom_dir):
    items = bmad_items(phantom_dir / "bmad", "PhantomBrain", "test")
    abnormal = [item for item in items if item["label"][0] == 1]
    assert abnormal and len(abnormal) < len(items)
    assert all(item["mask_labels"] == {"*": 0} for item in items)  # this data set has anomaly_mask folders
    assert all(item["mask"].endswith(item["image"].rsplit("/", 1)[1]) for item in abnormal)
    assert all("mask" not in item for item in items if item["label"][0] == 0)
    with pytest.raises(DataError, match="BMAD folder not found"):
        bmad_items(phantom_dir / "bmad", "LiverCT", "test")


def test_generic_csv_and_its_errors(phantom_dir, tmp_path):
    items = csv_items(phantom_dir / "labels.csv", CATEGORIES, group_column="patient")
    assert len(items) == len(json.loads((phantom_dir / "manifest.json").read_text())["volumes"])
    assert any(item["label"].sum() == 2 for item in items) and any(item["label"].sum() == 0 for item in items)

    def write(text):
        path = tmp_path / "bad.csv"
        path.write_text(text)
        return path

    bad = write("path,labels\nnifti/absent.nii.gz,normal\n")
    with pytest.raises(DataError, match=f"{bad}, line 2: file .*absent.nii.gz does not exist"):
        csv_items(bad, CATEGORIES, root=phantom_dir)
    first = items[0]["id"]
    bad = write(f"path,labels\n{first},Craniotomy|Brain tumour\n")
    with pytest.raises(DataError, match=f"{bad}, line 2: unknown label 'Brain tumour'"):
        csv_items(bad, CATEGORIES, root=phantom_dir)
    bad = write(f"path,labels\n{first},\n")
    with pytest.raises(DataError, match="empty label"):
        csv_items(bad, CATEGORIES, root=phantom_dir)
    bad = write(f"file,labels\n{first},normal\n")
    with pytest.raises(DataError, match=r"missing columns \['path'\]"):
        csv_items(bad, CATEGORIES, root=phantom_dir)
    with pytest.raises(DataError, match="no rows"):
        csv_items(write("path,labels\n"), CATEGORIES, root=phantom_dir)


def test_split_never_cuts_a_group(phantom_dir):
    items = csv_items(phantom_dir / "labels.csv", CATEGORIES, group_column="patient")
    parts = split_by_group(items, {"train": 0.5, "val": 0.2, "test": 0.3}, seed=3)
    sides = {}
    for name, part in parts.items():
        for item in part:
            assert sides.setdefault(item["group"], name) == name
    assert sum(len(p) for p in parts.values()) == len(items) and all(parts.values())
    assert split_by_group(items, {"a": 0.5, "b": 0.5}, seed=3) == split_by_group(items, {"a": 0.5, "b": 0.5}, seed=3)
    with pytest.raises(ValueError, match="sum to 1"):
        split_by_group(items, {"a": 0.5, "b": 0.4})


def test_few_shot_sampler_is_deterministic_counts_multi_labels_and_refuses_too_few(phantom_dir, tmp_path):
    items = csv_items(phantom_dir / "labels.csv", CATEGORIES, group_column="patient")
    chosen = sample_few_shot(items, CATEGORIES, shots=2, seed=7, output_file=tmp_path / "run" / "few_shot.json")
    again = sample_few_shot(list(reversed(items)), CATEGORIES, shots=2, seed=7)
    assert [i["id"] for i in chosen] == [i["id"] for i in again]
    assert [i["id"] for i in chosen] != [i["id"] for i in sample_few_shot(items, CATEGORIES, shots=2, seed=8)]
    labels = np.stack([item["label"] for item in chosen])
    assert (labels.sum(axis=0) >= 2).all() and (labels.sum(axis=1) == 0).sum() == 2
    written = load_items_json(tmp_path / "run" / "few_shot.json")
    assert [i["id"] for i in written] == [i["id"] for i in chosen]
    np.testing.assert_array_equal(written[0]["label"], chosen[0]["label"])
    craniotomy = sum(item["label"][0] > 0 for item in items)  # single- and multi-label volumes
    with pytest.raises(
        DataError,
        match=f"category 'Craniotomy' has {craniotomy} images in the training pool, "
        f"fewer than the {craniotomy + 1} shots",
    ):
        sample_few_shot(items, CATEGORIES, shots=craniotomy + 1, seed=0)
    with pytest.raises(DataError, match="the normal class has 4 images"):
        sample_few_shot(items, CATEGORIES, shots=1, normal_shots=5)


def test_phantom_is_deterministic():
    a = make_volume("x", ("Craniotomy", "Enlarged ventricles"), np.random.default_rng([0, 1]), 48, 4)
    b = make_volume("x", ("Craniotomy", "Enlarged ventricles"), np.random.default_rng([0, 1]), 48, 4)
    c = make_volume("x", (), np.random.default_rng([0, 1]), 48, 4)
    assert np.array_equal(a.volume, b.volume) and not np.array_equal(a.volume, c.volume)
    assert a.masks["Craniotomy"].any() and a.masks["Enlarged ventricles"].sum() > 0
    with pytest.raises(ValueError, match="unknown phantom categories"):
        make_volume("x", ("Tumour",), np.random.default_rng(0))


def test_a_csv_label_volume_column_gives_the_scans_pixel_labels(phantom_dir, tmp_path):
    """A label-volume column (what MONAI Label's training writes for a saved `final` label volume): value v is
    category v; the slices get their `[C, rows, columns]` masks."""
    from sdmad.data import scan_transforms

    name = next(v for v in json.loads((phantom_dir / "manifest.json").read_text())["volumes"] if v["labels"])
    table = tmp_path / "labels.csv"
    table.write_text(
        f"path,labels,mask\nnifti/{name['name']}.nii.gz,{'|'.join(name['labels'])},masks/{name['name']}.nii.gz\n"
        f"nifti/{name['name']}.nii.gz,{'|'.join(name['labels'])},\n"
    )
    with_mask, without = csv_items(table, CATEGORIES, root=phantom_dir, mask_column="mask")
    assert with_mask["mask_labels"] == {str(v): v - 1 for v in range(1, 7)} and "mask" not in without
    slices = scan_transforms()(with_mask)
    shown = np.flatnonzero(np.stack([s["mask"].amax(dim=(1, 2)).numpy() for s in slices]).max(axis=0))
    assert [CATEGORIES[c] for c in shown] == name["labels"]  # the masks show exactly the row's categories
    for piece in slices:  # each slice's categories: those its mask shows there
        assert np.array_equal(piece["label"], (piece["mask"].amax(dim=(1, 2)) > 0).numpy().astype(np.float32))
    assert all(np.array_equal(p["label"], without["label"]) for p in scan_transforms()(without))
