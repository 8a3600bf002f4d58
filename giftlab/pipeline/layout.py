"""What a pipeline folder holds of its own: the record (layout.json) of the folders the
pipeline made, and each cell's folder name."""

from __future__ import annotations

import json
from pathlib import Path

from giftlab.errors import RunDirError
from giftlab.flatconfig import (
    ConfigError,
)
from giftlab.pipeline.config import init_display

LAYOUT = "layout.json"  # the record of the folders a pipeline made in its out_dir
FIXED_LAYOUT = (
    "data",
    "results.json",
    "results.json.tmp",
    "report.md",
    "pipeline.png",
    LAYOUT,
    LAYOUT + ".tmp",
)


def cell_name(spec: str, seed: int) -> str:
    """The folder of one start x training seed ('gift:5@k16', 0 -> 'gift-5-k16-seed0')."""
    return f"{spec.replace(':', '-').replace('@', '-')}-seed{seed}"


class PipelineLayout:
    """The top-level names of a pipeline folder that are the pipeline's own (what --resume keeps
    and overwrite=true may remove): its fixed files, and each cell and cache folder, recorded in
    layout.json before the folder is made. A folder written before the record existed: the cells
    and caches its own config.json names. Nothing is recognised by the look of its name."""

    def __init__(self, out):
        self.out = Path(out)
        self._derived = None  # the names config.json gave before the run rewrote it

    def names(self) -> set[str]:
        record = self.out / LAYOUT
        if record.exists():
            try:
                return set(FIXED_LAYOUT) | set(json.loads(record.read_text())["made"])
            except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
                raise RunDirError(
                    f"{record} is damaged: cannot tell which folders the pipeline made; "
                    "restore it, or move the folders you want to keep and start a new out_dir"
                ) from None
        if self._derived is None:
            self._derived = self._from_config()
        return set(FIXED_LAYOUT) | self._derived

    def _from_config(self) -> set[str]:
        try:
            saved = json.loads((self.out / "config.json").read_text())["config"]
            inits, seeds = list(saved["inits"]), list(saved["seeds"])
        except (OSError, json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
            return set()
        made = set()
        for spec in inits:
            try:
                shown = init_display(spec)
            except ConfigError:  # an objective not registered in this process: its name as given
                shown = spec
            made |= {cell_name(shown, seed) for seed in seeds}
            _, _, k = shown.partition("@k")
            if k.isdigit():
                made.add(f"ref-cache-k{k}")
        return made

    def __call__(self, name: str) -> bool:
        return name in self.names()

    def record(self, name: str | None = None) -> Path:
        """Add `name` to the record (before the folder is made; None: write the record as it
        stands); returns the folder."""
        made = sorted((self.names() - set(FIXED_LAYOUT)) | ({name} if name else set()))
        tmp = self.out / (LAYOUT + ".tmp")
        tmp.write_text(json.dumps({"made": made}, indent=1))
        tmp.replace(self.out / LAYOUT)
        return self.out / (name or "")
