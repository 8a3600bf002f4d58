"""`giftlab pipeline`: base -> {SFT, GIFT at several beta, ...} -> the same GRPO budget -> eval,
over seeds, into one report folder (table with spread over seeds, pass@k curves before and after
RL, RL reward curves per initialisation, entropy and KL to base through both stages)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from giftlab.config import ATTENTION_HELP, ATTENTION_RULE
from giftlab.data import read_records
from giftlab.data.tasks import TASK_DEFAULTS, write_task_data
from giftlab.data.tokenize import encode_records
from giftlab.engine.cache import is_complete
from giftlab.errors import InputError, RunDirError
from giftlab.flatconfig import (
    ConfigError,
    FlatConfig,
    at_least,
    finite_non_negative,
    finite_positive,
    one_of,
)
from giftlab.flatconfig import setting as _f
from giftlab.losses import HYPER_SETTINGS, OBJECTIVES
from giftlab.losses.settings import OBJECTIVE_RULES
from giftlab.losses.variant import objective_problem
from giftlab.models import check_model_name, load_model, load_tokenizer
from giftlab.models.loading import DEFAULT_MODEL, REPORT_NAME
from giftlab.plots import caption, lines, panels
from giftlab.provenance import provenance
from giftlab.refcache import RefCacheConfig, build_ref_cache
from giftlab.results import flat_row, load_results
from giftlab.rl.evaluate import evaluate_model
from giftlab.rl.loop import RLConfig, load_task_records, rl
from giftlab.runtime import RunDir
from giftlab.runtime.distributed import default_device
from giftlab.stats import (
    clustered_mean_ci,
    format_paired,
    paired_vs_sft,
    per_problem_values,
    seeds_done,
)
from giftlab.train import TrainConfig, train
from giftlab.variants import is_variant_spec


@dataclass
class PipelineConfig(FlatConfig):
    out_dir: str = _f(
        "runs/pipeline", "report folder: data, one run folder per init and seed, report.md"
    )
    overwrite: bool = _f(False, "replace an earlier pipeline in out_dir (else refused)")
    task: str = _f("countdown", f"reasoning-gym task, one of {sorted(TASK_DEFAULTS)}")
    prompt_style: str = _f(
        "short", "short, or fewshot (two solved examples first: the base then solves some)"
    )
    n_train: int = _f(256, "training problems")
    n_val: int = _f(16, "held-out problems")
    inits: list[str] = _f(
        ["sft", "gift:5"],
        "initialisations: objective[:value] (the value sets its main parameter: beta of gift, "
        "eta of gift_seq, alpha of sft_entropy, beta of a variant MODULE:FUNCTION), e.g. "
        "sft,gift:5,dft,myvariants:half_mix:5",
    )
    seeds: list[int] = _f([0, 1], "training seeds, e.g. 0,1,2")
    sft_steps: int = _f(20, "fine-tuning steps")
    sft_batch: int = _f(4, "fine-tuning batch size")
    sft_lr: float = _f(1e-5, "fine-tuning learning rate")
    select: str = _f(
        "best",
        "fine-tuned model passed to RL: best (lowest held-out one-hot CE, the paper's rule) or final",
    )
    select_every: int = _f(10, "fine-tuning steps between held-out CE checks (select=best)")
    select_examples: int = _f(64, "held-out problems the CE is measured on (the first ones)")
    rl_steps: int = _f(8, "GRPO steps (0: the fine-tuning stage only, e.g. an SFT-stage sweep)")
    rl_prompts: int = _f(4, "GRPO prompts per step")
    group_size: int = _f(8, "GRPO group size")
    rl_lr: float = _f(5e-6, "GRPO learning rate")
    eval_samples: int = _f(8, "samples per held-out problem")
    eval_temperature: float = _f(0.6, "sampling temperature of the evaluation (the paper's 0.6)")
    eval_stats_samples: int = _f(
        1, "samples per problem the entropy / KL-to-base passes run on (0: none; costly)"
    )
    eval_sampler: str = _f(
        "fast",
        "fast (the prompts' shared prefix computed once, finished samples leave the batch) or "
        "plain (model.generate, the sampler of results before 2026-12): the same distribution",
    )
    eval_batch: int = _f(16, "held-out problems sampled together (x eval_samples rows)")
    max_new_tokens: int = _f(16, "completion length limit")
    max_length: int = _f(256, "fine-tuning sequence limit in tokens (prompt + response)")
    model: str = _f("smollm2", "base model: 'smollm2' or a local folder")
    bf16: bool = _f(
        False, "every stage under bf16 autocast (CUDA or CPU), the references' weights in bf16"
    )
    attn_implementation: str = _f("auto", ATTENTION_HELP)

    RULES = (
        ATTENTION_RULE,
        ("task", one_of(*TASK_DEFAULTS), f"one of {sorted(TASK_DEFAULTS)}"),
        ("prompt_style", one_of("short", "fewshot"), "short or fewshot"),
        ("n_train", at_least(1), ">= 1"),
        ("n_val", at_least(1), ">= 1"),
        ("sft_steps", at_least(1), ">= 1"),
        ("sft_batch", at_least(1), ">= 1"),
        ("sft_lr", finite_positive, "a finite number > 0"),
        ("select", one_of("best", "final"), "best or final"),
        ("select_every", at_least(1), ">= 1"),
        ("select_examples", at_least(1), ">= 1"),
        ("eval_stats_samples", at_least(0), ">= 0"),
        ("eval_sampler", one_of("fast", "plain"), "fast or plain"),
        ("eval_batch", at_least(1), ">= 1"),
        ("rl_steps", at_least(0), ">= 0 (0: the fine-tuning stage only)"),
        ("rl_prompts", at_least(1), ">= 1"),
        ("group_size", at_least(2), ">= 2"),
        ("rl_lr", finite_positive, "a finite number > 0"),
        ("eval_samples", at_least(1), ">= 1"),
        ("eval_temperature", finite_non_negative, "a finite number >= 0 (0: greedy)"),
        ("max_new_tokens", at_least(1), ">= 1"),
        ("max_length", at_least(8), ">= 8"),
        ("inits", bool, "a non-empty list"),
        ("seeds", bool, "a non-empty list"),
        ("model", bool, "a model folder or 'smollm2'"),
    )

    def check(self):
        if self.prompt_style == "fewshot" and self.task != "countdown":
            raise ConfigError(
                f"prompt_style=fewshot has solved examples for countdown only, not {self.task!r}",
                "prompt_style",
            )
        for spec in self.inits:
            _init_args(spec)  # every init checked before any work starts
        if self.sft_batch > self.n_train:
            raise ConfigError(
                f"sft_batch ({self.sft_batch}) exceeds n_train ({self.n_train})", "sft_batch"
            )
        specs = [init_display(spec) for spec in self.inits]
        if len(set(specs)) < len(specs):
            dup = next(x for x in specs if specs.count(x) > 1)
            raise ConfigError(f"inits: {dup} is listed twice in {self.inits}", "inits")
        if len(set(self.seeds)) < len(self.seeds):
            dup = next(x for x in self.seeds if self.seeds.count(x) > 1)
            raise ConfigError(f"seeds: {dup} is listed twice in {self.seeds}", "seeds")
        if self.rl_prompts > self.n_train:
            raise ConfigError(
                f"rl_prompts ({self.rl_prompts}) exceeds n_train ({self.n_train})", "rl_prompts"
            )


# keys a resumed pipeline may change: more seeds or inits are appended; the rest must match
PIPELINE_RESUME_MUTABLE = ("seeds", "inits", "overwrite")


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


def _init_args(spec: str) -> tuple[str, dict]:
    """'gift:5' -> ('gift', {'beta': 5.0}): the value after the colon sets the objective's main
    parameter (beta for gift, eta for gift_seq, alpha for sft_entropy, a registered objective's
    first); errors name the init and the allowed objectives and values. A suffix '@kN'
    ('gift:5@k16') trains from a reference cache of the top N tokens (giftlab ref-cache), built
    once per N in the pipeline's folder: {'ref_cache_k': N}."""
    spec, at, cache = spec.partition("@")
    name, extra = _objective_args(spec)
    if not at:
        return name, extra
    if not (cache.startswith("k") and cache[1:].isdigit() and int(cache[1:]) >= 1):
        raise ConfigError(
            f"inits: {spec}@{cache}: after '@' give kN, the reference cache's top N (e.g. @k16)",
            "inits",
        )
    if not OBJECTIVES[name].needs_ref:
        raise ConfigError(f"inits: {spec}@{cache}: {name} uses no reference to cache", "inits")
    return name, extra | {"ref_cache_k": int(cache[1:])}


