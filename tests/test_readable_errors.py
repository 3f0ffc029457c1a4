"""Errors a person can read (docs/usage.md): for `training`, `evaluating` and `inference` the last line on stderr
is `sdmad: error: <file>: <what is wrong and what to do>`, with no traceback unless SDMAD_DEBUG asks for it; a
folder of scans keeps going past an unreadable one (errors.csv, exit status 3)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess

import pytest
from conftest import REPO_ROOT, bundle, inference_command, last_line


def inference(inputs, out, *overrides: str) -> subprocess.CompletedProcess:
    command = [*inference_command("none", "none", inputs, out), *overrides]
    env = {**os.environ, "SDMAD_DEBUG": ""}
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, env=env)


def readable(result: subprocess.CompletedProcess, *fragments: str) -> str:
    """The command failed, its last line is the project's message with ``fragments``, and no traceback shows."""
    line = last_line(result)
    assert result.returncode != 0 and line.startswith("sdmad: error: "), result.stderr[-3000:]
    for fragment in fragments:
        assert fragment in line, line
    assert "Traceback" not in result.stderr and "Failed to evaluate" not in result.stderr, result.stderr[-3000:]
    return line


@pytest.fixture(scope="module")
def scans(phantom_dir, tmp_path_factory):
    """A folder of three NIfTI scans, one of them corrupt."""
    folder = tmp_path_factory.mktemp("scans")
    names = [v["name"] for v in json.loads((phantom_dir / "manifest.json").read_text())["volumes"][:2]]
    for name in names:
        shutil.copy(phantom_dir / "nifti" / f"{name}.nii.gz", folder)
    (folder / "broken.nii.gz").write_bytes(b"\x1f\x8b not a volume")
    return folder


def test_a_corrupt_scan_is_one_readable_line(scans, tmp_path):
    broken = scans / "broken.nii.gz"
    readable(inference(broken, tmp_path / "out"), f"{broken}: cannot be read as nifti", "re-export it")
    assert not (tmp_path / "out").exists()


def test_debugging_keeps_the_traceback_and_other_exceptions_are_left_to_python(monkeypatch, capsys):
    from sdmad.data import DataError
    from sdmad.errors import readable_excepthook

    shown = []

    def fallback(kind, error, traceback):
        shown.append(error)

    try:
        try:
            raise DataError("scan.nii.gz: corrupt")
        except DataError as inner:
            raise RuntimeError("Failed to evaluate ConfigExpression") from inner
    except RuntimeError as wrapped:
        error = wrapped
    monkeypatch.setenv("SDMAD_DEBUG", "")
    readable_excepthook(RuntimeError, error, None, fallback)
    assert capsys.readouterr().err.splitlines()[-1] == "sdmad: error: scan.nii.gz: corrupt" and not shown
    monkeypatch.setenv("SDMAD_DEBUG", "1")
    readable_excepthook(RuntimeError, error, None, fallback)
    bug = KeyError("a bug")
    monkeypatch.setenv("SDMAD_DEBUG", "")
    readable_excepthook(KeyError, bug, None, fallback)
    assert shown == [error, bug]


def test_a_full_disk_is_one_line_naming_the_file(monkeypatch, capsys):
    import errno

    from sdmad.errors import project_error, readable_excepthook

    def shown_line(error: BaseException) -> str:
        readable_excepthook(type(error), error, None, lambda *args: pytest.fail("left to Python"))
        return capsys.readouterr().err.splitlines()[-1]

    monkeypatch.setenv("SDMAD_DEBUG", "")
    full = OSError(errno.ENOSPC, "No space left on device", "/data/phantom/nifti/a.nii.gz")
    try:
        raise RuntimeError("Failed to evaluate ConfigExpression") from full
    except RuntimeError as wrapped:
        assert shown_line(wrapped) == (
            "sdmad: error: /data/phantom/nifti/a.nii.gz: no space left on device: free some space (or write to "
            "another disk) and run the command again"
        )
        assert project_error(wrapped) is None  # a folder of scans must not skip past it as an unreadable scan
    # h5py's (as it fails on a full tmpfs): the file is named inside the message only
    h5py_full = OSError(
        errno.ENOSPC,
        "Can't synchronously write data (file write failed: time = Thu Nov 26 12:46:41 2026\n, filename = "
        "'/data/phantom/h5/b.h5', file descriptor = 3, errno = 28, error message = 'No space left on device', "
        "buf = 0x55699ad14e60, total write size = 4786192, bytes this sub-write = 4786192, offset = 2740224)",
    )
    assert shown_line(h5py_full).startswith("sdmad: error: /data/phantom/h5/b.h5: no space left on device")


