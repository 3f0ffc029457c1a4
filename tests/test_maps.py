"""Anomaly maps (method sdmad+mvfa): training with masks, pixel AUROC and the montage in the report, maps in the
input's geometry and overlays from inference, the single-image command, the image path left as method sdmad's, and
the MVFA baseline (method mvfa) in the same harness."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import REPO_ROOT, build_tiny, bundle, ok
from sdmad.checkpoints import load_model, save_model
from sdmad.data import CLIPInput, PrepareSlices, collate_slices, fastmri_plus_dataset_items, scan_transforms
from sdmad.engines import patch_memory, train_iteration
from sdmad.losses import PatchLoss, SDMADLoss
from sdmad.maps import native_maps, resized_extent
from sdmad.patch_training import train_patch_heads
from sdmad.signs import load_sign_file

MAPS = ("--method", "sdmad+mvfa", "--pixel_loss_size", "32", "--patch_head_steps", "30")


@pytest.fixture(scope="module")
def mapped_run(phantom_dir, tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    masks = ("--mask_dir", str(phantom_dir / "masks"))
    ok(
        bundle(
            "training", phantom_dir, runs, "--run_name", "maps", "--epochs", "2", "--val_interval", "2", *MAPS, *masks
        )
    )
    return runs


def test_evaluation_reports_pixel_auroc_per_category_and_a_montage(mapped_run, phantom_dir):
    masks = ("--mask_dir", str(phantom_dir / "masks"))
    ok(bundle("evaluating", phantom_dir, mapped_run, "--run_name", "maps", *MAPS, *masks))
    report = json.loads((mapped_run / "maps" / "evaluating" / "report.json").read_text())
    assert isinstance(report["protocols"]["general_ad"]["pixel_auroc"], float)
    per_category = report["protocols"]["category_auroc"]["pixel_per_category"]
    assert any(isinstance(value, float) for value in per_category.values())
    montage = Path(next(p for p in report["files"]["plots"] if p.endswith("maps_montage.png")))
    assert montage.stat().st_size > 10_000
    assert "| 1 general AD | pixel AUROC | 0." in (montage.parent / "report.md").read_text()

    ok(bundle("evaluating", phantom_dir, mapped_run, "--run_name", "maps", "--checkpoint", "none", *MAPS, *masks))
    zero_shot = json.loads((mapped_run / "maps" / "evaluating_zero_shot" / "report.json").read_text())
    assert isinstance(zero_shot["protocols"]["general_ad"]["pixel_auroc"], float)


def test_a_finished_run_started_again_reuses_its_patch_heads(mapped_run, phantom_dir):
    """The same training command on a finished run does no step and keeps the heads stage 2 made."""
    model = mapped_run / "maps" / "training" / "model.pt"
    before = torch.load(model, weights_only=True)["network"]
    masks = ("--mask_dir", str(phantom_dir / "masks"))
    args = ("--run_name", "maps", "--epochs", "2", "--val_interval", "2", *MAPS, *masks)
    result = ok(bundle("training", phantom_dir, mapped_run, *args))
    assert "the run was finished (no training step in this run)" in result.stdout + result.stderr
    after = torch.load(model, weights_only=True)["network"]
    assert any(key.startswith("patch_heads.") for key in after)
    assert all(torch.equal(before[key], after[key]) for key in before)


def test_inference_writes_maps_in_the_inputs_geometry_and_overlays(mapped_run, phantom_dir, tmp_path):
    name = json.loads((phantom_dir / "manifest.json").read_text())["volumes"][0]["name"]
    listing = tmp_path / "inputs.txt"
    listing.write_text(f"{phantom_dir}/nifti/{name}.nii.gz\n{phantom_dir}/dicom/{name}\n")
    out = tmp_path / "inference"
    model = mapped_run / "maps" / "training" / "model.pt"
    ok(
        bundle(
            "inference",
            phantom_dir,
            mapped_run,
            *("--input", str(listing), "--output_dir", str(out), "--checkpoint", str(model)),
            *("--save_maps", "true", *MAPS),
        )
    )
    volumes = json.loads((out / "predictions.json").read_text())["volumes"]
    assert len(volumes) == 2
    source = nib.load(phantom_dir / "nifti" / f"{name}.nii.gz")
    by_format = {("nifti" if volume["source"].endswith(".nii.gz") else "dicom"): volume for volume in volumes}
    from_nifti, from_dicom = (nib.load(by_format[kind]["maps"]) for kind in ("nifti", "dicom"))
    assert by_format["nifti"]["maps"] != by_format["dicom"]["maps"]  # one name, two formats: two files
    assert from_nifti.shape == (*source.shape, 7)  # anomaly + six categories, the input's voxel grid
    np.testing.assert_allclose(from_nifti.affine, source.affine, atol=1e-4)  # the input's affine
    # the DICOM copy of the same volume (stored in display orientation): the same maps in world space
    canonical = nib.as_closest_canonical(from_nifti), nib.as_closest_canonical(from_dicom)
    np.testing.assert_allclose(canonical[0].affine, canonical[1].affine, atol=1e-3)
    np.testing.assert_allclose(canonical[0].get_fdata(), canonical[1].get_fdata(), atol=1e-3)
    for volume in volumes:
        assert volume["overlays"] and all(Path(path).stat().st_size > 10_000 for path in volume["overlays"])
    # the label image (what MONAI Label's sdmad_maps answers): the input's grid, each labelled voxel's category map
    # reaches that category's map threshold there (calibrated on the validation split's pixel labels)
    labels = nib.load(by_format["nifti"]["labels"])
    assert labels.shape == source.shape and labels.get_data_dtype() == np.uint8
    np.testing.assert_allclose(labels.affine, source.affine, atol=1e-4)
    values, maps = np.asarray(labels.dataobj), from_nifti.get_fdata(dtype=np.float32)
    assert set(np.unique(values)) <= set(range(7)) and by_format["nifti"]["label_names"]["Craniotomy"] == 1
    thresholds = np.asarray(torch.load(model, weights_only=True)["calibration"]["map_thresholds"], dtype=np.float32)
    assert len(thresholds) == 6 and (thresholds != 0.5).any()  # chosen on pixel labels, not the default
    labelled = values > 0
    assert (maps[..., 1:][labelled, values[labelled] - 1] >= thresholds[values[labelled] - 1]).all()


@pytest.mark.parametrize("kind", ["png", "dicom_file", "nifti"])
def test_the_single_image_command_prints_the_table_and_writes_the_overlay(mapped_run, phantom_dir, tmp_path, kind):
    name = json.loads((phantom_dir / "manifest.json").read_text())["volumes"][0]["name"]
    image = {
        "png": next((phantom_dir / "bmad" / "PhantomBrain_AD").rglob("img/*.png")),
        "dicom_file": phantom_dir / "dicom" / name / "IM0006.dcm",
        "nifti": phantom_dir / "nifti" / f"{name}.nii.gz",
    }[kind]
    command = [sys.executable, str(REPO_ROOT / "scripts" / "predict.py"), str(image), "--run"]
    result = subprocess.run(
        [*command, str(mapped_run / "maps"), "--out", str(tmp_path), "--bundle-root", str(REPO_ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Enlarged ventricles" in result.stdout and "overlay: " in result.stdout
    overlays = list((tmp_path / "overlays").glob("*.png"))
    assert overlays and overlays[0].stat().st_size > 10_000


def test_the_single_image_command_says_what_is_missing(tmp_path):
    command = [sys.executable, str(REPO_ROOT / "scripts" / "predict.py"), str(tmp_path / "x.png"), "--run", "r"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert result.returncode != 0 and result.stderr.strip().splitlines()[-1].endswith("x.png: not found")


@pytest.fixture(scope="module")
def phantom_slices(phantom_dir):
    """The phantom's slice-5 items with their pixel labels, as the training loader ships them."""
    signs = load_sign_file(REPO_ROOT / "configs" / "signs" / "fastmri_brain.yaml")
    items = fastmri_plus_dataset_items(
        phantom_dir / "h5",
        phantom_dir / "fastmri_plus" / "brain.csv",
        phantom_dir / "fastmri_plus" / "brain_file_list.csv",
        5,
        signs.category_names,
        "all_slices",
        mask_dir=phantom_dir / "masks",
    )
    transform = scan_transforms()
    return signs, [piece for item in items for piece in transform(item)]