def _objective_args(spec: str) -> tuple[str, dict]:

    name, sep, raw = spec.partition(":")
    parts = spec.split(":")
    if name not in OBJECTIVES and len(parts) in (2, 3) and is_variant_spec(":".join(parts[:2])):
        # a user's variant MODULE:FUNCTION[:VALUE]
        name, sep, raw = ":".join(parts[:2]), ":" if len(parts) == 3 else "", parts[2:3] or ""
        raw = raw[0] if raw else ""
        problem = objective_problem(name)
        if problem:
            raise ConfigError(f"inits: {spec!r}: the start must be {problem}", "inits")
    if name not in OBJECTIVES:
        raise ConfigError(
            f"inits: unknown objective {name!r} in {spec!r}; allowed: {sorted(OBJECTIVES)} or a "
            "variant MODULE:FUNCTION[:VALUE]",
            "inits",
        )
    if not sep:
        return name, {}
    key = OBJECTIVES[name].main_hyper
    if key is None:
        raise ConfigError(f"inits: {spec!r}: {name} takes no parameter; give {name!r}", "inits")
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(
            f"inits: {spec!r}: {key} must be a number, got {raw!r}", "inits"
        ) from None
    if key in HYPER_SETTINGS:  # a registered objective's own setting
        if not HYPER_SETTINGS[key].rule(value):
            allowed = HYPER_SETTINGS[key].allowed
            raise ConfigError(f"inits: {spec!r}: {key} must be {allowed}, got {value}", "inits")
        return name, {"hyper": {key: value}}
    ok, allowed = next((r[1], r[2]) for r in OBJECTIVE_RULES if r[0] == key)
    if not ok(value):
        raise ConfigError(f"inits: {spec!r}: {key} must be {allowed}, got {value}", "inits")
    return name, {key: value}