def test_a_checkpoint_saved_onto_a_full_disk_says_so(tmp_path, monkeypatch):
    """torch.save says only "unexpected pos" when the disk fills up; save_atomic names the file and the cause."""
    import errno
    from collections import namedtuple
    from pathlib import Path

    import torch
    from sdmad import checkpoints

    def failing_save(content, path):
        Path(path).write_bytes(b"part")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

    monkeypatch.setattr(torch, "save", failing_save)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(checkpoints.shutil, "disk_usage", lambda path: usage(10**9, 10**9, 4096))
    with pytest.raises(OSError) as full:
        checkpoints.save_atomic({}, tmp_path / "model.pt")
    assert full.value.errno == errno.ENOSPC and full.value.filename == str(tmp_path / "model.pt")
    assert list(tmp_path.iterdir()) == []  # the partial file is gone, as after any failed atomic write
    monkeypatch.setattr(checkpoints.shutil, "disk_usage", lambda path: usage(10**9, 0, 10**9))
    with pytest.raises(RuntimeError, match="unexpected pos"):  # room left: torch's error as it is
        checkpoints.save_atomic({}, tmp_path / "model.pt")


def test_a_folder_keeps_going_past_an_unreadable_scan_with_workers(scans, tmp_path):
    """DataLoader workers, and a batch of one unreadable scan alone (`--batch_size 1`: it sorts first)."""
    out = tmp_path / "out"
    result = inference(scans, out, "--num_workers", "2", "--batch_size", "1")
    assert result.returncode == 3, result.stderr[-3000:]
    assert last_line(result) == f"sdmad: 1 unreadable scan(s) skipped, 2 scored; reasons in {out / 'errors.csv'}"
    errors = list(csv.DictReader((out / "errors.csv").open()))
    assert [row["source"] for row in errors] == [str(scans / "broken.nii.gz")]
    assert errors[0]["reason"].startswith(f"{scans / 'broken.nii.gz'}: cannot be read as nifti")
    volumes = json.loads((out / "predictions.json").read_text())["volumes"]
    assert len(volumes) == 2 and all(v["slices"] == 12 for v in volumes)
    assert len((out / "volumes.csv").read_text().splitlines()) == 3


def test_on_error_fail_stops_at_the_first_unreadable_scan(scans, tmp_path):
    readable(
        inference(scans, tmp_path / "out", "--on_error", "fail", "--num_workers", "2"),
        f"{scans / 'broken.nii.gz'}: cannot be read as nifti",
    )
    assert not (tmp_path / "out").exists()


def test_checkpoint_sign_file_and_weights_errors_name_their_file(scans, tmp_path):
    scan = next(scans.glob("file_*.nii.gz"))
    corrupt = tmp_path / "model.pt"
    corrupt.write_bytes(b"PK\x03\x04 truncated")
    readable(
        inference(scan, tmp_path / "a", "--checkpoint", str(corrupt)), f"{corrupt}: not a readable SD-MAD checkpoint"
    )
    signs = tmp_path / "signs.yaml"
    signs.write_text("task: x\nnormal: [a normal scan]\ncategories:\n  A: [one]\n  A: [two]\n")
    readable(inference(scan, tmp_path / "b", "--sign_file", str(signs)), str(signs), "duplicate key 'A'")
    missing = tmp_path / "ViT-L-14.safetensors"
    readable(inference(scan, tmp_path / "c", "--pretrained", str(missing)), str(missing))


def test_a_bad_label_csv_in_training_names_the_csv_line(phantom_dir, tmp_path):
    table = tmp_path / "labels.csv"
    rows = (phantom_dir / "labels.csv").read_text().splitlines()
    rows[3] = rows[3].rsplit(",", 2)[0] + ",Brain tumour," + rows[3].rsplit(",", 1)[1]
    table.write_text("\n".join(rows).replace("nifti/", f"{phantom_dir}/nifti/") + "\n")
    result = bundle(
        "training",
        phantom_dir,
        tmp_path,
        "--run_name",
        "csv",
        "--csv_file",
        str(table),
        extra=(str(REPO_ROOT / "configs" / "csv_task.yaml"),),
    )
    readable(result, f"{table}, line 4: unknown label 'Brain tumour'")


def test_skipped_non_image_objects_are_said_on_the_console(phantom_dir, tmp_path):
    import pydicom
    from pydicom.uid import ComprehensiveSRStorage
    from sdmad.tools.phantom import write_non_image_object

    name = json.loads((phantom_dir / "manifest.json").read_text())["volumes"][0]["name"]
    series = shutil.copytree(phantom_dir / "dicom" / name, tmp_path / "series")
    reference = pydicom.dcmread(next(series.glob("*.dcm")), stop_before_pixels=True)
    write_non_image_object(series, reference, ComprehensiveSRStorage, "a report")
    result = inference(series, tmp_path / "out")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "skipped 1 non-image DICOM object(s): Comprehensive SR Storage (1)" in result.stdout + result.stderr
