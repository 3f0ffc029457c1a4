"""Let the MONAI Label environment import the core environment's packages (torch, monai, sdmad, ...).

Run with the label environment's python: `python link_core_venv.py <core venv>`. Writes a .pth file that adds the
core site-packages *after* the label environment's own, so the label environment's pins (numpy<2, pydicom<3) win
and torch is not installed twice.
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