def init_display(spec: str) -> str:
    """One form per start: 'gift:5.0' and 'gift:5' are both 'gift:5'."""
    name, extra = _init_args(spec)
    k = extra.pop("ref_cache_k", None)
    values = list((extra.get("hyper") or extra).values())
    shown = f"{name}:{values[0]:g}" if values else name
    return shown if k is None else f"{shown}@k{k}"


def run_pipeline(cfg: PipelineConfig, log=print, resume: bool = False) -> Path:
    """Run the comparison into cfg.out_dir (a fresh folder, overwrite=true, or resume=True: keep
    every finished init x seed cell, resume a half-done one from its checkpoints, and run the
    seeds or inits added to the config); returns report.md."""

    check_model_name(cfg.model, "model", cfg.attn_implementation)  # before the folder is touched
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
        after["rl_reward_mean"] = _reward_curve(folder / "rl" / "metrics.jsonl")
        after["rl_updated_steps"] = _updated_steps(folder / "rl" / "metrics.jsonl")
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


def _reward_curve(path: Path) -> list[float]:
    """rl/reward_mean per GRPO step from a run's metrics.jsonl (kept in results.json)."""
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    return [r["rl/reward_mean"] for r in rows if "rl/reward_mean" in r]


def _updated_steps(path: Path) -> int:
    """How many GRPO steps had a gradient (a step whose groups all had equal rewards has none:
    rl/updated 0)."""
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    return sum(int(r.get("rl/updated", 1)) for r in rows if "rl/reward_mean" in r)


