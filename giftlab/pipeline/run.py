"""`giftlab pipeline`: base -> {SFT, GIFT at several beta, ...} -> the same GRPO budget -> eval,
over seeds, into one report folder (table with spread over seeds, pass@k curves before and after
RL, RL reward curves per initialisation, entropy and KL to base through both stages)."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path

from giftlab.data import read_records
from giftlab.data.tasks import write_task_data
from giftlab.data.tokenize import encode_records
from giftlab.engine.cache import is_complete
from giftlab.errors import InputError, writing
from giftlab.integrity import seal
from giftlab.models import check_model_name, load_model, load_tokenizer
from giftlab.pipeline.config import (
    PIPELINE_RESUME_MUTABLE,
    PipelineConfig,
    _init_args,
    init_display,
)
from giftlab.pipeline.layout import PipelineLayout, cell_name
from giftlab.pipeline.report import _report, reward_curve, updated_steps
from giftlab.provenance import provenance
from giftlab.refcache import RefCacheConfig, build_ref_cache
from giftlab.results import flat_row, load_results
from giftlab.rl.evaluate import evaluate_model
from giftlab.rl.loop import RLConfig, load_task_records, rl
from giftlab.runtime import RunDir
from giftlab.runtime.distributed import default_device
from giftlab.train import TrainConfig, train


def run_pipeline(cfg: PipelineConfig, log=print, resume: bool = False) -> Path:
    """Run the comparison into cfg.out_dir (a fresh folder, overwrite=true, or resume=True: keep
    every finished init x seed cell, resume a half-done one from its checkpoints, and run the
    seeds or inits added to the config); returns report.md."""

    check_model_name(cfg.model, "model", cfg.attn_implementation)  # before the folder is touched
    if resume:
        cfg = _appended(cfg, log)
    layout = PipelineLayout(cfg.out_dir)
    with RunDir(
        cfg.out_dir,
        resume=resume,
        overwrite=cfg.overwrite,
        log=log,
        config=cfg.to_dict(),
        mutable=PIPELINE_RESUME_MUTABLE,
        layout=layout,
    ) as run:
        started = provenance()  # the code that runs: results.json names it, not a later commit
        layout.record()  # before config.json changes: a folder of an earlier version keeps its cells
        run.write_config({"config": cfg.to_dict(), "provenance": started})
        return _run(cfg, run.path, log, started, resume, layout)


def _appended(cfg: PipelineConfig, log) -> PipelineConfig:
    """On resume, seeds and starts are appended, never dropped: the run's own (its config.json)
    come first, then the ones this call adds. A call that names fewer keeps the run's and says so
    (before: `seeds=0 --resume` on a run of 0, 1, 2 rewrote the config to [0] and the report
    called the run stopped)."""
    path = Path(cfg.out_dir) / "config.json"
    try:
        saved = json.loads(path.read_text())["config"]
        old_seeds, old_inits = list(saved["seeds"]), list(saved["inits"])
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError):
        return cfg  # no run yet, or RunDir names the damaged file
    shown = {init_display(x) for x in old_inits}
    seeds = old_seeds + [s for s in cfg.seeds if s not in old_seeds]
    inits = old_inits + [x for x in cfg.inits if init_display(x) not in shown]
    if seeds == list(cfg.seeds) and inits == list(cfg.inits):
        return cfg
    kept = []
    if seeds != list(cfg.seeds):
        kept.append(f"seeds {seeds}")
    if inits != list(cfg.inits):
        kept.append(f"inits {inits}")
    log(f"--resume keeps the run's {' and '.join(kept)} (a resume appends, it never drops)")
    return PipelineConfig(**(cfg.to_dict() | {"seeds": seeds, "inits": inits}))


def _check_lengths(cfg, path, tokenizer) -> None:
    """Every training example fits max_length (checked before any fine-tuning)."""

    records = read_records(path)
    _, stats = encode_records(records, tokenizer, cfg.max_length, "skip")
    if stats.skipped_overlong:
        raise InputError(
            f"max_length={cfg.max_length}: {stats.skipped_overlong} of {len(records)} training "
            f"examples of {path} are longer; raise max_length"
        )


class _Run:
    """One pipeline run's state: the data, the base model, the results so far (results.json is
    rewritten after every evaluation, so a crash loses no result)."""

    def __init__(self, cfg: PipelineConfig, out: Path, log, started: dict, resume: bool, layout):

        self.cfg, self.out, self.log, self.started = cfg, out, log, started
        self.layout = layout if layout is not None else PipelineLayout(out)
        self.t_start = time.perf_counter()
        self.paths = write_task_data(
            cfg.task, out / "data", cfg.n_train, cfg.n_val, seed=0, prompt_style=cfg.prompt_style
        )
        _check_lengths(cfg, self.paths["train"], load_tokenizer(cfg.model))
        self.val = load_task_records(self.paths["val"])
        self.val_demos = read_records(self.paths["val"])
        self.base = load_model(cfg.model, attn_implementation=cfg.attn_implementation)
        self.base.to(default_device())
        self.results, self.earlier = [], 0.0
        if resume and (out / "results.json").exists():  # a stopped or finished run: keep it
            data = load_results(out / "results.json")
            self.results, self.earlier = list(data["results"]), float(data.get("minutes", 0.0))
            log(f"--resume: kept {len(self.results)} evaluations from {out / 'results.json'}")

    def minutes(self) -> float:
        return self.earlier + (time.perf_counter() - self.t_start) / 60

    def done(self, init, seed, stage) -> bool:
        return any((r["init"], r["seed"], r["stage"]) == (init, seed, stage) for r in self.results)

    def keep(self, row: dict) -> None:
        row["minutes"] = self.minutes()  # cumulative: a cell's cost is the gap to the row before
        self.results.append(row)
        _write_results(self.out, self.cfg, self.results, self.started, self.minutes())

    def evaluate(self, model_or_path, seed: int) -> dict:
        """giftlab.rl.evaluate.evaluate_model on the held-out problems (drift too, but for the
        base)."""

        cfg = self.cfg
        model = model_or_path
        if isinstance(model_or_path, (str, Path)):
            model = load_model(model_or_path, attn_implementation=cfg.attn_implementation)
            model.to(default_device())
        return evaluate_model(
            model,
            self.base,
            load_tokenizer(cfg.model),
            self.val,
            samples=cfg.eval_samples,
            max_new_tokens=cfg.max_new_tokens,
            temperature=cfg.eval_temperature,
            seed=seed,
            stats_samples=cfg.eval_stats_samples,
            demos=self.val_demos,
            sampler=cfg.eval_sampler,
            prompts_per_batch=cfg.eval_batch,
            bf16=cfg.bf16,
        )

    def fine_tune(self, spec: str, seed: int, folder: Path) -> Path:
        """Fine-tune (or resume) one init; returns the model folder passed on (select)."""

        cfg = self.cfg
        objective, extra = _init_args(spec)
        k = extra.pop("ref_cache_k", None)
        if k is not None:
            extra["ref_cache"] = str(self.ref_cache(k))
        tcfg = TrainConfig(
            model=cfg.model,
            train_file=str(self.paths["train"]),
            val_file=str(self.paths["val"]),
            out_dir=str(folder / "sft"),
            objective=objective,
            max_steps=cfg.sft_steps,
            batch_size=cfg.sft_batch,
            lr=cfg.sft_lr,
            seed=seed,
            eval_every=cfg.select_every if cfg.select == "best" else 0,
            max_val_examples=cfg.select_examples,
            save_every=cfg.select_every,  # a stopped pipeline resumes from here
            keep_checkpoints=1,
            diag_every=5,
            max_length=cfg.max_length,
            bf16=cfg.bf16,
            attn_implementation=cfg.attn_implementation,
            progress=False,
            **extra,
        )
        if not (folder / "sft" / "final").exists():
            self.log(f"[{spec} seed {seed}] fine-tuning ({cfg.sft_steps} steps)")
            train(tcfg, resume=(folder / "sft" / "config.json").exists())
        start = folder / "sft" / cfg.select
        return start if start.exists() else folder / "sft" / "final"  # none beat the base: final

    def ref_cache(self, k: int) -> Path:
        """The base model's reference cache of the top k tokens over the training and selection
        examples (built once, resumed if stopped)."""

        cfg = self.cfg
        folder = self.layout.record(f"ref-cache-k{k}")
        if not is_complete(folder):
            self.log(f"building the reference cache, top {k}")
            build_ref_cache(
                RefCacheConfig(
                    model=cfg.model,
                    train_file=str(self.paths["train"]),
                    val_file=str(self.paths["val"]),
                    max_val_examples=cfg.select_examples,
                    max_length=cfg.max_length,
                    top_k=k,
                    out_dir=str(folder),
                    attn_implementation=cfg.attn_implementation,
                    progress=False,
                    # the pipeline's own folder (its layout record): a cache of an older
                    # version or other settings is replaced; a file of the user's is still refused
                    overwrite=True,
                ),
                log=self.log,
            )
        return folder

    def grpo(self, start: Path, seed: int, folder: Path) -> Path:
        """GRPO (or resume) from `start`; returns its final model folder."""

        cfg = self.cfg
        rcfg = RLConfig(
            model=str(start),
            ref_model=cfg.model,
            train_file=str(self.paths["train"]),
            out_dir=str(folder / "rl"),
            prompts_per_step=cfg.rl_prompts,
            group_size=cfg.group_size,
            max_new_tokens=cfg.max_new_tokens,
            lr=cfg.rl_lr,
            max_steps=cfg.rl_steps,
            seed=seed,
            save_every=max(1, cfg.rl_steps // 4),
            bf16=cfg.bf16,
            attn_implementation=cfg.attn_implementation,
            progress=False,
        )
        if not (folder / "rl" / "final").exists():
            rl(rcfg, resume=(folder / "rl" / "config.json").exists())
        return folder / "rl" / "final"

    def cell(self, spec: str, seed: int) -> None:
        """One init x seed: fine-tune, evaluate, GRPO (rl_steps > 0), evaluate; what is in the
        results already is kept."""
        last = "after RL" if self.cfg.rl_steps else "before RL"
        if self.done(spec, seed, last):
            self.log(f"[{spec} seed {seed}] kept (finished before)")
            return
        folder = self.layout.record(cell_name(spec, seed))
        start = self.fine_tune(spec, seed, folder)
        if not self.done(spec, seed, "before RL"):
            before = self.evaluate(start, seed) | {"start_checkpoint": start.name}
            self.keep(flat_row(spec, seed, "before RL", before))
        if not self.cfg.rl_steps:
            return
        self.log(f"[{spec} seed {seed}] GRPO ({self.cfg.rl_steps} steps)")
        final = self.grpo(start, seed, folder)
        after = self.evaluate(final, seed)
        after["rl_reward_mean"] = reward_curve(folder / "rl" / "metrics.jsonl")
        after["rl_updated_steps"] = updated_steps(folder / "rl" / "metrics.jsonl")
        self.keep(flat_row(spec, seed, "after RL", after))
        self.log(f"[{spec} seed {seed}] pass@1 after {after['pass_at_k'][1]:.3f}")


def _run(cfg: PipelineConfig, out: Path, log, started: dict, resume=False, layout=None) -> Path:
    run = _Run(cfg, out, log, started, resume, layout)
    if not run.done("base", 0, "before RL"):
        log("evaluating the base model")
        run.keep(flat_row("base", 0, "before RL", run.evaluate(run.base, 0)))
    for seed in cfg.seeds:
        for spec in cfg.inits:
            run.cell(init_display(spec), seed)
    _write_results(out, cfg, run.results, started, run.minutes())
    _report(out, cfg, run.results, run.minutes())
    return out / "report.md"


def _write_results(out: Path, cfg, results: list[dict], started: dict, minutes: float) -> None:

    summary = {
        "results": results,
        "config": cfg.to_dict(),
        "provenance": started,
        "written_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "minutes": minutes,
    }
    tmp = out / "results.json.tmp"
    then = "the results of the cells before are in the previous results.json"
    with writing(out / "results.json", then):
        tmp.write_text(json.dumps(seal(summary), indent=2))  # sealed: an edit is seen on resume
        tmp.replace(out / "results.json")
