"""Where the shared reference data lives: `shared/` beside the repository clone (as in CI)."""

from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"
REFERENCE = SHARED / "comfyui-reference"
WORKFLOWS = SHARED / "workflows"
