"""`giftlab push RUN_DIR REPO_ID`: a trained model folder to the Hugging Face hub, checked first.

What goes up is RUN_DIR/final for a giftlab run folder (train, rl), or RUN_DIR itself when it is
a model folder (a GIFTTrainer output, a pipeline cell's final/). Before anything is sent: the folder
must load (config.json and weights), carry its model card (README.md) and hold no path of this
machine in its text files (cards, configs): a card that says `/home/me/...` means nothing on the
hub. `--dry-run` does every check and prints what would be uploaded, offline.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from giftlab.errors import InputError

TEXT = (".json", ".md", ".txt", ".jinja", ".yaml", ".yml")
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")


def model_folder(run_dir) -> Path:
    """The folder to upload: RUN_DIR/final for a run folder, else RUN_DIR (a model folder)."""
    path = Path(run_dir)
    if not path.is_dir():
        raise InputError(f"RUN_DIR {run_dir}: no such folder")
    if (path / ".giftlab-run").exists():
        if not (path / "final" / "config.json").exists():
            raise InputError(
                f"{run_dir} is a giftlab run with no final/ yet (save_final=false, or the run "
                "has not finished): finish it, or push one of its model folders"
            )
        return path / "final"
    return path


def local_paths(folder: Path) -> list[tuple[str, str]]:
    """(file, path) for every path of this machine found in the folder's text files: the folder's
    own absolute location and its parents below /, the home folder, the current folder."""
    here = {str(Path.home()), str(Path.cwd()), str(folder.resolve().parent)}
    here |= {str(p) for p in folder.resolve().parents if len(p.parts) > 2}
    found = []
    for f in sorted(folder.rglob("*")):
        if f.is_file() and f.suffix in TEXT and f.stat().st_size < 5_000_000:
            text = f.read_text(errors="replace")
            for p in sorted(here, key=len, reverse=True):
                if p not in ("/", "") and p in text:
                    found.append((str(f.relative_to(folder)), p))
                    break
    return found


def push_plan(run_dir) -> tuple[Path, list[tuple[str, int]]]:
    """(the folder, [(file, bytes)]) after every check; InputError naming what is wrong."""
    folder = model_folder(run_dir)
    if not (folder / "config.json").exists() and not (folder / "adapter_config.json").exists():
        raise InputError(f"{folder}: no config.json (nor adapter_config.json): not a model folder")
    weights = [*folder.glob("*.safetensors"), *folder.glob("*.bin")]
    if not weights:
        raise InputError(f"{folder}: no weights (*.safetensors or *.bin)")
    if not (folder / "README.md").exists():
        raise InputError(
            f"{folder}: no model card (README.md); giftlab train, rl and GIFTTrainer.save_model "
            "write one"
        )
    leaks = local_paths(folder)
    if leaks:
        shown = "; ".join(f"{f} holds {p}" for f, p in leaks[:3])
        raise InputError(f"{folder}: local paths would be published ({shown}); remove them first")
    files = [
        (str(f.relative_to(folder)), f.stat().st_size)
        for f in sorted(folder.rglob("*"))
        if f.is_file() and not f.name.startswith(".")
    ]
    return folder, files


def push(run_dir, repo_id: str, dry_run: bool = False, private: bool = False, log=print) -> int:
    """Check, then upload (or, dry_run, print the plan); 0 on success."""
    if not REPO_ID.match(repo_id or ""):
        raise InputError(f"REPO_ID {repo_id!r}: give the hub repository as owner/name")
    folder, files = push_plan(run_dir)
    total = sum(n for _, n in files)
    log(f"{folder} -> https://huggingface.co/{repo_id} ({len(files)} files, {total / 1e6:.1f} MB)")
    for name, n in files:
        log(f"  {name:40s} {n / 1e6:10.2f} MB")
    if dry_run:
        log("dry run: every check passed, nothing was uploaded")
        return 0
    if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0"):
        raise InputError("HF_HUB_OFFLINE is set: the hub cannot be reached (use --dry-run)")
    from huggingface_hub import HfApi

    api = HfApi()
    try:
        api.create_repo(repo_id, exist_ok=True, private=private)
        api.upload_folder(folder_path=str(folder), repo_id=repo_id, commit_message="giftlab push")
    except Exception as err:  # noqa: BLE001 - the hub's many failures, named in one line
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(f"push to {repo_id} failed: {first}") from None
    log(f"pushed to https://huggingface.co/{repo_id}")
    return 0
