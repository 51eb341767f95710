"""An :class:`~edge_runtime.model.EdgeModel` sent to another process (a ``ProcessPoolExecutor``, multiprocessing with
spawn): it pickles as its file, its runtime config and the SHA-256 of the bytes it was loaded from, and is opened
again where it is unpickled, with every check of a load.

>>> with ProcessPoolExecutor(mp_context=get_context("spawn")) as pool:   # doctest: +SKIP
...     verdicts = list(pool.map(model.predict, images))
"""

from __future__ import annotations

from pathlib import Path

from edge_runtime.config import RuntimeConfig
from edge_runtime.errors import DefectEdgeError, ModelError
from edge_runtime.model import EdgeModel

# This process's unpickled models, by (path, config, content hash): a pool's every task carries the model (a bound
# predict does), and opening it again for each (18-42 ms) would cost more than the task (about 1 ms).
_OPENED: dict[tuple[str, RuntimeConfig, str], EdgeModel] = {}


def unpickled(path: Path, cfg: RuntimeConfig, sha256: str) -> EdgeModel:
    """The model at ``path`` opened with ``cfg``, if the file still holds the bytes the sender loaded (``sha256``).

    A failure (the file gone, damaged or replaced) is not raised here: raised while unpickling, it kills a pool's
    worker (``BrokenProcessPool``, and a traceback from inside multiprocessing). The model returned raises it at its
    first use instead, as :func:`~edge_runtime.model.load_model` raises it, so the task fails with the load's line.
    """
    key = (str(path), cfg, sha256)
    if key in _OPENED:
        return _OPENED[key]
    try:
        model = EdgeModel(path, cfg)
        if model.sha256 != sha256:
            raise ModelError(
                f"{path}: the model file changed after this model was loaded (re-exported or replaced); load it "
                "again and pass the new model"
            )
    except DefectEdgeError as exc:
        failed = EdgeModel.__new__(EdgeModel)
        failed.__dict__["_unpickle_error"] = exc.with_traceback(None)
        return failed
    _OPENED[key] = model
    return model