def _updates_text(cfg: PipelineConfig, results: list[dict]) -> str:
    """In how many GRPO steps each RL cell had a gradient; a cell with none is named: its 'after
    RL' model is its 'before RL' model (up to weight decay)."""
    rows = [r for r in results if r["stage"] == "after RL" and "rl_updated_steps" in r]
    if not rows:
        return ""
    frozen = [f"{r['init']} seed {r['seed']}" for r in rows if r["rl_updated_steps"] == 0]
    counts = ", ".join(f"{r['init']} seed {r['seed']}: {r['rl_updated_steps']}" for r in rows)
    text = f"GRPO steps with a non-zero gradient (of {cfg.rl_steps}): {counts}."
    if frozen:
        text += (
            f" No update happened for {', '.join(frozen)}: every group's rewards were equal at "
            "every step, so the gradient was 0 throughout and 'after RL' is the fine-tuned model "
            "itself (up to weight decay)."
        )
    return text


def rebuild_report(out_dir) -> Path:
    """report.md and pipeline.png again from out_dir/results.json alone (no training): after a
    change to the report, or from the partial results.json a crashed or stopped run left."""

    path = Path(out_dir) / "results.json"
    if not path.exists():
        raise InputError(f"{path} does not exist: give the out_dir of a pipeline run")
    try:
        data = load_results(path)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: not JSON ({err})") from None
    if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
        raise InputError(f"{path}: not a pipeline results.json (no config mapping)")
    # keys added later whose default is what earlier versions did
    config = {"prompt_style": "short", "overwrite": False, "max_length": 128} | data["config"]
    missing = sorted(set(PipelineConfig().to_dict()) - set(config))
    if missing:  # today's defaults would misdescribe the run (e.g. its sampling temperature)
        raise InputError(
            f"{path} comes from an older giftlab: its config lacks {missing}; its report.md "
            "stays as that version wrote it"
        )
    cfg = PipelineConfig.from_dict(config, source=f"{path} (config)")
    try:
        _report(Path(out_dir), cfg, data["results"], float(data["minutes"]))
    except (KeyError, TypeError, ValueError, IndexError) as err:
        raise InputError(
            f"{path}: malformed results ({type(err).__name__}: {err}); it is not what "
            "giftlab pipeline writes"
        ) from None
    return Path(out_dir) / "report.md"


def model_display(model: str) -> str:
    """The model's name in captions: the bundled SmolLM2's full name, else what the user gave."""

    return REPORT_NAME if model == DEFAULT_MODEL else model


def _seeds_text(cfg, results: list[dict]) -> str:
    done = seeds_done(results)
    if done == sorted(cfg.seeds):
        return str(cfg.seeds)
    return f"{done} (the run was stopped: {cfg.seeds} were asked for)"


def _write_results(out: Path, cfg, results: list[dict], started: dict, minutes: float) -> None:

    summary = {
        "results": results,
        "config": cfg.to_dict(),
        "provenance": started,
        "written_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "minutes": minutes,
    }
    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2))
    tmp.replace(out / "results.json")