def test_masks_follow_their_slices_to_the_clip_input(phantom_slices):
    """A mask marks its finding's pixels in the slice (the phantom's findings have their own intensities), and
    reaches the CLIP input's geometry with its slice."""
    signs, slices = phantom_slices
    lesion = signs.category_names.index("Craniotomy")  # a gap in the bright skull: dark pixels
    item = next(s for s in slices if s["label"][lesion])
    image, mask = item["image"][0], item["mask"][lesion] > 0
    assert image[mask].mean() < 0.2 * image[image > 0].mean()
    batch = collate_slices([item])
    masks, valid, has_mask = PrepareSlices(CLIPInput(240)).masks(batch, "cpu")
    assert masks.shape == (1, 6, 240, 240) and bool(valid.all()) and bool(has_mask.all())  # square: no padding
    assert abs(float(masks[0, lesion].mean()) - float(mask.float().mean())) < 0.01


def test_a_lesions_map_peak_lies_inside_its_mask_after_training(phantom_slices):
    """The whole chain: masks -> CLIP geometry -> patch heads trained with the pixel losses on the few shots -> maps
    back in the slice's own pixels (a transposed or flipped map would peak elsewhere). The tiny model here has random
    weights, so the heads learn from little (measured: 8 of 14 finding slices, all three post-treatment cavities)."""
    signs, slices = phantom_slices
    torch.manual_seed(0)
    network = build_tiny(signs, method="sdmad+mvfa")
    prepare = PrepareSlices(CLIPInput(240))
    loader = [collate_slices(slices)]
    train_patch_heads(network, loader, prepare, "cpu", PatchLoss(size=48), steps=300, learning_rate=0.03)
    network.patch_memory = patch_memory(network, loader, "cpu", prepare)
    with torch.no_grad():
        images, _ = prepare(loader[0], "cpu")
        _, patches = network.encode_images_and_patches(images)
        selection = network.select_signs()
        maps = network.maps(patches, network.sign_features(), network.anchor_feature(), selection.category_mask())
    cavity = signs.category_names.index("Posttreatment change")
    inside = {"cavity": [], "any": []}
    for item, grid in zip(slices, maps.maps, strict=True):
        mask = item["mask"].amax(dim=0).numpy() > 0
        if not mask.any():
            continue
        anomaly = native_maps(grid.numpy(), *mask.shape, 240)[0]
        hit = bool(mask[np.unravel_index(anomaly.argmax(), anomaly.shape)])
        inside["any"].append(hit)
        if item["label"][cavity]:
            inside["cavity"].append(hit)
    assert sum(inside["cavity"]) >= 2 and len(inside["cavity"]) == 3, inside
    assert np.mean(inside["any"]) >= 0.5, inside


