"""A run folder's identity: the settings that made its split and its model, recorded by `training` and checked by
every later run (a resumed training, `evaluating`), so that a changed setting is an error, never a silent re-split
or a model reported under settings it was not trained with.

A run config (common.yaml's ``run_config``) has sections: ``split`` (seed, shots, normal shots, validation
fraction, categories and the data set's identity), ``model`` (backbone, adapters, lambda, sign file), and
``training`` / ``evaluation`` (added by train.yaml / evaluate.yaml).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sdmad.atomic import write_json_atomic
from sdmad.data.errors import DataError
from sdmad.data.few_shot import few_shot_split
from sdmad.data.items import with_array_labels
from sdmad.errors import SDMADError
from sdmad.flags import as_flag

logger = logging.getLogger(__name__)

# Raising these continues a run (more epochs) or changes only what is logged; every other key must match.
RESUMABLE_KEYS = ("training.epochs", "training.val_interval", "training.log_interval", "training.decision_rule")
# What an evaluation must share with its training run.
EVALUATION_SECTIONS = ("split", "model")
SPLITS = ("train", "val", "test")


class RunConfigError(SDMADError):
    """A run folder was made with other settings than the command asks for; the message names every key."""


@contextmanager
def fixed_cpu_threads(count: int) -> Iterator[None]:
    """torch's intra-op CPU threads set to ``count`` inside the block, restored after (see ``make_reproducible``)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def make_reproducible(seed: int, cpu_threads: int | str | None = None) -> None:
    """Seed every generator (MONAI's ``set_determinism``) and, when ``cpu_threads`` is set, fix torch's intra-op
    threads for this process: CPU reductions are split by thread, so the last bits of a result depend on the thread
    count, and a fixed count gives the same figures whatever the machine's core count (tests/test_workflows.py)."""
    import torch
    from monai.utils import set_determinism

    if cpu_threads not in (None, "", "null", "None", 0, "0"):
        torch.set_num_threads(int(cpu_threads))
    set_determinism(seed=seed)


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings as dotted keys: ``{"split": {"shots": 4}}`` -> ``{"split.shots": 4}``."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _comparable(value: Any) -> Any:
    """JSON round trip: a tuple and the list it was saved as compare equal."""
    return json.loads(json.dumps(value, default=str))


def differences(
    recorded: Mapping[str, Any],
    current: Mapping[str, Any],
    ignore: Sequence[str] = (),
    sections: Sequence[str] | None = None,
    names: tuple[str, str] = ("run", "now"),
) -> list[str]:
    """``"key: run X, now Y"`` for every setting that differs (within ``sections`` when given)."""
    old, new = flatten(_comparable(dict(recorded))), flatten(_comparable(dict(current)))
    keys = sorted(set(old) | set(new))
    if sections is not None:
        keys = [key for key in keys if key.split(".")[0] in sections]
    return [
        f"{key}: {names[0]} {old.get(key, 'absent')!r}, {names[1]} {new.get(key, 'absent')!r}"
        for key in keys
        if key not in ignore and _value(old, key) != _value(new, key)
    ]


# Settings recorded since a version: a run recorded before lacks them, and had their value here (None otherwise)
ADDED_SETTINGS = {"model.method": "sdmad", "model.mvfa_object": None}


def _value(settings: Mapping[str, Any], key: str) -> Any:
    """A flattened setting; one the run predates counts as the value it had then."""
    return settings[key] if key in settings else ADDED_SETTINGS.get(key)


