"""Reading ``last.pt`` for ``--resume`` and deciding whether this command may continue that run.

The state is read and the options compared before any image is decoded: a resume that would change the model or
its data is refused at once, naming the option, instead of training on and mixing two recipes in one model.
"""

from __future__ import annotations

from edge_runtime.errors import require_extra

require_extra("torch", "train")  # one clear line instead of "No module named torch"

import contextlib
import json
import os
from collections.abc import Callable
from dataclasses import replace
from enum import Enum
from pathlib import Path
from typing import Any

import torch

from edge_runtime.errors import DataError, ModelError, OutputError, UsageError
from train.checkpoint import (
    CUT_SHORT,
    HASH_KEY,
    checkpoint_digest,
    cut_short_size,
    load_checkpoint,
    weights_digest,
)
from train.config import Arch, TrainConfig
from train.data import listed_content, listed_names, resolve_classes
from train.model import ARCHS
from train.run_dir import stale_temp_files

# What Trainer.state() writes to last.pt; a file without them (a best.pt copied over it) is refused, not a KeyError.
# "torch_rng" (the global generator dropout draws from) is not among them: a last.pt written before it was saved
# still resumes, only not bit for bit.
RESUME_KEYS = (
    "model",
    "ema",
    "optimizer",
    "scheduler",
    "gen",
    "history",
    "best_key",
    "best_epoch",
    "elapsed",
    "fingerprint",
    "config",
)

# Options that decide the model, its data or its training recipe: a resumed run must use the run's own values, or
# epochs 1..k and k+1..n would come from two recipes (and --img-size failed with a tensor size error, exit 1).
# Options left out may change on resume: --epochs (the schedule is re-planned), --loc-head-epochs (the head is
# trained whole after the last epoch, by the command that finishes the run), --threads, --bf16/--no-bf16 (how
# fast, not what), --max-bad-fraction (a limit; other images change the data fingerprint), --quiet, --data and
# --out as paths (the data's content is checked by its fingerprint).
FIXED_ON_RESUME = {
    "arch": "--arch",
    "img_size": "--img-size",
    "seed": "--seed",
    "val_fraction": "--val-fraction",
    "batch_size": "--batch-size",
    "lr": "--lr",
    "weight_decay": "weight decay",
    "hard_defect_weight": "--hard-defect-weight",
    "station_views": "--station-views",
    "station_share": "--station-share",
    "second_look": "--second-look",
    "positive_class": "--positive-class",
    "max_images_per_class": "--max-images-per-class",
    "init": "--init",
}


# Options a resumed run takes from its last.pt when the command does not type them: the recipe above, how long it
# trains (an untyped --epochs re-planned a 2-epoch run to the default 40), and --threads and --bf16: they change no
# recipe, but another thread count adds the floats in another order (a run resumed with the default threads drifted
# from the uninterrupted one from its first epoch on). --quiet's default stands.
FROM_RUN = {
    **FIXED_ON_RESUME,
    "epochs": "--epochs",
    "loc_head_epochs": "--loc-head-epochs",
    "max_bad_fraction": "--max-bad-fraction",
    "threads": "--threads",
    "bf16": "--bf16",
}


def _positive_dir(data: Path, value: str | None) -> str | None:
    """The defective class folder that --positive-class ``value`` picks in ``data/train`` (None: the one a known
    folder name gives), from the folder names alone; ``value`` itself where the folders do not tell."""
    try:
        return resolve_classes(Path(data) / "train", value).positive_dir
    except DataError:
        return value


def _as_given(key: str, value: Any, arch: str, data: Path) -> str:
    """A config value as the user would type it: the resolved size for a default --img-size, the resolved class
    for a default --positive-class (a run that found def_front itself refused a typed def_front)."""
    if key == "second_look":
        return "--second-look" if value else "--no-second-look"
    if key == "bf16" and value is not None:
        return "--bf16" if value else "--no-bf16"
    if isinstance(value, Enum):  # --arch seed, not Arch.SEED
        value = value.value
    if key == "img_size" and value is None:
        value = ARCHS[Arch(arch)][1]
    if key == "positive_class":
        value = _positive_dir(data, value)
    option = FROM_RUN[key]
    return f"{option} {value}" if value is not None else f"no {option}"