def test_the_image_path_is_that_of_method_sdmad(small_signs, phantom_slices):
    """Same seed, same batches: the Shift Adapters of method sdmad+mvfa end with exactly method sdmad's weights (the
    patch heads are made after them and trained after them), so image-level figures are unchanged."""
    _, slices = phantom_slices
    batch = collate_slices(slices[:8])
    weights = []
    for method in ("sdmad", "sdmad+mvfa"):
        network = build_tiny(small_signs, method=method)
        engine = types.SimpleNamespace(
            network=network,
            prepare_batch=PrepareSlices(CLIPInput(240)),
            loss_function=SDMADLoss(margin=0.2),
            optimizer=torch.optim.Adam([p for p in network.parameters() if p.requires_grad], lr=0.01),
            state=types.SimpleNamespace(device=torch.device("cpu")),
        )
        batch["label"] = batch["label"][:, :3]
        for _ in range(3):
            train_iteration(engine, batch)
        weights.append({k: v for k, v in network.state_dict().items() if not k.startswith("patch_heads.")})
    assert weights[0].keys() == weights[1].keys()
    for key in weights[0]:
        assert torch.equal(weights[0][key], weights[1][key]), key


def test_image_only_checkpoints_keep_loading(small_signs, tmp_path):
    """Method sdmad records exactly what it recorded before the patch path existed, so its model files load."""
    network = build_tiny(small_signs)
    assert "method" not in network.config_record()
    assert not any(key.startswith("patch_heads.") for key in network.state_dict())
    save_model(network, tmp_path / "model.pt")
    load_model(build_tiny(small_signs), tmp_path / "model.pt")
    with pytest.raises(Exception, match="method"):
        load_model(build_tiny(small_signs, method="sdmad+mvfa"), tmp_path / "model.pt")


