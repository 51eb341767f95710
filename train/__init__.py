"""defect-edge training: torch models, data pipeline, train-model.

Needs the ``train`` extra (torch); every module that uses torch says so with one clear ImportError, while
``train-model --help`` works without it.
"""

from edge_runtime.errors import exit_if_missing

exit_if_missing(("torch",))  # python -m train.loc_head without the extra: one line, exit 8
