"""Print the Deploy app's outputs: per series, each category's score and decision from the findings JSON, and
the same decisions read back from the study's DICOM SR.

    python scripts/deploy_app/show_findings.py runs/deploy
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pydicom


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", type=Path)
    args = parser.parse_args()
    from_sr = {}
    for report in sorted(args.output.glob("*.sdmad-sr.dcm")):
        from_sr.update(sr_decisions(report))
        print(f"DICOM SR: {report}")
    for path in sorted(args.output.glob("*.sdmad.json")):
        findings = json.loads(path.read_text())
        volume = findings["volume"]
        series = findings.get("series_instance_uid")
        print(f"\n{path.name}: {findings.get('series_description', findings['source'])}, {volume['slices']} slices")
        print(f"  {'category':62} {'score':>8}  {'decision':9} {'in SR':8}")
        for category, score in volume["scores"].items():
            decision = "present" if volume["decisions"][category] else "absent"
            in_sr = from_sr.get(series, {}).get(category, "-")
            print(f"  {category[:62]:62} {score:8.3f}  {decision:9} {in_sr:8}")
        print(f"  {findings['note']}")


if __name__ == "__main__":
    main()
