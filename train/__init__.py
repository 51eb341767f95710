"""defect-edge training (needs the [train] extra: torch)."""

from edge_runtime.errors import require_extra

require_extra("torch", "train")
