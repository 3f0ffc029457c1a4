from __future__ import annotations

from pathlib import Path

import pytest
from conftest import REPO_ROOT
from sdmad.signs import SignFileError, load_sign_file

SIGN_FILES = sorted((REPO_ROOT / "configs" / "signs").glob("*.yaml"))
FASTMRI_CATEGORIES = [
    "Craniotomy",
    "Posttreatment change",
    "Nonspecific lesion",
    "Dural thickening",
    "Enlarged ventricles",
    "Global label: Small vessel chronic white matter ischemic change",
]


def test_every_task_has_a_sign_file():
    names = {path.stem for path in SIGN_FILES}
    assert {
        "fastmri_brain",
        "bmad_brainmri",
        "bmad_liverct",
        "bmad_resc",
        "bmad_oct2017",
        "bmad_chestxray",
        "bmad_his",
    } <= names


@pytest.mark.parametrize("path", SIGN_FILES, ids=lambda p: p.stem)
def test_shipped_sign_files_load(path: Path):
    signs = load_sign_file(path)
    assert signs.task == path.stem and signs.normal
    assert all(len(prompts) >= 2 for _, prompts in signs.categories)
    assert len(signs.sign_prompts) == len(signs.sign_category)


def test_fastmri_categories_are_the_six_fastmri_plus_labels():
    signs = load_sign_file(REPO_ROOT / "configs" / "signs" / "fastmri_brain.yaml")
    assert signs.category_names == FASTMRI_CATEGORIES
    assert signs.subset(["Craniotomy"]).category_names == ["Craniotomy"]
    with pytest.raises(SignFileError, match="unknown categories"):
        signs.subset(["Mass"])


MALFORMED = {
    "no_normal": ("categories:\n  A: [a sign]\n", "missing 'normal'"),
    "empty_normal": ("normal: []\ncategories:\n  A: [a sign]\n", "'normal' must be a non-empty list"),
    "empty_category": ("normal: [fine]\ncategories:\n  A: [a sign]\n  B: []\n", "category 'B' is empty"),
    "duplicate_category": ("normal: [fine]\ncategories:\n  A: [x]\n  A: [y]\n", "duplicate key 'A' (line 4)"),
    "non_string_prompt": ("normal: [fine]\ncategories:\n  A: [a sign, 3]\n", "not a non-empty string: 3"),
    "not_yaml": ("normal: [fine\n", "not valid YAML"),
    "no_categories": ("normal: [fine]\ncategories: {}\n", "'categories' must map"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_sign_file_names_file_and_problem(case, tmp_path):
    content, message = MALFORMED[case]
    path = tmp_path / f"{case}.yaml"
    path.write_text(content)
    with pytest.raises(SignFileError) as error:
        load_sign_file(path)
    assert str(path) in str(error.value) and message in str(error.value)


def test_missing_sign_file(tmp_path):
    with pytest.raises(SignFileError, match="sign file not found"):
        load_sign_file(tmp_path / "nope.yaml")
