"""The benchmark runs end to end in its tiny CPU mode and reports every figure (no timing is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO_ROOT


def test_tiny_benchmark_writes_every_figure(tmp_path):
    out = tmp_path / "tiny.json"
    result = subprocess.run(
        [
            sys.executable,
            "scripts/benchmark.py",
            "--tiny",
            "--device",
            "cpu",
            "--min-seconds",
            "0.05",
            "--out",
            str(out),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["device_type"] == "cpu" and figures["torch"] and figures["device"].startswith("CPU")
    assert figures["gflop_per_image"] > 0
    image = figures["image_path"]
    assert image["naive_images_per_s"] > 0 and image["fast_images_per_s"] > 0 and image["speedup"] > 0
    assert set(image["per_batch_size_images_per_s"]) == {"8", "32"}
    decode = figures["decode"]["slices_per_s_per_core"]
    assert set(decode) == {"per-slice", "batched", "batched, int16 volumes", "batched, DICOM series"}
    assert min(decode.values()) > 0
    assert figures["decode"]["device_preprocessing"]["ms_per_batch"] > 0
    e2e = figures["end_to_end"]
    for run in ("per-slice", "batched", "batched, int16 volumes"):  # old and new preprocessing, side by side
        assert e2e[run]["images_per_s"] > 0 and 0 < e2e[run]["fraction_of_model_only"]
        assert e2e[run]["steady_images_per_s"] > e2e[run]["images_per_s"]  # start-up and writing excluded
        assert e2e[run]["first_batch_s"] > 0 and e2e[run]["writing_s"] > 0
    assert e2e["batched, int16 volumes"]["stored_as"] == "int16" and e2e["batched"]["loader_only_images_per_s"] > 0
    assert len(e2e["model_only_images_per_s_each"]) == 4  # before each of the 3 runs and after the last
    assert e2e["text_encoder_calls"] == 0  # cached text features: inference never re-encodes the prompts
    assert [row["signs"] for row in figures["scoring"]] == [6, 24, 96]
    assert all(row["us_per_image"] > 0 for row in figures["scoring"])
    assert {(row["variant"], row["batch"]) for row in figures["training"]} == {
        ("float32", 1),
        ("float32", 8),
        ("float32+checkpointing", 1),
        ("float32+checkpointing", 8),
    }
    assert all(row["step_ms"] > 0 and row["peak_mib"] is None for row in figures["training"])  # no GPU memory on CPU
    table = out.with_suffix(".md").read_text()
    assert "images/s" in table and "peak GPU memory" in table and "slices/s per core" in table
