"""Let an app environment (MONAI Label's, MONAI Deploy's) import the core environment's packages (torch, sdmad, ...).

Run with the app environment's python: `python link_core_venv.py <core venv>`. Writes a .pth file that adds the
core site-packages *after* the app environment's own, so its own pins win (MONAI Label: numpy<2, pydicom<3;
MONAI Deploy: protobuf<7 and its own copy of monai, which the SDK extends with `monai.deploy`) and torch is not
installed twice.
"""

import subprocess
import sys
import sysconfig
from pathlib import Path

core_python = Path(sys.argv[1]) / "bin" / "python"
core = subprocess.check_output([str(core_python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               text=True).strip()
target = Path(sysconfig.get_paths()["purelib"]) / "zz_sdmad_core_venv.pth"
target.write_text(f"import site; site.addsitedir({core!r})\n")
print(f"{target} -> {core}")