def test_every_scan_gets_its_own_map_files(phantom_dir):
    from sdmad.handlers.inference_writer import output_names

    name = json.loads((phantom_dir / "manifest.json").read_text())["volumes"][0]["name"]
    sources = [f"{phantom_dir}/nifti/{name}.nii.gz", f"{phantom_dir}/dicom/{name}", f"{phantom_dir}/h5/{name}.h5"]
    other = f"{phantom_dir}/h5/{json.loads((phantom_dir / 'manifest.json').read_text())['volumes'][1]['name']}.h5"
    names = output_names([*sources, other])
    assert [names[s] for s in sources] == [f"{name}_nifti", f"{name}_dicom", f"{name}_h5"]
    assert names[other] == Path(other).stem


def test_maps_come_back_to_each_slices_own_pixels():
    assert resized_extent(64, 64, 240) == (0, 0, 240, 240)
    assert resized_extent(100, 50, 240) == (0, 60, 240, 120)  # a tall slice: padded left and right
    grid = np.zeros((1, 12, 12), dtype=np.float32)
    grid[0, :, :6] = 1.0  # the left half of the CLIP input, which holds the padding and the slice's left part
    native = native_maps(grid, 100, 50, 240)
    assert native.shape == (1, 100, 50)
    assert native[0, :, :10].mean() > 0.9 and native[0, :, -10:].mean() < 0.1


