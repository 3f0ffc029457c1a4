"""BMAD data sets in the MVFA folder layout (protocol 1: normal vs abnormal, pixel masks where they exist).

    <root>/<Folder>_AD/{valid,test}/good/img/*.png                 (Folder: Brain, Liver, Retina_RESC, ...)
    <root>/<Folder>_AD/{valid,test}/Ungood/img/*.png
    <root>/<Folder>_AD/{valid,test}/Ungood/anomaly_mask/*.png     (BrainMRI, LiverCT, RESC only)

Items of a data set with masks carry `mask_labels` and, for an abnormal image, `mask` (its mask file; a normal
image's mask is empty); see sdmad.data.CategoryMaskd.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from sdmad.data.errors import DataError
from sdmad.data.loading import IMAGE_SUFFIXES

# BMAD's six data sets: the folder of MVFA's release (`<folder>_AD`) and the sign file of each
BMAD_DATA_SETS = {  # name: (MVFA's folder, sign file, the object of method mvfa's prompts: MVFA's own names)
    "BrainMRI": ("Brain", "bmad_brainmri.yaml", "brain"),
    "LiverCT": ("Liver", "bmad_liverct.yaml", "liver"),
    "RESC": ("Retina_RESC", "bmad_resc.yaml", "retinal OCT"),
    "OCT17": ("Retina_OCT2017", "bmad_oct2017.yaml", "retinal OCT"),
    "ChestXray": ("Chest", "bmad_chestxray.yaml", "chest X-ray film"),
    "HIS": ("Histopathology", "bmad_his.yaml", "histopathological image"),
}
BMAD_NAMES = tuple(BMAD_DATA_SETS)
SPLITS = ("valid", "test")


def bmad_folder(root: str | Path, name: str) -> Path:
    """`<root>/<folder>_AD` of a BMAD name (MVFA's folder, e.g. BrainMRI -> Brain_AD) or of any other folder name
    (`<root>/<name>_AD`, e.g. the phantom's PhantomBrain_AD)."""
    folder = BMAD_DATA_SETS.get(name, (name,))[0]
    return Path(root) / f"{folder}_AD"


def bmad_sign_file(name: str) -> str:
    """The sign file of a BMAD data set (`configs/signs/<file>`); another name: `bmad_<name lower case>.yaml`."""
    return BMAD_DATA_SETS.get(name, (None, f"bmad_{name.lower()}.yaml"))[1]


def bmad_object(name: str) -> str:
    """The object method mvfa's prompts name for a BMAD data set ("brain", "retinal OCT", ...); another name:
    "organ"."""
    return BMAD_DATA_SETS.get(name, (None, None, "organ"))[2]


_PATIENT_SLICE = re.compile(r"^(\d+)_\d+$")  # BraTS-derived BrainMRI names: <patient>_<slice>.png


def image_group(kind: str, stem: str) -> str:
    """The group a split keeps together: the patient where the name says it (`01388_60`), else the image."""
    match = _PATIENT_SLICE.match(stem)
    return f"patient {match.group(1)}" if match else f"{kind}/{stem}"


def bmad_items(root: str | Path, name: str, split: str) -> list[dict]:
    """Items of one BMAD data set and split; the label is one category (abnormal), masks where present.

    Args:
        root: the folder holding `<name>_AD`.
        name: a BMAD name, e.g. "BrainMRI" (MVFA's folder `Brain_AD`), or any folder name `<name>_AD`.
        split: "valid" (the few-shot pool, as in MVFA) or "test".
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got '{split}'")
    base = bmad_folder(root, name) / split
    if not base.is_dir():
        raise DataError(f"{base}: BMAD folder not found (MVFA's layout: {base}/{{good,Ungood}}/img; docs/data.md)")
    items = []
    has_masks = (base / "Ungood" / "anomaly_mask").is_dir()
    for kind, abnormal in (("good", False), ("Ungood", True)):
        image_dir = base / kind / "img"
        if not image_dir.is_dir():
            raise DataError(f"{image_dir}: BMAD image folder not found")
        for image in sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            item = {
                "image": str(image),
                "label": np.array([float(abnormal)], dtype=np.float32),
                "group": image_group(kind, image.stem),
                "id": f"{name}/{split}/{kind}/{image.name}",
            }
            if has_masks:  # a normal image's mask is empty: no file
                item["mask_labels"] = {"*": 0}  # any non-zero mask value is the anomaly
                mask = base / kind / "anomaly_mask" / image.name
                if abnormal and not mask.is_file():
                    raise DataError(f"{image}: its mask {mask} is missing")
                if abnormal:
                    item["mask"] = str(mask)
            items.append(item)
    if not items:
        raise DataError(f"{base}: no PNG/JPG images in good/img or Ungood/img")
    return items


def read_fewshot_list(path: str | Path, iterate: int) -> dict[str, list[str]]:
    """MVFA's published few-shot lists (`dataset/fewshot_seed/<Name>/<K>-shot.txt`): lines `a-<i>: names...`
    (abnormal) and `n-<i>: names...` (normal); the two lines of ``iterate``."""
    path = Path(path)
    try:
        lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
    except OSError as err:
        raise DataError(f"{path}: cannot read the few-shot list ({err})") from err
    chosen = {line[0][0]: line[1:] for line in lines if line[0] in (f"a-{iterate}:", f"n-{iterate}:")}
    if set(chosen) != {"a", "n"}:
        raise DataError(f"{path}: no lines 'a-{iterate}:' and 'n-{iterate}:' (MVFA's few-shot list format)")
    return {"abnormal": chosen["a"], "normal": chosen["n"]}


def bmad_protocol_split(
    root: str | Path,
    name: str,
    shots: int,
    seed: int = 0,
    val_fraction: float = 0.2,
    fewshot_list: str | Path | None = None,
) -> dict[str, list[dict]]:
    """BMAD protocol 1 as MVFA and the paper run it: ``shots`` abnormal and ``shots`` normal training images from
    `valid/` (MVFA's list, line ``seed``, when ``fewshot_list`` is given; else the project's seeded sampler), a
    validation split from the other `valid/` groups (it calibrates thresholds), and the whole `test/` folder as the
    test split: the sampler never sees it."""
    from sdmad.data.few_shot import sample_few_shot
    from sdmad.data.splits import split_by_group

    pool, test = bmad_items(root, name, "valid"), bmad_items(root, name, "test")
    if fewshot_list is not None:
        names = read_fewshot_list(fewshot_list, seed)
        if {len(names["abnormal"]), len(names["normal"])} != {shots}:
            raise DataError(
                f"{fewshot_list}: draw {seed} lists {len(names['abnormal'])} abnormal and "
                f"{len(names['normal'])} normal images, not --shots {shots} of each"
            )
        wanted = {("Ungood", n) for n in names["abnormal"]} | {("good", n) for n in names["normal"]}
        train = [item for item in pool if (_kind(item), Path(item["image"]).name) in wanted]
        if len(train) != len(wanted):
            raise DataError(
                f"{fewshot_list}: {len(wanted) - len(train)} listed images are not in {root}/{name}_AD/valid"
            )
    else:
        train = sample_few_shot(pool, ["abnormal"], shots, shots, seed=seed)
    used = {item["group"] for item in train}
    rest = [item for item in pool if item["group"] not in used]
    val = split_by_group(rest, {"val": val_fraction, "unused": 1.0 - val_fraction}, seed=seed)["val"] if rest else []
    return {"train": train, "val": val, "test": test}


def _kind(item: dict) -> str:
    return "Ungood" if item["label"][0] else "good"
