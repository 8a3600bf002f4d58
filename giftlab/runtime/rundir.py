"""One run folder, shared by `giftlab train`, `giftlab rl` and `giftlab pipeline`: it decides how
a folder is claimed, locked, checkpointed, resumed and finished, so nothing is lost.

    out_dir/
      .lock                 held (flock) while a run writes here; a second run fails at once
      .giftlab-run          marks a folder giftlab claimed (written after every check passed),
                            with the inventory of the top-level entries giftlab wrote there
      config.json           the resolved config, provenance, world size; `history`: each resume
      metrics.jsonl         one JSON object per logged step
      ckpt-000010/          a checkpoint: save_pretrained weights (+ tokenizer) that
                            AutoModelForCausalLM.from_pretrained reads (LoRA: a PEFT adapter folder),
                            and trainer_state.pt (optimiser, schedule, data order, RNG; weights_only),
                            and giftlab-files.json, written last: each file's size and SHA-256,
                            the run's settings and its data files' hashes (sealed)
      latest                the newest checkpoint's name
      best/ final/          loadable model folders (with their giftlab-files.json)

Rules: every check of the claim runs before anything is written (a refused claim leaves no
trace); a folder holding any entry giftlab did not write (not in the marker's inventory, or,
for a folder of an older giftlab, outside a run's own layout) is refused, naming it, and
`overwrite=true` removes only inventoried entries; a folder holding a run is refused unless resuming or
`overwrite=true`, but a run that failed before its first step leaves nothing to lose and is
replaced; checkpoints are written to a temporary folder and renamed into place; rotation keeps the
newest by step number; a checkpoint is never written from non-finite weights; resume compares the
settings with config.json (only `mutable` keys may change, and are recorded in its history),
refuses a finished run or a budget below the newest checkpoint, takes the newest checkpoint that
loads (saying so when `latest` names another) and drops metric lines after it (a torn last line
is reported and dropped).

Integrity: what a run reads back is checked against what it wrote. config.json is sealed (an
edit is refused on resume); a checkpoint whose files differ from its giftlab-files.json does not
load (resume says why and takes an older one); resume compares the content of the run's data
files (`inputs`) with the hashes recorded when it started; a run whose config.json is gone
resumes only where its newest checkpoint's record holds the settings (and says so).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import torch

from giftlab.config import TRACKER_FACTORIES, TRACKERS, tracker_ready
from giftlab.errors import InputError, NonFiniteError, RunDirError, write_failure, writing
from giftlab.integrity import (
    FOLDER_MANIFEST,
    IntegrityError,
    check_folder,
    check_sealed,
    read_folder_manifest,
    seal,
    sha256_file,
    write_folder_manifest,
)
from giftlab.outputs import acquire_lock, release_lock

MARKER = ".giftlab-run"
LOCK = ".lock"
STATE = "trainer_state.pt"
_CKPT = re.compile(r"^ckpt-(\d+)$")
_TMP = re.compile(r"^(ckpt-\d+|best|final|metrics\.jsonl|latest|config\.json)\.tmp")


def all_finite(params) -> bool:
    """True when every tensor in `params` is finite (one device sync)."""
    flags = [torch.isfinite(p.detach()).all() for p in params]
    return bool(torch.stack(flags).all()) if flags else True


class RunDir:
    """A claimed run folder. Use as a context manager; only the main process writes.

    Args:
        path: the folder (created if missing).
        resume: continue the run in `path` from its newest valid checkpoint.
        overwrite: replace the run in `path` (only what a giftlab run writes; a folder holding
            anything else is refused, naming a file).
        is_main: false on the non-zero ranks of a distributed run (they only read).
        log: where notices go (resume fallbacks, torn lines).
        config: the run's settings; on resume they are compared with the run's config.json.
        mutable: keys of `config` that may change on resume (recorded in config.json's history);
            a change to any other key is refused, naming each key with its old and new value.
        max_steps: the run's step budget (train, rl): resume refuses a finished run and a budget
            below the newest checkpoint's step.
        layout: a predicate on a top-level name that the caller's own runs write (the pipeline's
            data/, results.json, cells), beside the layout every run shares.
        inputs: {config key: file} of the files the run trains on: their SHA-256 is recorded
            in config.json and each checkpoint, and resume refuses files whose content changed.
    """

    def __init__(
        self,
        path,
        *,
        resume=False,
        overwrite=False,
        is_main=True,
        log=print,
        config: dict | None = None,
        mutable=(),
        max_steps: int | None = None,
        layout=None,
        inputs: dict | None = None,
    ):
        self.path = Path(path)
        self.inputs = {k: str(v) for k, v in (inputs or {}).items() if v}
        self._input_records: dict | None = None
        self.resume, self.overwrite, self.is_main, self.log = resume, overwrite, is_main, log
        self.config, self.mutable, self.max_steps = config, set(mutable), max_steps
        self.layout = layout or (lambda name: False)
        self.save_dtype = (config or {}).get("save_dtype")  # weights' dtype in saved folders
        self.history: list[dict] = []
        self._lock_fd = None
        self._tracker = None
        self._inventory: set[str] | None = None  # what giftlab wrote here (None: not known)
        self.last_checkpoint: Path | None = None

    # -- claiming ---------------------------------------------------------------------------------

    def __enter__(self) -> RunDir:
        if self.is_main:
            try:
                self._claim()
            except BaseException:
                self.close()  # a refused claim must not keep the lock
                raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._tracker is not None:
            self._tracker.finish()
            self._tracker = None
        if self._lock_fd is not None:
            release_lock(self._lock_fd)
            self._lock_fd = None

    def ours(self, name: str) -> bool:
        """True for a top-level entry giftlab wrote here (and overwrite may remove): in the
        marker's inventory (or the caller's own record, `layout`); for a folder whose marker has
        no inventory (an older giftlab), any name of a run's layout."""
        if _TMP.match(name) or name in (LOCK, MARKER) or self.layout(name):
            return True
        inventory = self._inventory if self._inventory is not None else _read_inventory(self.path)
        if inventory is not None:
            return name in inventory
        return bool(
            name in _RUN_FILES
            or _CKPT.match(name)
            or _TMP.match(name)
            or name.startswith(_RUN_PREFIXES)
            or self.layout(name)
        )

    def preflight(self) -> None:
        """Every check of the claim that writes nothing: a refused run leaves no trace, so the
        corrected command just works. Raises RunDirError."""
        p = self.path
        if p.exists() and not p.is_dir():
            raise RunDirError(f"out_dir {p} is a file, not a folder: choose a folder path")
        parent = next((a for a in [p, *p.absolute().parents] if a.exists()), None)
        if parent is not None and not parent.is_dir():
            raise RunDirError(f"out_dir {p}: cannot write there ({parent} is a file, not a folder)")
        if parent is not None and not os.access(parent, os.W_OK | os.X_OK):
            raise RunDirError(f"out_dir {p}: {parent} is not writable; choose a writable folder")
        if not p.is_dir():
            return
        held = self._contents()
        mine = self._made_by_giftlab()
        foreign = sorted(n for n in held if not (mine and self.ours(n)))
        if foreign:
            raise RunDirError(
                f"out_dir {p} holds files giftlab did not write (e.g. {foreign[0]!r}); giftlab "
                "never writes among or deletes them: choose another out_dir"
            )
        if self.resume:
            self._check_resume()
            return
        if held and not self.overwrite and not self._nothing_to_lose(held):
            names = ", ".join(sorted(held)[:4]) + (", ..." if len(held) > 4 else "")
            raise RunDirError(
                f"out_dir {p} already holds a run ({names}): pass --resume to continue it, "
                "overwrite=true to replace it, or choose another out_dir"
            )

    def _made_by_giftlab(self) -> bool:
        """Whether giftlab made this folder, by its contents, not its path or its file names: the
        run marker written at every claim, or (a run copied without its dot-files, a folder
        seeded with a run's results) a config.json or results.json in giftlab's own form. A
        folder that is none of these is the user's: none of its entries is giftlab's to replace,
        whatever their names (mlruns/, config.json, data/, report.md)."""
        if (self.path / MARKER).exists():
            return True
        return any(_giftlab_record(self.path / n) for n in ("config.json", "results.json"))

    def _nothing_to_lose(self, held) -> bool:
        """A run refused or failed before its first step (config.json and an empty metrics file,
        no checkpoint, model folder or result): a corrected rerun replaces it without asking."""
        if set(held) - {"config.json", "metrics.jsonl", "tb", "mlruns", "data", "layout.json"}:
            return False  # data/, layout.json: the pipeline's problems and record, made again
        rows = read_metrics(self.path / "metrics.jsonl", log=lambda *a: None)
        return not any(r.get("step", 0) >= 1 for r in rows)

    def input_records(self) -> dict:
        """{key: {path, sha256}} of the run's data files, hashed once."""
        if self._input_records is None:
            self._input_records = {}
            for key, path in self.inputs.items():
                try:
                    digest = sha256_file(path)
                except OSError as err:
                    raise RunDirError(f"{key}={path}: cannot be read ({err.strerror})") from None
                self._input_records[key] = {"path": path, "sha256": digest}
        return self._input_records

    def _saved_record(self) -> dict | None:
        return saved_run_record(self.path, self.log)[0]

    def _check_resume(self) -> None:
        """--resume: the settings match the run's (but for the mutable keys), the data files'
        contents are the run's, and steps remain."""
        record = self._saved_record() if self.config is not None else None
        if record is not None:
            saved = record.get("config", {}) if isinstance(record.get("config"), dict) else {}
            for key, now in self.input_records().items():
                then = (record.get("inputs") or {}).get(key)
                if then and then.get("sha256") != now["sha256"]:
                    raise RunDirError(
                        f"--resume: {key}={now['path']} is not the file the run started with (its "
                        f"content changed: SHA-256 {then['sha256'][:12]} then, "
                        f"{now['sha256'][:12]} now); resume with the run's own data, or start a "
                        "new out_dir"
                    )
            changed = {
                k: (saved[k], v)
                for k, v in self.config.items()
                if k in saved and saved[k] != v and k != "overwrite"
            }
            # out_dir: a run is its folder's contents, not its path; moved, copied or spelt
            # ./runs/r, it resumes (the change is kept in the history)
            fixed = {k: ov for k, ov in changed.items() if k not in self.mutable | {"out_dir"}}
            if fixed:
                what = "; ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in fixed.items())
                raise RunDirError(
                    f"--resume: the run in {self.path} was started with other settings ({what}); "
                    f"only {sorted(self.mutable)} may change on resume: resume with the run's "
                    "values, or start a new out_dir"
                )
            if changed:
                self.history = [{"changed": {k: [o, n] for k, (o, n) in changed.items()}}]
        if self.max_steps is not None and self.checkpoints():
            step = self.checkpoints()[-1][0]
            # killed while writing final/ (after its last checkpoint): resuming writes it
            final_missing = (
                step == self.max_steps
                and (self.config or {}).get("save_final", True)
                and not (self.path / "final").exists()
            )
            if step >= self.max_steps and not final_missing:
                state = "is finished" if step == self.max_steps else "is past it"
                raise RunDirError(
                    f"--resume: the run in {self.path} reached step {step} (its newest "
                    f"checkpoint), so max_steps={self.max_steps} {state}: nothing to train. "
                    f"To train on, resume with max_steps > {step}"
                )

    def _claim(self) -> None:
        p = self.path
        self.preflight()
        try:
            p.mkdir(parents=True, exist_ok=True)
            self._lock()
        except OSError as err:
            raise RunDirError(
                f"out_dir {p}: cannot write there ({err.strerror or err}); choose a writable folder"
            ) from None
        self.preflight()  # again under the lock: another process may have written meanwhile
        held = self._contents()
        if held and not self.resume:
            for name in held:
                _remove(p / name)
            if self.overwrite and not self._nothing_to_lose(held):
                self.log(f"overwrite=true: removed the previous run in {p}")
        # resumed: what is there was found giftlab's above (an older marker's by its names)
        self._inventory = set(self._contents()) if self.resume else set()
        try:
            self._write_marker()
        except (OSError, InputError) as err:
            raise RunDirError(f"out_dir {p}: cannot write there ({err})") from None
        self._clean_temporaries()

    def _write_marker(self) -> None:
        text = json.dumps({"giftlab": "run folder", "wrote": sorted(self._inventory or ())})
        _write_atomic(self.path / MARKER, text + "\n")

    def wrote(self, *names: str) -> None:
        """Add top-level entries to the marker's inventory (before they are written, so a crash
        mid-write leaves them giftlab's)."""
        if not self.is_main or self._inventory is None:
            return
        new = set(names) - self._inventory
        if new:
            self._inventory |= new
            self._write_marker()

    def _lock(self) -> None:
        try:
            self._lock_fd = acquire_lock(self.path / LOCK, f"out_dir {self.path}")
        except InputError as err:
            raise RunDirError(str(err)) from None

    def _contents(self) -> list[str]:
        return [n for n in os.listdir(self.path) if n not in (LOCK, MARKER)]

    def _clean_temporaries(self) -> None:
        for name in os.listdir(self.path):
            if _TMP.match(name):
                _remove(self.path / name)
                self.log(f"removed {self.path / name} (left by an interrupted write)")

    # -- config and metrics -----------------------------------------------------------------------

    def write_config(self, info: dict) -> None:
        """config.json: what runs now. On resume it keeps the run's history, one entry per
        resume with the step it resumed at and each setting changed (old, new)."""
        if not self.is_main:
            return
        path = self.path / "config.json"
        if self.resume and path.exists():
            try:
                old = json.loads(path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError):
                old = {}
            entry = {"resumed_at": info.get("resumed_at")}
            entry |= self.history[0] if self.history else {"changed": {}}
            info = info | {"history": [*old.get("history", []), entry]}
        if self.inputs:
            info = info | {"inputs": self.input_records()}
        self.wrote("config.json")
        # sealed: an edit is seen on resume (giftlab.integrity)
        _write_atomic(path, json.dumps(seal(json.loads(json.dumps(info, default=str))), indent=2))

    def start_metrics(self, resume_step: int | None) -> None:
        """Fresh run: an empty metrics.jsonl. Resume: keep the lines up to `resume_step`."""
        if not self.is_main:
            return
        path = self.path / "metrics.jsonl"
        self.wrote("metrics.jsonl")
        if resume_step is None:
            if self.resume and path.exists() and path.stat().st_size:
                kept = _free_name(self.path / "metrics-abandoned.jsonl")
                self.wrote(kept.name)
                os.replace(path, kept)  # a run killed before its first checkpoint: keep its lines
                self.log(f"--resume: no checkpoint to resume from; kept the old metrics as {kept}")
            _write_atomic(path, "")
            return
        rows = read_metrics(path, log=self.log)
        keep = [r for r in rows if r.get("step", 0) <= resume_step]
        _write_atomic(path, "".join(json.dumps(r) + "\n" for r in keep))

    def track(self, report_to: str, config: dict | None = None) -> None:
        """Mirror every logged row to a tracker through Accelerate's trackers: 'none',
        'tensorboard' (event files in out_dir/tb), 'wandb' or 'mlflow' (out_dir/mlruns)."""
        if report_to == "none" or not self.is_main:
            return

        if not tracker_ready(report_to):
            raise RunDirError(
                f"report_to={report_to} needs the {TRACKERS.get(report_to)} package: pip install "
                f"{TRACKERS.get(report_to)} (tensorboard comes with giftlab[tracking])"
            )
        before = set(os.listdir(self.path))
        tracker = TRACKER_FACTORIES[report_to](self.path, self.path.name)
        tracker.start()
        # its folder (tb/, mlruns/), made now or at its first log, and whatever it made now
        made = set(os.listdir(self.path)) - before
        self.wrote(*made, *_TRACKER_FOLDERS.get(report_to, ()))
        if config:
            scalars = {k: v for k, v in config.items() if isinstance(v, (int, float, str, bool))}
            tracker.store_init_configuration(scalars)
        self._tracker = tracker

    def log_metrics(self, row: dict) -> None:
        if not self.is_main:
            return
        path = self.path / "metrics.jsonl"
        with writing(path, f"last good checkpoint: {self.last_checkpoint or 'none'}"):
            with path.open("a") as f:
                f.write(json.dumps(row) + "\n")
                f.flush()
        if self._tracker is not None:
            values = {k: v for k, v in row.items() if k != "step" and isinstance(v, (int, float))}
            self._tracker.log(values, step=row["step"])

    # -- checkpoints ------------------------------------------------------------------------------

    def checkpoints(self) -> list[tuple[int, Path]]:
        """This run's checkpoint folders, (step, path), oldest first by step number."""
        return _checkpoint_folders(self.path)

    def save_checkpoint(
        self, step: int, model, tokenizer, state: dict, keep: int, weights=None
    ) -> Path | None:
        """Write ckpt-<step>/ (weights via save_pretrained, `state` to trainer_state.pt), point
        `latest` at it and delete all but the newest `keep` by step number.

        weights: a full state dict to save (FSDP gathers one); None: the model's own.
        """
        if not all_finite(model.parameters()):
            raise NonFiniteError(
                f"step {step}: the weights are NaN or infinite, so no checkpoint was written. "
                f"Last good checkpoint: {self.last_checkpoint or 'none'} (lower lr and --resume)"
            )
        if not self.is_main:
            return None
        final = self.path / f"ckpt-{step:06d}"
        self.wrote(final.name, "latest")
        tmp = Path(tempfile.mkdtemp(prefix=final.name + ".tmp", dir=self.path))
        try:
            save_model_files(tmp, model, tokenizer, weights, self.save_dtype)
            with open(tmp / STATE, "wb") as f:
                torch.save(state, f)
                f.flush()
                os.fsync(f.fileno())
            record = {"step": step, "config": self.config, "inputs": self.input_records()}
            write_folder_manifest(tmp, record)  # last: each file's size and SHA-256
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            _write_atomic(self.path / "latest", final.name + "\n")
        except Exception as err:  # the writers raise several kinds for a full disk
            why = _write_failure(final, err, self.last_checkpoint)
            if why is None:
                raise
            raise RunDirError(why) from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        for _, old in self.checkpoints()[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
        self.last_checkpoint = final
        return final

    def save_model(
        self, name: str, model, tokenizer, weights=None, merge_lora=False, card: str | None = None
    ) -> None:
        """Write a loadable model folder `name` (best, final) atomically; `card`: its README.md
        (giftlab.models.card)."""
        if not all_finite(model.parameters()):
            raise NonFiniteError(
                f"the weights are NaN or infinite: {name}/ was not written. "
                f"Last good checkpoint: {self.last_checkpoint or 'none'}"
            )
        if not self.is_main:
            return
        target = self.path / name
        self.wrote(name)
        tmp = Path(tempfile.mkdtemp(prefix=name + ".tmp", dir=self.path))
        try:
            if merge_lora:  # a merged copy loads like any checkpoint; training keeps its adapters
                import copy

                merged = copy.deepcopy(model).merge_and_unload()
                save_model_files(tmp, merged, tokenizer, None, self.save_dtype)
            else:
                save_model_files(tmp, model, tokenizer, weights, self.save_dtype)
            if card is not None:
                (tmp / "README.md").write_text(card)
            write_folder_manifest(tmp)  # no settings: a model folder is shared (no local paths)
            if target.exists():
                shutil.rmtree(target)
            os.replace(tmp, target)
        except Exception as err:  # the writers raise several kinds for a full disk
            why = _write_failure(target, err, self.last_checkpoint)
            if why is None:
                raise
            raise RunDirError(why) from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def check_weights(self, params, step: int, lr: float, world: int = 1) -> None:
        """After an optimiser step: stop with NonFiniteError, naming the last good checkpoint, if
        any weight is NaN or infinite (every process takes part when world > 1)."""
        local = [p.to_local() if hasattr(p, "to_local") else p for p in params]  # FSDP shards
        device = local[0].device if local else "cpu"  # NCCL reduces CUDA tensors only
        ok = torch.tensor(float(all_finite(local)), device=device)
        if world > 1:
            import torch.distributed as dist

            dist.all_reduce(ok, op=dist.ReduceOp.MIN)
        if not bool(ok):
            raise NonFiniteError(
                f"step {step}: the optimiser step made the weights NaN or infinite (lr={lr:g}); "
                f"nothing was saved from it. Last good checkpoint: {self.last_checkpoint or 'none yet'}"
            )

    def load_resume_checkpoint(self) -> tuple[Path, dict, dict] | None:
        """(path, weights, trainer state) of the newest checkpoint that loads, or None if the
        folder has none. Says so when it passes over a broken `latest` or a broken checkpoint."""
        found = self.checkpoints()
        pointer = self.path / "latest"
        named = pointer.read_text().strip() if pointer.exists() else None
        if named and not any(p.name == named for _, p in found):
            self.log(f"--resume: {pointer} names {named}, which is missing")
        for step, path in reversed(found):
            try:
                weights, state = read_checkpoint(path)
            except (OSError, RuntimeError, ValueError, KeyError) as err:
                self.log(
                    f"--resume: {path} does not load ({_first_line(err)}); trying an older one"
                )
                continue
            if named and path.name != named:
                self.log(f"--resume: using {path.name} (step {step}), the newest valid checkpoint")
            self.last_checkpoint = path
            return path, weights, state
        if found:
            raise RunDirError(
                f"--resume: none of the checkpoints in {self.path} loads "
                f"({', '.join(p.name for _, p in found)}); start again with overwrite=true"
            )
        return None


def saved_run_record(path, log=print) -> tuple[dict | None, Path | None]:
    """(record, its file) of what a run recorded of itself: config.json (its seal checked), or,
    when config.json is gone, the newest checkpoint's record standing in (said through `log`);
    (None, None) for a run with neither (nothing trained yet). RunDirError when config.json is
    damaged or edited, or a checkpoint exists but no record says which settings trained it."""
    path = Path(path)
    saved_path = path / "config.json"
    if saved_path.exists():
        try:
            record = json.loads(saved_path.read_text())
            if not isinstance(record, dict):
                raise ValueError("not an object")
        except (ValueError, UnicodeDecodeError):
            raise RunDirError(
                f"--resume: {saved_path} is damaged; cannot tell which settings the run used"
            ) from None
        try:
            check_sealed(saved_path, record)
        except IntegrityError as err:
            raise RunDirError(
                f"--resume: {err}: cannot tell which settings the run used; resume with the "
                "file as giftlab wrote it, or start a new out_dir"
            ) from None
        return record, saved_path
    found = _checkpoint_folders(path)
    for step, ckpt in reversed(found):
        stand_in = _checkpoint_settings(ckpt)
        if stand_in is not None:
            log(
                f"--resume: {saved_path} is missing; the settings recorded in {ckpt.name} "
                f"(step {step}) stand in for it"
            )
            return stand_in, ckpt / FOLDER_MANIFEST
    if found:
        raise RunDirError(
            f"--resume: {saved_path} is missing and no checkpoint of the run records its "
            "settings: cannot tell which settings trained it; start a new out_dir"
        )
    return None, None


def _checkpoint_folders(path: Path) -> list[tuple[int, Path]]:
    """A run folder's checkpoint folders, (step, path), oldest first by step number."""
    found = []
    for name in os.listdir(path) if path.is_dir() else []:
        m = _CKPT.match(name)
        if m and (path / name).is_dir():
            found.append((int(m.group(1)), path / name))
    return sorted(found)


def check_resume_config(saved: dict, current: dict, keys, where) -> None:
    """Refuse to resume with a changed model or batch geometry: one message naming the key."""
    for key in keys:
        if key in saved and saved[key] != current.get(key):
            raise RunDirError(
                f"--resume: {key} is {current.get(key)!r} but the run in {where} was started with "
                f"{saved[key]!r}; resume with the same value, or start a new out_dir"
            )


# -- files ----------------------------------------------------------------------------------------

_RUN_FILES = {
    "config.json",
    "metrics.jsonl",
    "latest",
    "best",
    "final",
    "tb",
    "mlruns",
    LOCK,
    MARKER,
}
_RUN_PREFIXES = ("metrics-abandoned",)
_TRACKER_FOLDERS = {"tensorboard": ("tb",), "mlflow": ("mlruns",)}  # in the run folder


def _read_inventory(path: Path) -> set[str] | None:
    """The names a run folder's marker says giftlab wrote (None: no marker, or one of an older
    giftlab without an inventory)."""
    try:
        data = json.loads((path / MARKER).read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    wrote = data.get("wrote") if isinstance(data, dict) else None
    return set(wrote) if isinstance(wrote, list) else None


def _giftlab_record(path: Path) -> bool:
    """A JSON file giftlab wrote: {"config": {...}, "provenance": {"code_version": ...}, ...}."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return (
        isinstance(data, dict)
        and isinstance(data.get("config"), dict)
        and isinstance(data.get("provenance"), dict)
        and "code_version" in data["provenance"]
    )


def cast_weights(model, weights, dtype: str | None):
    """`weights` (or the model's own state dict) with floating tensors in `dtype` ("bfloat16");
    tensors shared in the model (tied embeddings) stay shared. None or "float32": unchanged."""
    if dtype in (None, "float32"):
        return weights
    to = {"bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    source = weights if weights is not None else model.state_dict()
    done: dict = {}
    out = {}
    for k, v in source.items():
        if not v.is_floating_point():
            out[k] = v
            continue
        key = (v.data_ptr(), tuple(v.shape))
        if key not in done:
            done[key] = v.detach().to(to)
        out[k] = done[key]
    return out


def save_model_files(folder: Path, model, tokenizer, weights=None, dtype=None) -> None:
    """save_pretrained weights (safetensors; floating tensors in `dtype` when given, e.g.
    "bfloat16") and the tokenizer into `folder`."""
    weights = cast_weights(model, weights, dtype)
    if weights is None:
        model.save_pretrained(folder)
    else:
        model.save_pretrained(folder, state_dict=weights)
    if tokenizer is not None:
        side = getattr(tokenizer, "padding_side", None)
        tokenizer.padding_side = "right"  # loaders expect training-side padding
        tokenizer.save_pretrained(folder)
        if side is not None:
            tokenizer.padding_side = side


def read_checkpoint(path: Path) -> tuple[dict, dict]:
    """(weights by name, trainer state) of a checkpoint folder; both read without pickle code."""
    from safetensors.torch import load_file

    path = Path(path)
    check_folder(path)  # IntegrityError (a ValueError) naming a changed or cut file
    state_file = path / STATE
    if not state_file.exists():
        raise FileNotFoundError(f"{state_file} is missing")
    files = sorted(path.glob("model*.safetensors")) or sorted(
        path.glob("adapter_model.safetensors")
    )
    if not files:
        raise FileNotFoundError(f"{path} holds no model*.safetensors or adapter_model.safetensors")
    weights = {}
    for f in files:
        weights |= load_file(f)
    try:
        state = torch.load(state_file, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several kinds for a damaged pickle
        raise ValueError(f"{state_file} is damaged ({_first_line(err)})") from None
    return weights, state


def _checkpoint_settings(ckpt: Path) -> dict | None:
    """{"config", "inputs"} that a checkpoint recorded of its run (its giftlab-files.json; a
    checkpoint of an older giftlab: the config in its trainer_state.pt), or None."""
    try:
        record = read_folder_manifest(ckpt)
    except IntegrityError:
        return None
    if record is not None and isinstance(record.get("config"), dict):
        return {"config": record["config"], "inputs": record.get("inputs") or {}}
    try:
        state = torch.load(ckpt / STATE, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # torch raises several kinds for a damaged pickle
        return None
    config = state.get("config") if isinstance(state, dict) else None
    return {"config": config} if isinstance(config, dict) else None


def load_weights(model, weights: dict, lora: bool) -> None:
    """Put checkpoint weights into `model`; tied parameters saved once are filled by the tie."""
    if lora:
        from peft import set_peft_model_state_dict

        result = set_peft_model_state_dict(model, weights)
        if getattr(result, "unexpected_keys", None):
            raise RunDirError(f"checkpoint adapter has unknown keys {result.unexpected_keys[:3]}")
        return
    own = model.state_dict()
    unexpected = sorted(set(weights) - set(own))
    if unexpected:
        raise RunDirError(
            f"checkpoint weights do not fit the model: unexpected keys {unexpected[:3]} "
            "(was the run started with another model?)"
        )
    model.load_state_dict(weights, strict=False)
    loaded = {own[k].data_ptr() for k in weights}
    missing = [k for k in own if k not in weights and own[k].data_ptr() not in loaded]
    if missing:
        raise RunDirError(f"checkpoint weights miss keys {missing[:3]}")


def read_metrics(path: Path, log=print) -> list[dict]:
    """Rows of a metrics.jsonl. A torn last line (a run killed mid-write) is reported and dropped;
    a malformed line elsewhere is an error naming file:line."""
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8", errors="replace").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    rows = []
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines):
                log(f"{path}:{i}: dropped a torn last line (the run was stopped mid-write)")
                break
            raise RunDirError(f"{path}:{i}: malformed metrics line; fix or delete it") from None
        rows.append(row)
    return rows


def _write_atomic(path: Path, text: str) -> None:
    """`text` into `path` through a temporary file renamed into place; a failed write is a
    WriteError naming `path` (the old file is kept)."""
    with writing(path, "the previous version of the file is kept"):
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _write_failure(target: Path, err: BaseException, last) -> str | None:
    """The message of a failed write of `target` (None: `err` is not one; see write_failure)."""
    why = write_failure(target, err)
    if why is None:
        return None
    return (
        f"writing {target} failed: {why}; nothing half-written was kept. "
        f"Last good checkpoint: {last or 'none'}"
    )


def _free_name(path: Path) -> Path:
    """`path`, or path with -1, -2, ... before its suffix: the first name not taken."""
    i, candidate = 0, path
    while candidate.exists():
        i += 1
        candidate = path.with_name(f"{path.stem}-{i}{path.suffix}")
    return candidate


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _first_line(err) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__
