"""defect-edge training: torch models, data pipeline, train-model.

Needs the ``train`` extra (torch); every module that uses torch says so with one clear ImportError, while
``train-model --help`` works without it.
"""
