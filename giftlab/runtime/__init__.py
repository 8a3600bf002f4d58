"""The plumbing every loop shares (train, rl, pipeline): the run folder, the data order, seeding
and RNG state, finiteness guards, progress bars. Loops import from here, never from each other."""

from giftlab.runtime.order import DataOrder
from giftlab.runtime.progress import progress_bar
from giftlab.runtime.rundir import (
    RunDir,
    all_finite,
    check_resume_config,
    load_weights,
    read_checkpoint,
    read_metrics,
    save_model_files,
)
from giftlab.runtime.seeding import rng_state, seed_all, set_rng_state

__all__ = [
    "DataOrder",
    "RunDir",
    "all_finite",
    "check_resume_config",
    "load_weights",
    "progress_bar",
    "read_checkpoint",
    "read_metrics",
    "rng_state",
    "save_model_files",
    "seed_all",
    "set_rng_state",
]
