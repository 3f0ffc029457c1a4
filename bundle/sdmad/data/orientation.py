"""Display orientation: every 2-D slice reaches CLIP as a radiologist, or an image viewer, shows it.

- A volume (NIfTI, DICOM series, fastMRI `.h5`, a volume in memory) is reoriented by its affine with MONAI's
  ``Orientation`` so that `[C, row, column, slice]` is the display of its acquisition plane:

  | plane | row 0 .. last | column 0 .. last | slices toward | codes |
  |---|---|---|---|---|
  | axial | anterior .. posterior | patient's right .. left | superior | PLS |
  | coronal | superior .. inferior | patient's right .. left | anterior | ILA |
  | sagittal | superior .. inferior | anterior .. posterior | right | IPR |

  The plane is that of the voxel axis with the largest spacing (the slice direction of a multi-slice acquisition;
  an isotropic volume is shown axially).
- A 2-D image (PNG/JPG, a single DICOM image) is taken exactly as stored: row 0 at the top, as every viewer shows it.

MONAI orients to axis codes but has no notion of a plane's display convention; choosing the codes is ours.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.transforms import MapTransform, Orientation

PLANE_CODES = {"axial": "PLS", "coronal": "ILA", "sagittal": "IPR"}
_PLANE_OF_DIRECTION = {0: "sagittal", 1: "coronal", 2: "axial"}  # the slice axis points R/L, A/P or S/I
SPACING_TOLERANCE = 0.01  # relative: spacings this close are equal, and the axial reading wins


def acquisition_plane(affine: Any) -> str:
    """ "axial", "coronal" or "sagittal" from a RAS affine: the plane normal to the voxel axis of largest spacing."""
    affine = np.asarray(torch.as_tensor(affine).double())[:3, :3]
    spacing = np.linalg.norm(affine, axis=0)
    direction = np.abs(affine).argmax(axis=0)  # the world axis (R, A, S) each voxel axis mostly follows
    thickest = np.flatnonzero(spacing >= spacing.max() * (1 - SPACING_TOLERANCE))
    axial = [axis for axis in thickest if direction[axis] == 2]
    return _PLANE_OF_DIRECTION[int(direction[axial[0] if axial else thickest[0]])]


class DisplayOrientationd(MapTransform):
    """Reorient volumes to the display of their acquisition plane (slice axis last); leave 2-D images as stored.

    The chosen plane is recorded in the meta data as ``display_plane`` ("image" for a 2-D image).
    """

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        item = dict(data)
        for key in self.key_iterator(item):
            image = item[key]
            if image.ndim == 3:  # [C, row, column]: a 2-D image, displayed as stored
                image.meta["display_plane"] = "image"
                continue
            plane = acquisition_plane(image.affine)
            image = Orientation(axcodes=PLANE_CODES[plane], labels=None)(image)
            image.meta["display_plane"] = plane
            item[key] = image
        return item