def _difference_panel(ax, paired: list[dict], keys: list[str]) -> None:
    """Init minus SFT per metric, before (open) and after RL (filled), 95% clustered CIs, and
    each training seed's difference as a small dot."""
    stages = [s for s in ("before RL", "after RL") if any(d["stage"] == s for d in paired)]
    inits = list(dict.fromkeys(d["init"] for d in paired))
    width = 0.8 / max(len(inits) * len(stages), 1)
    for j, (init, stage) in enumerate((i, s) for i in inits for s in stages):
        xs, ys, lo, hi = [], [], [], []
        for x, k in enumerate(keys):
            d = next(
                (d for d in paired if (d["init"], d["stage"], d["metric"]) == (init, stage, k)),
                None,
            )
            if d is None:
                continue
            xs.append(x - 0.4 + width * (j + 0.5))
            ys.append(d["mean"])
            defined = d["low"] == d["low"]  # NaN with one training seed: the point alone
            lo.append(d["mean"] - d["low"] if defined else 0.0)
            hi.append(d["high"] - d["mean"] if defined else 0.0)
            ax.plot(
                [xs[-1]] * len(d["per_seed"]), list(d["per_seed"].values()), ".", color="0.5", ms=3
            )
        ax.errorbar(
            xs,
            ys,
            yerr=[lo, hi],
            fmt="o",
            mfc="none" if stage == "before RL" else None,
            capsize=3,
            label=f"{init}, {stage}",
        )
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(
        range(len(keys)), [k.replace("drift/kl_to_base", "KL to base") for k in keys], fontsize=7
    )
    ax.set_ylabel("minus SFT (95% CI over seeds and problems; dots: seeds)")
    ax.set_title("paired against SFT", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)


def _paired_table(results: list[dict], cfg) -> list[str]:
    """The markdown table of `paired_vs_sft`: one row per init and stage."""
    keys = ["pass@1", f"pass@{cfg.eval_samples}", "distinct_correct", "drift/kl_to_base"]
    rows = paired_vs_sft(results, cfg.eval_samples, keys)
    out = [
        "| init - sft | stage | " + " | ".join(keys) + " |",
        "|---|---|" + "---|" * len(keys),
    ]

    cell = format_paired
    for init, stage in dict.fromkeys((r["init"], r["stage"]) for r in rows):
        got = {r["metric"]: r for r in rows if r["init"] == init and r["stage"] == stage}
        cells = [cell(got[k]) if k in got else "-" for k in keys]
        out.append(f"| {init} | {stage} | " + " | ".join(cells) + " |")
    return out if len(out) > 2 else []


def _summary_table(results: list[dict], cfg, keys: list[str]) -> list[str]:
    """One markdown row per init and stage: per-problem metrics with a clustered 95% CI over
    problems, sample-level ones as the mean over seeds."""

    groups: dict = {}
    for r in results:
        groups.setdefault((r["init"], r["stage"]), []).append(r)
    table = [
        "| init | stage | seeds | " + " | ".join(keys) + " |",
        "|---|---|---|" + "---|" * len(keys),
    ]
    for (init, stage), rs in groups.items():
        cells = []
        for k in keys:
            per_problem = per_problem_values(rs, k, cfg.eval_samples)
            if per_problem is not None:  # problems are the unit: clustered CI over problems
                ci = clustered_mean_ci(per_problem) if len(per_problem) > 1 else None
                cells.append(
                    f"{ci['mean']:.3f} [{ci['low']:.3f}, {ci['high']:.3f}]"
                    if ci
                    else f"{per_problem.mean():.3f}"
                )
            elif all(k in r for r in rs):  # sample-level averages: the mean over seeds
                cells.append(f"{np.mean([r[k] for r in rs]):.3f}")
            else:  # not measured (the base's drift from itself)
                cells.append("-")
        table.append(f"| {init} | {stage} | {len(rs)} | " + " | ".join(cells) + " |")
    return table


