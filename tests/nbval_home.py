"""pytest plugin: nbval runs of the notebooks keep their run store in a temp folder, not the repo.

It lives here, not as a conftest.py among the user's notebooks; load it with
`python -m pytest -p tests.nbval_home notebooks --nbval-lax` (tests/run.sh does).
"""

from __future__ import annotations

import os
import shutil
import tempfile


def pytest_configure(config) -> None:
    """Point COMFY_WIDGETS_HOME (inherited by the notebook kernels) at a fresh temp folder."""
    if os.environ.get("COMFY_WIDGETS_HOME"):
        return
    home = tempfile.mkdtemp(prefix="cw-notebooks-")
    os.environ["COMFY_WIDGETS_HOME"] = home
    config.add_cleanup(lambda: shutil.rmtree(home, ignore_errors=True))
