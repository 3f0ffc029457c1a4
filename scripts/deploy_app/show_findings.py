"""Print the Deploy app's outputs: per series, each category's score and decision from the findings JSON, the
same decisions read back from the study's DICOM SR, and each category's segment and frames in the series' SEG;
with ``--picture``, draw the SEG frames of the source image with the most segmented pixels over that image (read
back with highdicom, as a PACS viewer overlays them). Runs in the deploy environment (highdicom).

    .venv-deploy/bin/python scripts/deploy_app/show_findings.py runs/deploy --study data/deploy_study \
        --picture runs/deploy/seg_frame.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from sdmad.overlays import label_overlay_png


def sr_decisions(path: Path) -> dict[str, dict[str, str]]:
    """Series UID -> {category: "Present" | "Absent"} from an SD-MAD SR."""
    decisions = {}
    for group in pydicom.dcmread(path).ContentSequence:
        if group.ConceptNameCodeSequence[0].CodeMeaning != "Findings":
            continue
        items = list(group.ContentSequence)
        series = next(i.UID for i in items if i.ValueType == "UIDREF")
        decisions[series] = {
            i.ConceptCodeSequence[0].CodeMeaning: next(
                p.ConceptCodeSequence[0].CodeMeaning
                for p in i.ContentSequence
                if p.ConceptNameCodeSequence[0].CodeMeaning == "Decision"
            )
            for i in items
            if i.ValueType == "CODE"
        }
    return decisions


def seg_pixels(path: Path) -> tuple[list[str], dict[str, np.ndarray]]:
    """The source SOP instance UIDs a SEG refers to and, per segment label (category), its pixels on each of them
    ``[images, rows, columns]`` (highdicom's reading by source instance, as viewers overlay it)."""
    seg = hd.seg.segread(path)
    sources = [str(uid) for _, _, uid in seg.get_source_image_uids()]
    numbers = {int(s.SegmentNumber): str(s.SegmentLabel) for s in seg.SegmentSequence}
    pixels = seg.get_pixels_by_source_instance(
        sources, segment_numbers=list(numbers), assert_missing_frames_are_empty=True
    )
    return sources, {label: pixels[..., j] > 0 for j, label in enumerate(numbers.values())}


def seg_picture(seg_path: Path, study: Path, label_names: dict[str, int], out: Path) -> Path:
    """The source image with the most segmented pixels, its SEG frames drawn over it in the category's colour."""
    sources, pixels = seg_pixels(seg_path)
    labels = np.zeros(next(iter(pixels.values())).shape, dtype=np.int64)
    for category, mask in pixels.items():
        labels[mask] = label_names[category]
    index = int(np.argmax((labels > 0).reshape(len(sources), -1).sum(axis=1)))
    image = next(
        d for d in (pydicom.dcmread(f) for f in study.rglob("*") if f.is_file()) if d.SOPInstanceUID == sources[index]
    )
    title = f"DICOM SEG read back with highdicom: image {image.InstanceNumber} of {image.SeriesDescription}"
    return label_overlay_png(image.pixel_array, labels[index], label_names, title, out, "its SEG frames")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", type=Path)
    parser.add_argument("--study", type=Path, help="the app's input folder (for --picture)")
    parser.add_argument("--picture", type=Path, help="write a PNG of a SEG frame over its source image")
    args = parser.parse_args()
    from_sr = {}
    for report in sorted(args.output.glob("*.sdmad-sr.dcm")):
        from_sr.update(sr_decisions(report))
        print(f"DICOM SR: {report}")
    pictured = None
    for path in sorted(args.output.glob("*.sdmad.json")):
        findings = json.loads(path.read_text())
        volume = findings["volume"]
        series = findings.get("series_instance_uid")
        seg_path = args.output / findings["segmentation"] if findings.get("segmentation") else None
        frames = {c: int(m.any(axis=(1, 2)).sum()) for c, m in seg_pixels(seg_path)[1].items()} if seg_path else {}
        print(f"\n{path.name}: {findings.get('series_description', findings['source'])}, {volume['slices']} slices")
        print(f"DICOM SEG: {seg_path or 'none (' + findings.get('segmentation_note', '') + ')'}")
        print(f"  {'category':62} {'score':>8}  {'decision':9} {'in SR':8} {'SEG frames'}")
        for category, score in volume["scores"].items():
            decision = "present" if volume["decisions"][category] else "absent"
            in_sr = from_sr.get(series, {}).get(category, "-")
            in_seg = frames.get(category, "-")
            print(f"  {category[:62]:62} {score:8.3f}  {decision:9} {in_sr:8} {in_seg}")
        print(f"  {findings['note']}")
        if args.picture and seg_path and pictured is None:
            if args.study is None:
                raise SystemExit("--picture needs --study (the app's input folder, for the source images)")
            pictured = seg_picture(seg_path, args.study, volume["label_names"], args.picture)
            print(f"picture: {pictured}")


if __name__ == "__main__":
    main()
