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


def seg_frames(path: Path) -> tuple[hd.seg.Segmentation, dict[str, list[tuple[str, int]]]]:
    """The SEG and, per segment label (category), its frames as (source SOP instance UID, frame index)."""
    seg = hd.seg.segread(path)
    labels = {int(s.SegmentNumber): str(s.SegmentLabel) for s in seg.SegmentSequence}
    frames: dict[str, list[tuple[str, int]]] = {label: [] for label in labels.values()}
    for index, frame in enumerate(seg.PerFrameFunctionalGroupsSequence):
        source = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        frames[labels[int(frame.SegmentIdentificationSequence[0].ReferencedSegmentNumber)]].append((source, index))
    return seg, frames


def seg_picture(seg_path: Path, study: Path, label_names: dict[str, int], out: Path) -> Path:
    """The source image with the most segmented pixels, its SEG frames drawn over it in the category's colour."""
    seg, frames = seg_frames(seg_path)
    by_source: dict[str, np.ndarray] = {}
    for category, entries in frames.items():
        for source, index in entries:
            labels = by_source.setdefault(source, np.zeros(seg.pixel_array.shape[1:], dtype=np.int64))
            labels[seg.pixel_array[index] > 0] = label_names[category]
    source = max(by_source, key=lambda uid: int((by_source[uid] > 0).sum()))
    image = next(d for d in (pydicom.dcmread(f) for f in study.rglob("*") if f.is_file()) if d.SOPInstanceUID == source)
    title = f"DICOM SEG read back with highdicom: image {image.InstanceNumber} of {image.SeriesDescription}"
    return label_overlay_png(image.pixel_array, by_source[source], label_names, title, out, "its SEG frames")


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
        frames = seg_frames(seg_path)[1] if seg_path else {}
        print(f"\n{path.name}: {findings.get('series_description', findings['source'])}, {volume['slices']} slices")
        print(f"DICOM SEG: {seg_path or 'none (no category present)'}")
        print(f"  {'category':62} {'score':>8}  {'decision':9} {'in SR':8} {'SEG frames'}")
        for category, score in volume["scores"].items():
            decision = "present" if volume["decisions"][category] else "absent"
            in_sr = from_sr.get(series, {}).get(category, "-")
            in_seg = len(frames[category]) if category in frames else "-"
            print(f"  {category[:62]:62} {score:8.3f}  {decision:9} {in_sr:8} {in_seg}")
        print(f"  {findings['note']}")
        if args.picture and seg_path and pictured is None:
            if args.study is None:
                raise SystemExit("--picture needs --study (the app's input folder, for the source images)")
            pictured = seg_picture(seg_path, args.study, volume["label_names"], args.picture)
            print(f"picture: {pictured}")


if __name__ == "__main__":
    main()