def test_bmad_protocol_1_trains_on_valid_and_tests_on_the_whole_test_folder(phantom_dir, tmp_path):
    """configs/bmad.yaml on the phantom's BMAD layout: few shots and validation from valid/, test = test/ exactly;
    the report has image and pixel AUROC."""
    bmad = ("--bmad_root", str(phantom_dir / "bmad"), "--bmad_name", "PhantomBrain", "--sign_file")
    bmad += (str(REPO_ROOT / "configs" / "signs" / "bmad_brainmri.yaml"), "--run_name", "bmad")
    extra = ("configs/bmad.yaml",)
    steps = ("--epochs", "1", "--patch_head_steps", "10", "--pixel_loss_size", "32")
    ok(bundle("training", phantom_dir, tmp_path, *bmad, *steps, extra=extra))
    ok(bundle("evaluating", phantom_dir, tmp_path, *bmad, extra=extra))
    splits = json.loads((tmp_path / "bmad" / "training" / "splits.json").read_text())
    test_folder = sorted(str(p) for p in (phantom_dir / "bmad" / "PhantomBrain_AD" / "test").glob("*/img/*.png"))
    assert sorted(item["image"] for item in splits["test"]) == test_folder
    assert all("/valid/" in item["image"] for item in splits["train"] + splits["val"])
    assert sorted(item["label"][0] for item in splits["train"]) == [0.0, 1.0]  # --shots 1: one of each
    report = json.loads((tmp_path / "bmad" / "evaluating" / "report.json").read_text())
    assert report["data"]["test_slices"] == len(test_folder)
    assert isinstance(report["protocols"]["general_ad"]["image_auroc"], float)
    assert isinstance(report["protocols"]["general_ad"]["pixel_auroc"], float)

    # the MVFA baseline in the same harness: the same split, image and pixel AUROC
    mvfa = (*bmad[:-2], "--run_name", "bmad_mvfa", "--method", "mvfa")
    ok(bundle("training", phantom_dir, tmp_path, *mvfa, *steps, extra=extra))
    ok(bundle("evaluating", phantom_dir, tmp_path, *mvfa, extra=extra))
    assert json.loads((tmp_path / "bmad_mvfa" / "training" / "splits.json").read_text()) == splits
    report = json.loads((tmp_path / "bmad_mvfa" / "evaluating" / "report.json").read_text())
    general = report["protocols"]["general_ad"]
    assert isinstance(general["image_auroc"], float) and isinstance(general["pixel_auroc"], float)
    assert "method mvfa (the MVFA baseline" in (tmp_path / "bmad_mvfa" / "evaluating" / "report.md").read_text()


def test_mvfa_few_shot_lists_choose_the_training_images(phantom_dir, tmp_path):
    from sdmad.data import bmad_protocol_split
    from sdmad.data.errors import DataError

    valid = phantom_dir / "bmad" / "PhantomBrain_AD" / "valid"
    abnormal = sorted(p.name for p in (valid / "Ungood" / "img").glob("*.png"))[:2]
    normal = sorted(p.name for p in (valid / "good" / "img").glob("*.png"))[:2]
    listing = tmp_path / "2-shot.txt"
    listing.write_text(f"a-0: {' '.join(abnormal)}\nn-0: {' '.join(normal)}\na-1: x.png z.png\nn-1: y.png w.png\n")
    split = bmad_protocol_split(phantom_dir / "bmad", "PhantomBrain", 2, seed=0, fewshot_list=listing)
    assert sorted(Path(item["image"]).name for item in split["train"]) == sorted(abnormal + normal)
    with pytest.raises(DataError, match="listed images are not in"):
        bmad_protocol_split(phantom_dir / "bmad", "PhantomBrain", 2, seed=1, fewshot_list=listing)
    with pytest.raises(DataError, match="no lines 'a-5:'"):
        bmad_protocol_split(phantom_dir / "bmad", "PhantomBrain", 2, seed=5, fewshot_list=listing)
    with pytest.raises(DataError, match="not --shots 4 of each"):
        bmad_protocol_split(phantom_dir / "bmad", "PhantomBrain", 4, seed=0, fewshot_list=listing)


def test_label_names_must_give_each_category_its_own_value(tmp_path):
    from sdmad.data.errors import DataError
    from sdmad.data.fastmri_plus import read_mask_labels

    (tmp_path / "label_names.json").write_text(json.dumps({"A": 1, "B": 2, "C": 2}))
    assert read_mask_labels(tmp_path, ["B", "A"]) == {"2": 0, "1": 1}
    with pytest.raises(DataError, match=r"label values \[2\] are 0 or given to two categories"):
        read_mask_labels(tmp_path, ["A", "B", "C"])
    with pytest.raises(DataError, match="no label value for the categories"):
        read_mask_labels(tmp_path, ["A", "D"])