def changed_options(
    stored: dict[str, Any], cfg: TrainConfig, given: frozenset[str] | None = None
) -> list[tuple[str, str]]:
    """(this command's value, the run's value) for every option that may not change on resume; with ``given``,
    only the typed ones (an --img-size left to --arch's default changed with a typed --arch, and was named as if
    typed)."""
    now = cfg.to_dict()
    old_arch, new_arch = str(stored.get("arch", now["arch"])), now["arch"]
    out = []
    for key in FIXED_ON_RESUME:
        if key not in stored:  # a last.pt of an older train-model: nothing to compare with
            continue
        if given is not None and key not in given:
            continue
        old, new = _as_given(key, stored[key], old_arch, cfg.data), _as_given(key, now[key], new_arch, cfg.data)
        if old != new:
            out.append((new, old))
    return out


def with_run_options(cfg: TrainConfig, stored: dict[str, Any], given: frozenset[str] | None) -> tuple[TrainConfig, str]:
    """``cfg`` with every option of :data:`FROM_RUN` that the command did not type taken from the run; and those of
    them that differ from this command's defaults, as typed options (for the log). ``given`` None: every option
    counts as typed (a :class:`TrainConfig` built in Python says what it means)."""
    if given is None:
        return cfg, ""
    taken = {k: stored[k] for k in FROM_RUN if k in stored and k not in given}
    if (taken.get("threads") or 0) > (os.cpu_count() or 1):  # a run from a larger machine: this one's cores
        del taken["threads"]
    if "arch" in taken:
        taken["arch"] = Arch(taken["arch"])
    if taken.get("init") is not None:
        taken["init"] = Path(taken["init"])
    new = replace(cfg, **taken)

    def typed(c: TrainConfig, key: str) -> str:
        return _as_given(key, getattr(c, key), c.arch.value, c.data)

    shown = [typed(new, k) for k in taken if k != "weight_decay" and typed(new, k) != typed(cfg, k)]
    return new, ", ".join(shown)


def _read_state(run_dir: Path) -> dict[str, Any]:
    """``run_dir/last.pt``, checked: there, readable, and a resume state."""
    path = run_dir / "last.pt"
    if not path.exists():
        if (run_dir / "best.pt").exists():
            raise OutputError(
                f"{path}: not there, so the model in {run_dir} (best.pt) cannot be trained further; choose another "
                "--out to train anew"
            )
        raise OutputError(f"{path}: nothing to resume; run without --resume to start a new training")
    try:
        st = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        size = cut_short_size(path)
        what = CUT_SHORT.format(size) if size is not None else f"cannot read resume state ({type(exc).__name__})"
        raise ModelError(f"{path}: {what}, so the run cannot go on from it; {_fall_back(run_dir)}") from exc
    missing = [k for k in RESUME_KEYS if not isinstance(st, dict) or k not in st]
    if missing:
        raise ModelError(
            f"{path}: not a resume state written by train-model (no {missing[0]}); use a new --out, or restore "
            "the run's own last.pt"
        )
    return st


def _fall_back(run_dir: Path) -> str:
    """What to do when the run's last.pt cannot be read: its best.pt, where intact, is the model trained so far."""
    best = run_dir / "best.pt"
    with contextlib.suppress(ModelError, OSError):
        epoch = load_checkpoint(best).epoch
        return (f"{best} (epoch {epoch}) is intact: export it, or train on from its weights in a new run with "
                f"--init {best} --out NEW; or restore the run's own last.pt")  # fmt: skip
    return "restore the run's own last.pt, or train anew in another --out"


def _finish_killed_save(run_dir: Path, st: dict[str, Any], log: Callable[[str], None]) -> None:
    """Put in place the best.pt that a train-model killed between an epoch's two renames left under its temporary
    name (:func:`train.checkpoint_save.staged_torch_save` renames last.pt first): --resume found best.pt missing, or
    an earlier epoch's, and refused the run for good ("restore the run's own pair"), the file it needed beside it.
    Only a whole file (its content hash) with the weights last.pt recorded is taken."""
    want, best = st.get("best_weights"), run_dir / "best.pt"
    temps = [p for p in stale_temp_files(run_dir) if p.name.startswith(".best.pt.")]
    if not want or not temps or _weights_of(best) == want:
        return
    for tmp in temps:
        ckpt = _load_quietly(tmp)
        if isinstance(ckpt, dict) and ckpt.get(HASH_KEY) == checkpoint_digest(ckpt) and _weights_of(tmp) == want:
            os.replace(tmp, best)
            log(f"{best}: put in place from {tmp.name}, the best epoch ({st['best_epoch']}) that a killed run had "
                "written but not yet renamed")  # fmt: skip
            return