def file_digests(paths: Sequence[str | Path]) -> dict[str, str]:
    """The sha256 (first 16 hex digits) of each file, by file name: a data set's identity in a run config."""
    digests = {}
    for path in map(Path, paths):
        if not path.is_file():
            raise DataError(f"{path}: not found (a label file of the task; see docs/data.md)")
        digests[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return digests


def run_splits(
    items: Callable[[], list[dict]],
    settings: Mapping[str, Any],
    splits_file: str | Path,
    write: bool,
    require_test: bool = True,
    make_split: Callable[[], dict[str, list[dict]]] | None = None,
) -> dict[str, list[dict]]:
    """The run's train/val/test items.

    Only `training` writes them (``write=True``): made by ``few_shot_split`` from ``items()`` when the run has no
    `splits.json` yet, otherwise read back. Every later run reads them, and any split setting that differs from the
    recorded one is a RunConfigError naming each key with both values.

    Args:
        items: called only when the split is made (it may scan a large data folder).
        settings: the run config's ``split`` section: seed, shots, normal_shots, val_fraction, categories, data.
        splits_file: `<run>/training/splits.json`.
        write: True for `training`; False for `evaluating`, which never makes a split.
        require_test: False allows an empty test split (retraining on every labelled study).
        make_split: makes the split instead of ``few_shot_split`` (a data set with its own test folder, e.g. BMAD
            protocol 1: sdmad.data.bmad_protocol_split); ``settings`` must then hold what it depends on.
    """
    path, require_test = Path(splits_file), as_flag(require_test, "require_test")
    if path.is_file():
        content = json.loads(path.read_text())
        recorded = content.get("settings")
        if recorded is None:
            raise RunConfigError(
                f"{path}: written by an older version without its settings; train again with "
                f"--resume false (starts this run over) or choose another --run_name"
            )
        changed = differences(recorded, settings)
        if changed:
            what = "resume with" if write else "evaluate with"
            raise RunConfigError(
                f"{path}: this run's split was made with other settings; cannot {what}: "
                + "; ".join(changed)
                + ". Use the run's settings (its config.json), "
                "train with --resume false to start it over, or choose another --run_name"
            )
        return {name: with_array_labels(content[name]) for name in SPLITS}
    if not write:
        raise RunConfigError(
            f"{path}: not found; run `training` with the same --run_name first (it makes the "
            f"split that evaluation uses)"
        )
    if make_split is not None:
        splits = make_split()
    else:
        splits = few_shot_split(
            items(),
            settings["categories"],
            settings["shots"],
            settings["normal_shots"],
            settings["val_fraction"],
            settings["seed"],
            require_test=require_test,
        )
    write_json_atomic({"settings": dict(settings), **splits}, path)
    logger.info("split written to %s: %s", path, {name: len(splits[name]) for name in SPLITS})
    return splits


def _training_record(train_dir: Path) -> tuple[Path, dict, int] | None:
    """The run config recorded by the newest training checkpoint (with the epochs it has trained), else by
    config.json of a finished run; None for a new run."""
    from sdmad.checkpoints import read_checkpoint
    from sdmad.handlers.checkpoints import latest_checkpoint

    checkpoint = latest_checkpoint(train_dir / "checkpoints")
    if checkpoint is not None:
        content = read_checkpoint(checkpoint)
        recorded = content.get(RunRecord.KEY)
        if recorded is None:
            raise RunConfigError(
                f"{checkpoint}: written by an older version without its run config; train again "
                f"with --resume false (starts this run over) or choose another --run_name"
            )
        trainer = content.get("trainer", {})  # Ignite's engine state: iterations and epoch length
        return checkpoint, recorded, int(trainer.get("iteration", 0)) // max(int(trainer.get("epoch_length", 1)), 1)
    if (train_dir / "model.pt").is_file() and (train_dir / "config.json").is_file():
        recorded = json.loads((train_dir / "config.json").read_text())
        return train_dir / "config.json", recorded, int(recorded.get("training", {}).get("epochs", 0))
    return None


def prepare_training_dir(train_dir: str | Path, run_config: Mapping[str, Any], resume: bool = True) -> None:
    """Before `training` reads anything: check that the run folder belongs to these settings, then record them.

    With ``resume`` (the default), a folder whose newest checkpoint (or finished model) was made with other settings
    is a RunConfigError naming every differing key; raising ``epochs`` alone continues the run. ``resume=False``
    moves an existing training folder aside (`training.replaced-<UTC time>`, nothing is deleted) and starts over.
    """
    import ignite.distributed as idist

    train_dir, resume = Path(train_dir), as_flag(resume, "resume")
    if idist.get_rank() != 0:  # with several processes, rank 0 checks, moves and writes
        return
    if not resume and train_dir.is_dir() and any(train_dir.iterdir()):
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        aside = train_dir.with_name(f"{train_dir.name}.replaced-{stamp}")
        shutil.move(str(train_dir), str(aside))
        logger.warning("--resume false: the previous training folder was moved to %s", aside)
    elif resume:
        record = _training_record(train_dir)
        if record is not None:
            where, recorded, trained = record
            changed = differences(recorded, run_config, ignore=RESUMABLE_KEYS)
            if changed:
                raise RunConfigError(
                    f"{where}: this run was trained with other settings: "
                    + "; ".join(changed)
                    + ". Re-run with the run's settings (raising --epochs continues it), pass "
                    "--resume false to start it over in this folder, or choose another --run_name"
                )
            epochs = int(dict(run_config).get("training", {}).get("epochs", trained))
            if epochs < trained:
                raise RunConfigError(
                    f"{where}: this run has trained {trained} epochs already, more than --epochs "
                    f"{epochs}; pass --epochs {trained} or more to continue it, --resume false to "
                    f"start it over, or choose another --run_name"
                )
    write_json_atomic(dict(run_config), train_dir / "config.json")


def check_against_training(
    train_dir: str | Path,
    run_config: Mapping[str, Any],
    checkpoint: str | Path | None = None,
    sections: Sequence[str] = EVALUATION_SECTIONS,
) -> None:
    """Refuse an evaluation whose split or model settings differ from its training run's, or a checkpoint trained
    in another run (whose training or validation images may sit in this run's test split): RunConfigError."""
    from sdmad.checkpoints import read_checkpoint

    path = Path(train_dir) / "config.json"
    if not path.is_file():
        raise RunConfigError(f"{path}: not found; run `training` with the same --run_name first")
    training = json.loads(path.read_text())
    changed = differences(training, run_config, sections=sections, names=("training", "evaluation"))
    if changed:
        raise RunConfigError(
            f"{path}: the evaluation's settings differ from its training run's: "
            + "; ".join(changed)
            + ". Evaluate with the training run's settings, or train a new run"
        )
    if checkpoint is not None:
        recorded = read_checkpoint(checkpoint).get(RunRecord.KEY)
        if recorded is None:
            raise RunConfigError(
                f"{checkpoint}: records no run settings, so nothing shows that its training and "
                f"validation images are outside this run's test split; evaluate a model trained in "
                f"this run (its model.pt)"
            )
        changed = differences(recorded, training, sections=sections, names=("checkpoint", "run"))
        if changed:
            raise RunConfigError(
                f"{checkpoint}: was trained in another run than {Path(train_dir).parent.name}: "
                + "; ".join(changed)
                + ". Its training or validation images may be in this run's "
                "test split; evaluate it in its own run"
            )


def evaluation_dir(run_dir: str | Path, checkpoint: str | Path | None, sign_selection: str = "distance") -> str:
    """Where an evaluation writes: `<run>/evaluating`, `_zero_shot` without a checkpoint, `_selection_<mode>` for a
    sign selection other than the paper's (an ablation never overwrites the main report)."""
    from sdmad.checkpoints import checkpoint_or_none

    name = "evaluating" + ("" if checkpoint_or_none(checkpoint) else "_zero_shot")
    return str(Path(run_dir) / (name + ("" if sign_selection == "distance" else f"_selection_{sign_selection}")))


class RunRecord:
    """The run config as an entry of every training checkpoint (and of `model.pt`), so that a checkpoint says
    which settings made it; ``prepare_training_dir`` checks it before a run resumes."""

    KEY = "run_config"

    def __init__(self, run_config: Mapping[str, Any]):
        self.run_config = dict(run_config)

    def state_dict(self) -> dict[str, Any]:
        return _comparable(self.run_config)

    def load_state_dict(self, recorded: Mapping[str, Any]) -> None:
        changed = differences(recorded, self.run_config, ignore=RESUMABLE_KEYS)
        if changed:
            raise RunConfigError("the checkpoint to resume was trained with other settings: " + "; ".join(changed))