def test_method_mvfa_is_the_patch_path_against_two_states_with_no_adapted_stream(small_signs):
    """The MVFA baseline: no Shift Adapter and no text adapter (CLIP's own stream and text), the patch heads are its
    only weights, every sign is the abnormal state and the anchor the normal state, and every category's score is
    the anomaly map's peak."""
    from sdmad.networks.patch_path import state_prompts

    network = build_tiny(small_signs, method="mvfa", mvfa_object="liver")
    assert not network.image_adapters and network.text_adapter is None
    assert {key.split(".")[0] for key in network.state_dict()} == {"patch_heads"}
    record = network.config_record()
    assert record["method"] == "mvfa" and record["state_prompts"] == state_prompts("liver")
    assert "a photo of the healthy liver." in record["state_prompts"]["normal"]
    signs = network.sign_features()
    assert torch.allclose(signs, signs[:1].expand_as(signs))  # one abnormal state for every sign
    images = torch.rand(2, 3, 240, 240, generator=torch.Generator().manual_seed(0))
    mask = torch.ones(3, len(signs), dtype=torch.bool)
    with torch.no_grad():
        scores, maps = network.score_images(images, signs, network.anchor_feature(), mask)
    peak = maps.maps[:, 0].flatten(1).amax(dim=1)
    assert torch.equal(scores.anomaly_score, peak)
    assert torch.equal(scores.category_scores, peak[:, None].expand(-1, 3))
    # the decision: the text map's peak (no memory here: the same map) passes 0.5
    assert torch.equal(scores.decisions, scores.category_scores > 0.5)
    # with a few-shot memory the score mixes it in; the decision stays the text map's
    dims = signs.shape[1]
    memory = torch.nn.functional.normalize(torch.randn(5, dims, generator=torch.Generator().manual_seed(3)), dim=-1)
    network.patch_memory = [memory] * len(network.patch_heads)
    with torch.no_grad():
        mixed, _ = network.score_images(images, signs, network.anchor_feature(), mask)
    assert not torch.equal(mixed.anomaly_score, scores.anomaly_score)
    assert torch.equal(mixed.decisions, scores.decisions) and torch.equal(mixed.margins, scores.margins)
    network.patch_memory = None
    # the states are the prompt ensembles' normalised means, through the cached text path
    for state, feature in (("abnormal", signs[0]), ("normal", network.anchor_feature())):
        expected = torch.nn.functional.normalize(network.encode_prompts(state_prompts("liver")[state]).mean(0), dim=-1)
        assert torch.allclose(feature, expected, atol=1e-5), state


def test_mvfa_pixel_losses_use_the_anomaly_map_only():
    logits = [torch.randn(2, 4, 6, 6, generator=torch.Generator().manual_seed(1))]
    targets = (torch.rand(2, 4, 6, 6, generator=torch.Generator().manual_seed(2)) > 0.7).float()
    labels, has_mask = torch.ones(2, 3), torch.ones(2, dtype=torch.bool)
    loss = PatchLoss(anomaly_only=True)
    other = [logits[0].clone()]
    other[0][:, 1:] = -logits[0][:, 1:]  # category maps changed, anomaly map kept
    assert torch.equal(
        loss(logits, labels, targets, has_mask)["pixel"], loss(other, labels, targets, has_mask)["pixel"]
    )
    assert not torch.equal(
        PatchLoss()(logits, labels, targets, has_mask)["pixel"], PatchLoss()(other, labels, targets, has_mask)["pixel"]
    )


def test_multi_process_training_leaves_mvfa_unwrapped():
    """DistributedDataParallel refuses a module with nothing to train: method mvfa's stage 1 has nothing."""
    from monai.bundle import ConfigParser
    from sdmad.networks import SDMADNetwork

    parser = ConfigParser()
    parser.read_config(
        [
            str(REPO_ROOT / "configs" / name)
            for name in ("inference.yaml", "common.yaml", "train.yaml", "multi_gpu.yaml")
        ]
    )
    parser.update({"bundle_root": str(REPO_ROOT), "model_name": "sdmad-tiny", "pretrained": "none"})
    parser.update({"method": "mvfa", "device": "$torch.device('cpu')"})
    assert type(parser.get_parsed_content("network")) is SDMADNetwork