def _load_quietly(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - torch raises many types for a bad file
        return None


def _weights_of(path: Path) -> str | None:
    ckpt = _load_quietly(path)
    with contextlib.suppress(Exception):
        return weights_digest(ckpt["state_dict"])
    return None


def other_data(run_dir: Path, files: list[str], *, listed_then: list[str] = ()) -> DataError:
    """The refusal of a resume on other data, naming the training images that differ from those the run's best.pt
    records (it said only "was trained on other data": which images were added, removed or moved to the other class
    since, the user could not tell). ``listed_then``: the names the run listed, those it could not read among them
    (not "added" now)."""
    shown = ""
    with contextlib.suppress(ModelError, OSError):
        record = load_checkpoint(run_dir / "best.pt").data
        before = set(record.train_files) | set(record.val_files)
        now = set(files) - (set(listed_then) - before)
        changes = [f"{len(names)} {what} ({_some(names)})" for what, names in (("added", now - before),
                   ("gone", before - now)) if names]  # fmt: skip
        same = "train/ holds the same files: its images or test/ changed"
        shown = f" (train/: {', '.join(changes)})" if changes else f" ({same})"
    return DataError(f"{run_dir / 'last.pt'}: was trained on other data{shown}; put the data back as the run had it "
                     "to resume, or use a new --out for this data")  # fmt: skip


def _check_names(run_dir: Path, st: dict[str, Any], cfg: TrainConfig) -> dict[str, list[str]] | None:
    """Refuse a resume on other data from the image names alone, before minutes of decoding: the names listed now
    against those last.pt lists (a last.pt without them: against the images its best.pt names, gone ones only). The
    content of same-named images is checked by the fingerprint, once decoded. Returns the names listed now."""
    try:
        classes = resolve_classes(Path(cfg.data) / "train", cfg.positive_class)
        now = listed_names(Path(cfg.data), classes, cfg.max_images_per_class)
    except (DataError, OSError):
        return None  # the data folder itself is wrong: load_data says how, as without --resume
    then = st.get("listing")
    if isinstance(then, dict):
        if now != then:
            raise other_data(run_dir, now["train"], listed_then=list(then.get("train", [])))
        return now
    with contextlib.suppress(ModelError, OSError):
        record = load_checkpoint(run_dir / "best.pt").data
        if (set(record.train_files) | set(record.val_files)) - set(now["train"]):
            raise other_data(run_dir, now["train"])
    return now


class RunFinished(Exception):  # noqa: N818 - not an error: the run is done, nothing to do (exit 0)
    """A --resume of a run that had trained all its epochs and written its report and head: nothing to do."""


def _check_finished(run_dir: Path, st: dict[str, Any], cfg: TrainConfig, names: dict[str, list[str]] | None) -> None:
    """A run with every epoch trained: :class:`RunFinished` when its report and localisation head are written as
    this command would write them, on the same images (``names``, listed now, read byte for byte): it redid them
    in silence, minutes of decoding and head training, to the same files. Other bytes: decoded and refused."""
    done = len(st["history"])
    if names is None or st.get("content") is None or listed_content(Path(cfg.data), names) != st["content"]:
        return
    report = _load_json(run_dir / "report.json")
    ckpt = _load_quietly(run_dir / "best.pt")
    head = ckpt.get("loc_head") if isinstance(ckpt, dict) else None
    if cfg.loc_head_epochs == 0:
        head_done = head is None
    elif cfg.arch is not Arch.DEFECTNET:  # a network without the head's stages never has one
        head_done = True
    else:
        head_done = isinstance(head, dict) and (head.get("epochs"), head.get("seed")) == (cfg.loc_head_epochs, cfg.seed)
    best = report.get("model", {}).get("best_epoch") if isinstance(report.get("model"), dict) else None
    if (report.get("epochs"), best) == (done, st["best_epoch"]) and head_done:
        raise RunFinished(f"{run_dir}: the run had finished (epoch {done} of {done}); nothing trained, its files left "
                          f"as they were; pass --epochs N above {done} with --resume to train it further")  # fmt: skip


def _load_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _some(names: set[str]) -> str:
    return ", ".join(sorted(names)[:2]) + (" ..." if len(names) > 2 else "")


def _check_best_beside(run_dir: Path, st: dict[str, Any]) -> None:
    """The run's best.pt must be there and be the best epoch this last.pt recorded, before any image is read: without
    it every epoch was trained and the run then failed on the missing file, its best epoch lost for good; with another
    run's best.pt (same data) report.json described one run and best.pt held the other, exit 0."""
    best = run_dir / "best.pt"
    if not st["history"]:
        return
    if not best.exists():
        raise OutputError(f"{best}: missing: the run's best epoch so far ({st['best_epoch']}) would be lost; restore "
                          "the run's own best.pt, or train anew in another --out")  # fmt: skip
    try:
        ckpt = torch.load(best, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        # it trained every epoch, then the report could not read best.pt (exit 4), and so did every --resume after
        size = cut_short_size(best)
        what = CUT_SHORT.format(size) if size is not None else f"not readable ({type(exc).__name__})"
        raise ModelError(f"{best}: {what}: the run's best epoch so far ({st['best_epoch']}) is lost with it and "
                         "the run cannot finish; restore the run's own best.pt, or train anew in another --out"
                         ) from exc  # fmt: skip
    if not isinstance(ckpt, dict):
        return
    theirs = (ckpt.get("data_fingerprint"), ckpt.get("epoch"))
    ours = (st.get("fingerprint"), st.get("best_epoch"))
    same_weights = True
    if st.get("best_weights") and isinstance(ckpt.get("state_dict"), dict):
        # same data, seed and best epoch, other weights (another --lr): report.json had described one run, best.pt
        # held the other
        with contextlib.suppress(Exception):
            same_weights = weights_digest(ckpt["state_dict"]) == st["best_weights"]
    if (None not in theirs and theirs != ours) or not same_weights:
        raise ModelError(f"{best}: not the best epoch that {run_dir / 'last.pt'} recorded (epoch {theirs[1]} of "
                         f"data {theirs[0]}, not epoch {ours[1]} of {ours[0]}): the two files come from different "
                         "runs; restore the run's own pair, or train anew in another --out")  # fmt: skip


def load_resume_state(
    run_dir: Path, cfg: TrainConfig, *, given: frozenset[str] | None = None, log: Callable[[str], None] = print
) -> tuple[dict[str, Any], TrainConfig]:
    """The state in ``run_dir/last.pt`` and the config to continue it with: options not in ``given`` (those typed
    on the command line) are the run's own; a typed option that changes the recipe, or an --epochs below the epochs
    already trained, is refused."""
    st = _read_state(run_dir)
    _finish_killed_save(run_dir, st, log)
    _check_best_beside(run_dir, st)
    stored = st["config"] if isinstance(st["config"], dict) else {}
    cfg, taken = with_run_options(cfg, stored, given)
    changed = changed_options(stored, cfg, given)
    if changed:
        typed = ", ".join(new for new, _ in changed)
        had = ", ".join(old for _, old in changed)
        raise UsageError(
            f"{typed}: the run in {run_dir} was trained with {had}; leave the option out to keep the run's own "
            "value, or train anew in another --out"
        )
    done = len(st["history"])
    if cfg.epochs < done:  # nothing would be trained, yet the schedule and report.json claimed --epochs
        raise UsageError(
            f"--epochs {cfg.epochs}: the run in {run_dir} has already trained {done} epochs; pass --epochs {done} "
            "to finish it as it is, or more to train on"
        )
    names = _check_names(run_dir, st, cfg)
    if done == cfg.epochs:
        _check_finished(run_dir, st, cfg, names)
    if taken:
        log(f"resuming with the run's own {taken} (options not given are taken from {run_dir / 'last.pt'})")
    if done == cfg.epochs:  # stopped while the report or the head was written, or a typed --loc-head-epochs
        log(f"{run_dir}: every epoch was trained already (epoch {done} of {done}); nothing to train: writing the "
            "run's report and localisation head")  # fmt: skip
    return st, cfg
