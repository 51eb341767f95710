"""The runtime stage's one config object (provider, threads, which looks a model takes), built by the CLI and
passed to :class:`~edge_runtime.model.EdgeModel` explicitly."""

from __future__ import annotations

import numbers
import os
import sys
import warnings
from dataclasses import dataclass

import numpy as np

from edge_runtime.cpu_quota import threads_warning
from edge_runtime.errors import ThreadsWarning
from edge_runtime.providers import Provider

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


@dataclass(frozen=True)
class RuntimeConfig:
    """How to run a model: which execution provider and how many CPU threads (None: onnxruntime decides).

    ``spin`` False stops onnxruntime's idle threads from spinning while they wait for work: a live source
    brings one frame every 33 ms, and threads spinning in between take a CPU core that the rest of the station
    (the web view, a browser on the same screen) then waits for. None: spinning, except where ``edge-infer``
    reads a live source.
    """

    provider: Provider = Provider.AUTO
    threads: int | None = None
    spin: bool | None = None
    # False: one view per item even where the model asks for a second look near its threshold (for comparisons;
    # the model's threshold was chosen with both views).
    second_look: bool = True
    # False: the part's symmetry is not measured near the threshold even where the model asks for it (comparisons).
    symmetry_look: bool = True
    # False: a part-centred input sharper than any training image is scored as it is, not softened to their detail
    # (comparisons; detail.softened).
    soften: bool = True

    def __post_init__(self) -> None:
        # second_look="no" was taken for its truth (on), while 0 was off; spin=np.False_ left the threads spinning
        for name in ("spin", "second_look", "symmetry_look", "soften"):
            value = getattr(self, name)
            if value is None and name == "spin":
                continue
            if not isinstance(value, (bool, np.bool_)):
                raise TypeError(f"{name} must be True or False, not {value!r} ({type(value).__name__}); "
                                f"pass {name}=True or {name}=False")  # fmt: skip
            object.__setattr__(self, name, bool(value))
        # threads=2 in a process that may use 1 core (taskset, a CPU quota) was taken in silence; a count that is
        # not 1..CPU cores is refused at load (check_threads), not here
        threads = self.threads
        if isinstance(threads, numbers.Integral) and not isinstance(threads, bool) and threads > 1:
            line = threads_warning(int(threads), spelled="threads={}")
            if line is not None:
                warnings.warn(ThreadsWarning(line), stacklevel=_caller_level())


def api_config(provider: Provider | str, threads: int | None, spin: bool | None) -> RuntimeConfig:
    """load_model's config: ``threads`` checked, else ``DEFECT_EDGE_THREADS``'s count. A count over the cores this
    process may use warns in the words it came in: one from the environment had been named "threads=2", with the
    advice "use threads=1", to a caller who passed no threads."""
    from edge_runtime.model_file import check_threads, threads_from_env

    if threads is not None:
        threads = check_threads(threads, what="threads")
        return RuntimeConfig(provider=Provider.named(provider), threads=threads, spin=spin)
    threads = threads_from_env()
    line = threads_warning(threads, spelled="DEFECT_EDGE_THREADS={}") if threads is not None and threads > 1 else None
    if line is not None:
        warnings.warn(ThreadsWarning(line), stacklevel=_caller_level(start=1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ThreadsWarning)  # said above, in the environment's words
        return RuntimeConfig(provider=Provider.named(provider), threads=threads, spin=spin)


def _caller_level(start: int = 3) -> int:
    """The ``stacklevel``, for a warning of ``__post_init__``, of the first line outside this package that built
    the config (load_model's caller, or a caller of RuntimeConfig itself): past the dataclass's ``__init__``.
    ``start``: the frames from the warning's function to its caller (1 for a plain function)."""
    frame, level = sys._getframe(start), start  # 1: __post_init__, 2: the generated __init__, 3: whoever called it
    while frame is not None and frame.f_code.co_filename.startswith(PACKAGE_DIR + os.sep):
        frame, level = frame.f_back, level + 1
    return level