def _figure(out: Path, cfg, results: list[dict]) -> None:
    """pipeline.png: pass@k before / after RL, the RL reward curves, the paired differences."""

    groups: dict = {}
    for r in results:
        groups.setdefault((r["init"], r["stage"]), []).append(r)
    # figures: pass@k before/after; RL reward curves
    ks = np.arange(1, cfg.eval_samples + 1)
    diff_keys = ["pass@1", f"pass@{cfg.eval_samples}", "distinct_correct", "drift/kl_to_base"]
    paired = paired_vs_sft(results, cfg.eval_samples, diff_keys)
    reward_curves = {}
    for r in results:
        if r["stage"] == "after RL":
            name = f"{r['init'].replace(':', '-')}-seed{r['seed']}"
            mpath = out / name / "rl" / "metrics.jsonl"
            if r.get("rl_reward_mean"):
                reward_curves[name] = r["rl_reward_mean"]
            elif mpath.exists():  # results.json from before the curve was kept in it
                reward_curves[name] = _reward_curve(mpath)
    fig, axes = panels(1 + bool(reward_curves) + bool(paired), width=5.0)
    a, b = axes[0], axes[1] if reward_curves else None
    curves = {
        f"{i}, {s}": np.mean([[r[f"pass@{k}"] for k in ks] for r in rs], axis=0)
        for (i, s), rs in groups.items()
    }
    styles = {lab: {"ls": "--" if "before" in lab else "-"} for lab in curves}
    lines(
        a,
        ks,
        curves,
        "k (samples)",
        "pass@k (held-out)",
        "dashed: before RL, solid: after",
        styles=styles,
    )
    if reward_curves:
        n = min(len(v) for v in reward_curves.values())
        lines(
            b,
            np.arange(1, n + 1),
            {k: v[:n] for k, v in reward_curves.items()},
            "GRPO step",
            "mean reward of the group samples",
            "RL reward per initialisation",
        )
    if paired:  # no RL (rl_steps=0): no reward panel
        _difference_panel(axes[-1], paired, diff_keys)
    seeds = seeds_done(results)
    caption(fig, f"{cfg.task}: {model_display(cfg.model)}, {len(seeds)} seeds")
    fig.savefig(out / "pipeline.png", dpi=120)


def _report(out: Path, cfg: PipelineConfig, results: list[dict], minutes: float) -> None:
    """report.md (the table, the paired differences) and pipeline.png."""

    keys = [
        "pass@1",
        f"pass@{cfg.eval_samples}",
        "distinct_correct",
        "drift/kl_to_base",
        "drift/topk_overlap",
        "sample_entropy",
        "kl_to_base_per_token",
    ]
    table = _summary_table(results, cfg, keys)
    diffs = _paired_table(results, cfg)
    _figure(out, cfg, results)
    text = [
        f"# giftlab pipeline report ({minutes:.1f} min)",
        "",
        f"Task {cfg.task} ({cfg.prompt_style} prompts), {cfg.n_train} training problems, {cfg.n_val} held-out problems x "
        f"{cfg.eval_samples} samples; fine-tuning {cfg.sft_steps} steps, GRPO {cfg.rl_steps} steps x "
        f"{cfg.rl_prompts} prompts x group {cfg.group_size}; seeds {_seeds_text(cfg, results)}; evaluation at temperature {cfg.eval_temperature}.",
        "",
        *table,
        "",
        "pass@k and distinct correct: mean over problems (each averaged over seeds) with a 95% "
        "clustered-bootstrap CI over problems; drift/kl_to_base and drift/topk_overlap: "
        "teacher-forced on each held-out demonstration (KL(policy || base) per token, top-10 "
        "overlap), same CI; sample_entropy and kl_to_base_per_token (per sampled token, on the first "
        f"{cfg.eval_stats_samples} sample(s) of each problem): mean over seeds. The fine-tuned "
        f"model passed to RL: {cfg.select}"
        + (
            f" (lowest one-hot CE on the first {cfg.select_examples} held-out problems)."
            if cfg.select == "best"
            else "."
        ),
        "",
        *diffs,
        "",
        "Init minus SFT on the same problems and training seeds: 95% CI over training seeds and "
        "problems together (giftlab.stats.seed_problem_difference: a seed and a problem each "
        "shift the difference; none with one training seed), 'resolvable': the smallest "
        "difference this design detects (alpha 0.05, power 0.8), then each seed's own "
        "difference."
        if diffs
        else "",
        "",
        _updates_text(cfg, results),
        "",
        "![pipeline](pipeline.png)",
        "",
    ]
    (out / "report.md").write_text("\n".join(text))
