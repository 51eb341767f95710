"""An :class:`~edge_runtime.model.EdgeModel` sent to another process (a ``ProcessPoolExecutor``, multiprocessing with
spawn): it pickles as its file, its runtime config and the SHA-256 of the bytes it was loaded from, and is opened
again where it is unpickled, with every check of a load.

>>> with ProcessPoolExecutor(mp_context=get_context("spawn")) as pool:   # doctest: +SKIP
...     verdicts = list(pool.map(model.predict, images))
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_runtime.config import RuntimeConfig
from edge_runtime.errors import DefectEdgeError, ModelError, UnopenedModelError

if TYPE_CHECKING:
    from edge_runtime.model import EdgeModel

# What EdgeModel.__init__ sets: on a pickled model that could not be opened again, using one raises the load's error
# (a UsageError for a --threads above the worker's cores had raised at a mere hasattr(model, "x")).
OPENED_ATTRIBUTES = frozenset({
    "path", "where", "cfg", "sha256", "provider_note", "session", "info", "providers", "fell_back", "max_batch",
    "second_looks", "symmetry_looks", "symmetry_lifts", "verified", "auto_threads",
})  # fmt: skip


class PicklesAsItsFile:
    """EdgeModel's pickling: an onnxruntime session does not pickle (a process pool could not take a model), so a
    model pickles as what rebuilds it, and one that could not be rebuilt raises the load's error when used."""

    where: Path
    cfg: RuntimeConfig
    sha256: str

    def __reduce__(self) -> tuple[Any, tuple[Path, RuntimeConfig, str]]:
        return unpickled, (self.where, self.cfg, self.sha256)

    def __getattr__(self, name: str) -> Any:
        # only reached for an attribute not set: on a model that could not be re-opened where it was unpickled
        error = self.__dict__.get("_unpickle_error")
        # hasattr(model, "x") answers whatever the failure; a property that reads what __init__ sets raises it
        if error is None or (name not in OPENED_ATTRIBUTES and not hasattr(type(self), name)):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        if type(error) is ModelError:  # the file gone, damaged or replaced: hasattr() answers, use raises it
            raise UnopenedModelError(str(error), exit_code=error.exit_code, cli=error.cli)
        raise copy.copy(error)


# This process's unpickled models, by (path, config, content hash): a pool's every task carries the model (a bound
# predict does), and opening it again for each (18-42 ms) would cost more than the task (about 1 ms).
_OPENED: dict[tuple[str, RuntimeConfig, str], EdgeModel] = {}


def unpickled(path: Path, cfg: RuntimeConfig, sha256: str) -> EdgeModel:
    """The model at ``path`` opened with ``cfg``, if the file still holds the bytes the sender loaded (``sha256``).

    A failure (the file gone, damaged or replaced) is not raised here: raised while unpickling, it kills a pool's
    worker (``BrokenProcessPool``, and a traceback from inside multiprocessing). The model returned raises it at its
    first use instead, as :func:`~edge_runtime.model.load_model` raises it, so the task fails with the load's line.
    """
    from edge_runtime.model import EdgeModel  # that module imports this one

    key = (str(path), cfg, sha256)
    if key in _OPENED and not _OPENED[key].closed:  # a task that closed it: the next one opens it again
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
