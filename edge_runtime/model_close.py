"""Closing an :class:`~edge_runtime.model.EdgeModel`: a service that swaps models frees the old one's onnxruntime
session (its weights, memory arena and threads) when it says so, not whenever the last reference to the model goes
(a model had no ``close()``; a verdict, a pool task or a traceback holding the model kept the session alive).

>>> with load_model("line3.onnx") as model:      # doctest: +SKIP
...     verdict = model.predict(image)
>>> model.predict(image)                         # doctest: +SKIP
ClosedModelError: line3.onnx: this model was closed (close(), or the end of its with block); load it again ...
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge_runtime.errors import ClosedModelError
from edge_runtime.model_pickle import PicklesAsItsFile


class ClosesItsSession(PicklesAsItsFile):
    """``close()``, ``closed`` and ``with``-use for a model whose onnxruntime session is its ``session``."""

    path: Path

    def close(self) -> None:
        """Free the onnxruntime session now; each later use of the model raises :class:`ClosedModelError` (its
        ``path``, ``info`` and counts stay readable). Closing again does nothing. A run in progress on another
        thread finishes with the session it started on."""
        self.__dict__["_closed"] = True
        self.__dict__.pop("session", None)  # the last reference: onnxruntime frees the session here

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return bool(self.__dict__.get("_closed"))

    def check_open(self) -> None:
        """Raise :class:`ClosedModelError` for a closed model (before any image is prepared for it)."""
        if self.closed:
            name = self.__dict__.get("path", "model")
            raise ClosedModelError(f"{name}: this model was closed (close(), or the end of its with block); load it "
                                   "again with load_model to use it")  # fmt: skip

    def __enter__(self) -> ClosesItsSession:
        self.check_open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        # only reached for an attribute not set: the session of a closed model is gone, and says why
        if name == "session":
            self.check_open()
        return super().__getattr__(name)
