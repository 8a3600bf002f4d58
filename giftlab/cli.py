"""The `giftlab` command. Each subcommand's --help documents it; the README lists them all.

The one place where giftlab imports its own modules inside functions: each subcommand imports
what it runs when it runs, so that a core-only install (no torch, `make wheel-check`) runs
`giftlab solve`, `giftlab validate` and the theory figures, and a command that needs the [train]
extra says so in one line. Everywhere else, imports stand at the top of the file."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _float_list(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}"
        ) from None


def _int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated token ids, got {text!r}"
        ) from None


def add_solve_parser(sub) -> None:
    p = sub.add_parser(
        "solve",
        help=HELP["solve"],
        description=(
            "Build a random TabularLM, pick a demonstration (a sample from the base unless --gold), "
            "and compare the exact Gibbs policy pi0 exp(beta r)/Z with the policy GIFT's target "
            "induces on the gold path, for each beta; then list, along the gold path, GIFT's constant "
            "gain against the exact gains g_t for eta."
        ),
    )
    p.add_argument("--vocab-size", type=int, default=4, help="V, tokens per step (default 4)")
    p.add_argument("--horizon", type=int, default=4, help="T, sequence length (default 4)")
    p.add_argument(
        "--end-token", type=int, default=None, help="token id that ends a sequence early"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the instance and the gold sample")
    p.add_argument(
        "--concentration",
        type=float,
        default=0.5,
        help="Dirichlet concentration of every base row (small: peaked rows)",
    )
    p.add_argument(
        "--gold",
        type=_int_list,
        default=None,
        help="demonstration as comma-separated token ids (default: a base sample)",
    )
    p.add_argument(
        "--betas",
        type=_float_list,
        default=[0, 0.5, 1, 2, 5, 10, 20, float("inf")],
        help="inverse temperatures to tabulate, e.g. 0,1,5,inf",
    )
    p.add_argument(
        "--eta", type=float, default=5.0, help="sequence reward scale for the gains table"
    )
    p.add_argument(
        "--smoothing", type=float, default=0.0, help="uniform mixing of the base, [0, 1]"
    )
    p.add_argument(
        "--correct-fraction",
        type=float,
        default=0.0,
        help="fraction of other sequences the verifier also accepts (default: gold only)",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.set_defaults(func=run_solve)


def run_solve(args) -> int:
    from giftlab.errors import InputError
    from giftlab.theory.report import format_solve_report, solve

    _check_seed(args.seed, "--seed")
    try:
        report = _solve_report(solve, args)
    except InputError:
        raise
    except ValueError as err:  # the solver's own checks of the command's arguments
        raise InputError(str(err)) from None
    print(json_text(report) if args.json else format_solve_report(report))
    return 0


def _check_seed(value, name: str) -> None:
    from giftlab.errors import InputError
    from giftlab.flatconfig import SEED_ALLOWED, is_seed

    if not is_seed(value):
        raise InputError(f"{name} must be {SEED_ALLOWED}, got {value}")


def _solve_report(solve, args):
    return solve(
        args.vocab_size,
        args.horizon,
        args.end_token,
        args.seed,
        args.concentration,
        args.gold,
        args.betas,
        args.eta,
        args.smoothing,
        args.correct_fraction,
    )


def json_text(obj) -> str:
    """Strict JSON: inf, -inf and NaN become the strings "inf", "-inf", "nan" (Python's json would
    write the non-JSON tokens Infinity and NaN)."""
    import math

    def clean(x):
        if isinstance(x, float) and not math.isfinite(x):
            return str(x)
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [clean(v) for v in x]
        return x

    return json.dumps(clean(obj), indent=2, allow_nan=False)


def add_validate_parser(sub) -> None:
    p = sub.add_parser(
        "validate",
        help=HELP["validate"],
        description="Run a token-level target variant (a function (base (L, V), tokens (L,), eta) "
        "-> target (L, V), rows summing to 1) on a seeded grid of exact tabular instances and "
        "compare the policy it induces with the exact sequence Gibbs policy pi0 exp(eta "
        "1[y = y*]) / Z: KL, per-token gains against the exact gains g_t, the limits eta -> 0 "
        "and eta -> inf, whether the exact soft-Bellman policy is a stationary point of its loss, "
        "and a hypothesis search for the worst instance. Writes OUT/report.md, OUT/validate.csv, "
        "OUT/validate.png, with the built-in gift, gift_seq and sft targets ranked on the same grid. "
        "Exit 0: passes (KL within --tolerance everywhere, both limits and the stationarity gap "
        "within 1e-6); 1: does not (the failed checks and the worst instance are named); 2: not a "
        "valid variant (cannot be imported or called, wrong shape or rows).",
    )
    p.add_argument("variant", metavar="MODULE:FUNCTION", help="e.g. mypackage.targets:my_target")
    p.add_argument(
        "--tolerance", type=float, default=1e-8, help="largest KL that passes (default 1e-8)"
    )
    p.add_argument("--seeds", type=int, default=3, help="seeds per grid cell (default 3)")
    p.add_argument(
        "--search", type=int, default=40, help="hypothesis examples (0: grid only; default 40)"
    )
    p.add_argument("--out", default="runs/validate", help="output folder (default runs/validate)")
    p.add_argument(
        "--replay", default=None, metavar="INSTANCE", help="run one instance printed by a report"
    )
    p.set_defaults(func=run_validate)


def run_validate(args) -> int:
    import math
    import sys as _sys
    from pathlib import Path

    from giftlab.errors import InputError
    from giftlab.theory.validate import (
        Grid,
        Instance,
        check_instance,
        load_variant,
        validate_variant,
    )

    if not (math.isfinite(args.tolerance) and args.tolerance >= 0):
        raise InputError(f"--tolerance must be a finite number >= 0, got {args.tolerance}")
    if args.seeds < 1 or args.search < 0:
        raise InputError(f"--seeds must be >= 1 and --search >= 0, got {args.seeds}, {args.search}")
    _sys.path.insert(0, str(Path.cwd()))  # a user's own module in the current folder imports
    fn = load_variant(args.variant)
    if args.replay:
        row = check_instance(fn, Instance.parse(args.replay))
        shown = ("kl", "tv", "gain_error", "stationary_gap", "limit_zero_gap", "limit_inf_gap")
        print("  ".join(f"{k} {row[k]:.3e}" for k in shown))
        return 0 if row["kl"] <= args.tolerance else 1
    from giftlab.outputs import output_folder
    from giftlab.reports.validate import (
        FILES,
        check_lines,
        gift_comparison,
        replay_text,
        worst_row,
        write_validation,
    )

    # made, writable, none of its files the user's, and held: two validations never mix files
    with output_folder(args.out, FILES) as out:
        grid = Grid(seeds=tuple(range(args.seeds)))
        v = validate_variant(fn, grid, args.tolerance, args.search)
        worst = worst_row(v)
        verdict = "PASS: matches" if v.passed else "FAIL: does NOT match"
        print(  # the verdict first: a write that fails below loses none of it
            f"{args.variant} {verdict} the exact Gibbs policy (tolerance {args.tolerance:g}): "
            f"worst KL {worst['kl']:.3e} at {replay_text(worst)}; {len(v.rows)} grid instances"
        )
        print("\n".join(check_lines(v)))
        print(gift_comparison(v), flush=True)
        report = write_validation(v, args.variant, out)
    print(f"report {report}")
    from giftlab.variants import write_validation_record

    failed = [k for k, (ok, _, _) in v.checks.items() if not ok]
    write_validation_record(
        args.variant,
        "PASS" if v.passed else "FAIL (" + ", ".join(failed) + ")",
        f"worst KL {worst['kl']:.3g}. " + gift_comparison(v),
    )
    return 0 if v.passed else 1


def add_push_parser(sub) -> None:
    p = sub.add_parser(
        "push",
        help=HELP["push"],
        description="Upload RUN_DIR/final (a giftlab run folder) or RUN_DIR (a model folder) to "
        "the hub repository REPO_ID (made if missing). Checked first: config.json and weights, "
        "a model card, and no path of this machine in any card or config. --dry-run: the checks "
        "and the file list, nothing sent (works offline).",
    )
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("repo_id", metavar="REPO_ID", help="owner/name on the hub")
    p.add_argument("--dry-run", action="store_true", help="check and list, upload nothing")
    p.add_argument("--private", action="store_true", help="make a new repository private")
    p.set_defaults(func=run_push)


def run_push(args) -> int:
    from giftlab.share import push

    return push(args.run_dir, args.repo_id, dry_run=args.dry_run, private=args.private)


def add_data_parser(sub) -> None:
    from giftlab.data.tasks import TASK_DEFAULTS

    p = sub.add_parser(
        "data",
        help=HELP["data"],
        description=(
            "Generate problems with a reasoning-gym task (seeded, offline), one canonical demonstration "
            "each, and write OUT/train.jsonl and OUT/val.jsonl (disjoint seeds). Records keep the "
            "verifier's metadata for evaluation."
        ),
    )
    p.add_argument(
        "--task",
        default="countdown",
        choices=sorted(TASK_DEFAULTS),
        help="task (default countdown)",
    )
    p.add_argument("--n-train", type=int, default=512, help="training problems (default 512)")
    p.add_argument("--n-val", type=int, default=64, help="validation problems (default 64)")
    p.add_argument("--seed", type=int, default=0, help="seed (validation uses a disjoint one)")
    p.add_argument("--out", default=None, help="output folder (default data/TASK)")
    p.add_argument(
        "--prompt-style",
        default="task",
        choices=["task", "short", "fewshot"],
        help="task: reasoning-gym's question; short: a compact prompt (countdown), cheaper on a "
        "CPU; fewshot: the short prompt after two solved examples (countdown; the base model then "
        "answers in the verifier's format)",
    )
    p.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="task settings, e.g. max_numbers=4 (defaults suit a 135M model)",
    )
    p.set_defaults(func=run_data)


def run_data(args) -> int:
    from giftlab.data.tasks import write_task_data
    from giftlab.errors import InputError

    if args.n_train < 1 or args.n_val < 0:
        raise InputError(
            f"--n-train must be >= 1 and --n-val >= 0, got {args.n_train}, {args.n_val}"
        )
    _check_seed(args.seed, "--seed")
    settings = {}
    for item in args.set:
        key, _, raw = item.partition("=")
        if not raw:
            raise InputError(f"--set {item!r} must look like key=value")
        try:
            settings[key] = json.loads(raw)
        except json.JSONDecodeError:
            settings[key] = raw
    paths = write_task_data(
        args.task,
        args.out or f"data/{args.task}",
        args.n_train,
        args.n_val,
        args.seed,
        settings,
        prompt_style=args.prompt_style,
    )
    for split, path in paths.items():
        print(f"wrote {path} ({split})")
    return 0


def _flat_config_parser(sub, name, help, description, config_cls, resume=True):
    """A subcommand whose settings are a FlatConfig: --config FILE.yaml, then KEY=VALUE."""
    p = sub.add_parser(
        name,
        help=help,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=description
        + " Settings: the defaults, then --config FILE.yaml, then KEY=VALUE overrides."
        + "\n\nkeys:\n"
        + config_cls.help_text(),
    )
    p.add_argument("--config", default=None, help="YAML file of settings")
    if resume:
        p.add_argument(
            "--resume", action="store_true", help="continue from out_dir's newest valid checkpoint"
        )
    p.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="settings overriding the config"
    )
    return p


def _load_config(config_cls, args):
    """Defaults, then --config FILE.yaml, then KEY=VALUE (on either side of the options). With
    --resume the run's own settings (out_dir/config.json) replace the defaults, so only what the
    user gives again can differ from the run (and RunDir then says whether it may)."""
    cfg = config_cls.from_yaml(args.config) if args.config else config_cls()
    cfg = cfg.with_overrides(args.overrides)
    if not getattr(args, "resume", False):
        return cfg
    from giftlab.errors import RunDirError
    from giftlab.runtime.rundir import saved_run_record

    try:  # config.json, or where it is gone the newest checkpoint's record (RunDir says so)
        record, saved_path = saved_run_record(cfg.out_dir, log=lambda *a: None)
    except RunDirError:
        return cfg  # RunDir names the damaged or missing file
    saved = record.get("config") if record else None
    if not isinstance(saved, dict):
        return cfg
    explicit = {item.partition("=")[0] for item in args.overrides} | {"out_dir"}
    if args.config:
        import yaml

        explicit |= set(yaml.safe_load(Path(args.config).read_text()) or {})
    known = set(config_cls.field_names()) | set(config_cls.extra_settings())
    values = {k: v for k, v in saved.items() if k in known}
    values |= {k: v for k, v in cfg.to_dict().items() if k in explicit or k not in values}
    if "hyper" in values and "hyper" in saved and "hyper" not in explicit:
        values["hyper"] = saved["hyper"] | {
            k: v for k, v in cfg.to_dict().get("hyper", {}).items() if k in explicit
        }
    return config_cls.from_dict(values, source=str(saved_path))


def add_train_parser(sub) -> None:
    from giftlab.train.config import TrainConfig

    p = _flat_config_parser(
        sub,
        "train",
        HELP["train"],
        "Fine-tune a local causal LM with an objective of giftlab.losses. Under torchrun the same "
        "command runs DDP (GIFTLAB_DISTRIBUTED=fsdp for FSDP2). A non-empty out_dir is refused "
        "unless --resume or overwrite=true.",
        TrainConfig,
    )
    p.set_defaults(func=run_train)


def run_train(args) -> int:
    from giftlab.train import TrainConfig, train

    cfg = _load_config(TrainConfig, args)
    last = train(cfg, resume=args.resume)
    keys = [
        "step",
        "loss/train",
        "val/ce",
        "val/policy_entropy",
        "val/kl_to_base",
        "perf/tokens_per_s",
    ]
    shown = ", ".join(f"{k} {last[k]:.4g}" for k in keys if k in last)
    print(f"finished: {shown}  ({cfg.out_dir})")
    return 0


def add_rl_parser(sub) -> None:
    from giftlab.rl.loop import RLConfig

    p = _flat_config_parser(
        sub,
        "rl",
        HELP["rl"],
        "GRPO with verifier rewards (reasoning-gym tasks, or user math checked by math-verify).",
        RLConfig,
    )
    p.set_defaults(func=run_rl)


def add_eval_parser(sub) -> None:
    from giftlab.rl.config import EvalConfig

    p = _flat_config_parser(
        sub,
        "eval",
        HELP["eval"],
        "Sample `samples` completions per problem; print pass@k (unbiased, k = 1..samples), mean@k, "
        "maj@k, distinct correct answers, sampled-token entropy and KL to the base; --json for "
        "machines (it includes each problem's number of correct samples). The out file's folder is "
        "made, or checked writable, before any work.",
        EvalConfig,
        resume=False,
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.set_defaults(func=run_eval)


def run_rl(args) -> int:
    from giftlab.rl.loop import RLConfig, rl

    last = rl(_load_config(RLConfig, args), resume=args.resume)
    shown = ", ".join(
        f"{k} {v:.4g}" for k, v in last.items() if k.startswith(("step", "rl/reward", "rl/kl"))
    )
    failed = last.get("rl/verifier_errors_total", 0)
    print(f"finished: {shown}, verifier failures {failed} (tolerated, advantage 0)")
    return 0


def run_eval(args) -> int:
    from giftlab.errors import InputError
    from giftlab.rl.config import EvalConfig
    from giftlab.rl.evaluate import evaluate_checkpoint, write_results

    cfg = _load_config(EvalConfig, args)
    m = evaluate_checkpoint(cfg)
    if args.json:
        print(json.dumps(m, indent=2))
        if cfg.out:
            write_results(Path(cfg.out), m)
        return 0
    from giftlab.theory.report import format_table

    ks = [k for k in (1, 2, 4, 8, 16, 32, 64) if k <= cfg.samples]
    print(f"{m['n_problems']} problems x {m['n_samples']} samples ({cfg.model})")
    rows = [{"k": k, "pass": m["pass_at_k"][k]} for k in ks]
    print(format_table(rows, [("k", "k", ""), ("pass", "pass@k", ".3f")]))
    for key in (
        "mean_at_k",
        "maj_at_n",
        "distinct_correct",
        "sample_entropy",
        "kl_to_base_per_token",
        "verifier_errors",
        "empty_completions",
        "generation_tokens_per_s",
    ):
        print(f"{key:26s} {m[key]:.4g}")
    if cfg.out:
        from giftlab.rl.evaluate import completions_path

        try:
            write_results(Path(cfg.out), m)
        except InputError:
            print(json.dumps(m))  # every result on the terminal: a full disk loses none
            raise

        print(f"wrote {cfg.out} and {completions_path(Path(cfg.out))}")
    return 0


def add_ref_cache_parser(sub) -> None:
    from giftlab.refcache import RefCacheConfig

    p = _flat_config_parser(
        sub,
        "ref-cache",
        HELP["ref-cache"],
        "One pass of the frozen reference over the training (and validation) examples, "
        "tokenised as giftlab train tokenises them: per response token its top-K ids and "
        "log-probabilities, the gold token's and the log tail mass, in memory-mapped shards. "
        "Then `giftlab train ref_cache=OUT_DIR ...` with the same model, data and tokenisation "
        "keys loads no reference model. Running the same command again resumes a stopped build.",
        RefCacheConfig,
        resume=False,
    )
    p.set_defaults(func=run_ref_cache)


def run_ref_cache(args) -> int:
    from giftlab.refcache import RefCacheConfig, build_ref_cache

    build_ref_cache(_load_config(RefCacheConfig, args))
    return 0


def add_pipeline_parser(sub) -> None:
    from giftlab.pipeline import PipelineConfig

    p = _flat_config_parser(
        sub,
        "pipeline",
        HELP["pipeline"],
        "Runs the two-stage comparison with SmolLM2 on countdown (the committed 300-problem run "
        "and its time: paper_figures/README.md) and writes OUT/report.md, OUT/pipeline.png and OUT/results.json (with each "
        "problem's correct count). Every init is checked before any work starts. results.json "
        "is rewritten after every evaluation; --report DIR rebuilds report.md and pipeline.png "
        "from DIR/results.json alone (after a stopped run, or a change to the report). --resume "
        "continues a stopped pipeline (finished init x seed cells kept, a half-done one resumed "
        "from its checkpoints) and runs only the seeds or inits added, e.g. seeds=0,1,2,3 --resume.",
        PipelineConfig,
    )
    p.add_argument(
        "--report",
        metavar="DIR",
        default=None,
        help="rebuild DIR/report.md and DIR/pipeline.png from DIR/results.json; no training",
    )
    p.set_defaults(func=run_pipeline_cmd)


def run_pipeline_cmd(args) -> int:
    from giftlab.pipeline import PipelineConfig, rebuild_report, run_pipeline

    if args.report:
        print(f"wrote {rebuild_report(args.report)}")
        return 0
    print(f"wrote {run_pipeline(_load_config(PipelineConfig, args), resume=args.resume)}")
    return 0


def add_plan_parser(sub) -> None:
    p = sub.add_parser(
        "plan",
        help=HELP["plan"],
        description="From a pipeline's results.json with two or more training seeds: the variance "
        "components (training seed, problem, residual) of each start minus SFT per metric, and "
        "for candidate designs the 95%% interval's half-width, the resolvable difference and the "
        "CPU minutes (giftlab/planner.py).",
    )
    p.add_argument("results", help="a giftlab pipeline results.json")
    p.add_argument("--against", default="sft", help="the start differences are taken against")
    p.add_argument("--metrics", default="pass@1,pass@8,distinct_correct", help="comma-separated")
    p.add_argument("--seeds", default="2,3,5,8,10", help="candidate training seeds")
    p.add_argument("--problems", default="300,600", help="candidate held-out problems")
    p.add_argument("--samples", default="8,16", help="candidate samples per problem (pass@1)")
    p.add_argument(
        "--finetune-min", type=float, default=None, help="minutes to fine-tune one cell here"
    )
    p.add_argument(
        "--eval-min", type=float, default=None, help="minutes to evaluate 300 problems x 8 here"
    )
    p.add_argument("--out", default=None, help="also write plan.csv and plan.png in this folder")
    p.set_defaults(func=run_plan_cmd)


def _int_list(text: str, name: str) -> tuple[int, ...]:
    from giftlab.errors import InputError

    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise InputError(f"{name}: comma-separated whole numbers, got {text!r}") from None
    if not values or min(values) < 2:
        raise InputError(f"{name}: whole numbers >= 2, got {text!r}")
    return values


def run_plan_cmd(args) -> int:
    from giftlab import planner

    planner.run_plan(
        args.results,
        out=args.out,
        against=args.against,
        metrics=tuple(m.strip() for m in args.metrics.split(",") if m.strip()),
        seeds=_int_list(args.seeds, "--seeds"),
        problems=_int_list(args.problems, "--problems"),
        samples=_int_list(args.samples, "--samples"),
        finetune_min=planner.FINETUNE_MIN if args.finetune_min is None else args.finetune_min,
        eval_min=planner.EVAL_MIN if args.eval_min is None else args.eval_min,
    )
    return 0


def add_figures_parser(sub) -> None:
    p = sub.add_parser(
        "figures",
        help=HELP["figures"],
        description="Run every figure module (giftlab/figures/fig*.py, also scripts/fig*.py); each "
        "writes NAME.csv (with provenance) and NAME.png.",
    )
    p.add_argument(
        "--out",
        default=None,
        help="output folder (default paper_figures; with --quick runs/figures-quick: quick "
        "figures never replace full-size ones)",
    )
    p.add_argument(
        "--quick", action="store_true", help="small versions of every figure (seconds; for tests)"
    )
    p.set_defaults(func=run_figures)


def add_demo_parser(sub) -> None:
    d = sub.add_parser(
        "demo",
        help=HELP["demo"],
        description="Regenerate the exact figures and write OUT/report.md with them and the solver report.",
    )
    d.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    d.add_argument("--quick", action="store_true", help="small figures (seconds)")
    d.set_defaults(func=run_demo_cmd)


def run_figures(args) -> int:
    from pathlib import Path

    from giftlab.figures import prepare_figure_folder, regenerate
    from giftlab.outputs import OUT_LOCK, locked

    out = Path(args.out or ("runs/figures-quick" if args.quick else "paper_figures"))
    prepare_figure_folder(out, args.quick)  # refused before the lock: no trace in the folder
    with locked(out / OUT_LOCK, f"--out {out}"):  # a second figures or demo into it: refused
        regenerate(out, quick=args.quick)
    return 0


def run_demo_cmd(args) -> int:
    from pathlib import Path

    from giftlab.reports.demo import run_demo

    run_demo(Path(args.out), quick=args.quick)
    return 0


HELP = {
    "solve": "exact Gibbs vs GIFT on a random tabular instance",
    "data": "write train/validation JSONL from a reasoning-gym task",
    "train": "SFT / GIFT / baselines on a causal LM",
    "rl": "GRPO from any checkpoint",
    "eval": "pass@k and diversity on held-out problems",
    "pipeline": "base -> {SFT, GIFT, ...} -> the same GRPO -> eval, over seeds",
    "figures": "regenerate every figure (giftlab/figures/fig*.py) with its CSV",
    "demo": "the main job: exact figures and a markdown report",
    "validate": "a target variant against the exact Gibbs policy (exact tabular instances)",
    "ref-cache": "the reference's top-K distribution per training token, computed once",
    "plan": "which seeds x problems x samples resolve a difference, and the CPU minutes",
    "push": "a trained model folder to the Hugging Face hub, checked first (--dry-run offline)",
}

# The modules each extra brings; a command that needs a missing one says which extra to install.
EXTRAS = {
    "train": ("torch", "transformers", "accelerate", "peft", "safetensors"),
    "data": ("reasoning_gym", "math_verify", "pyarrow"),
}

# command -> (parser builder, extras it needs). Only the chosen command's parser is built, so
# `giftlab solve` and `giftlab figures` never import torch.
COMMANDS = {
    "solve": (add_solve_parser, ()),
    "data": (add_data_parser, ("data",)),
    "train": (add_train_parser, ("train", "data")),
    "rl": (add_rl_parser, ("train", "data")),
    "eval": (add_eval_parser, ("train", "data")),
    "ref-cache": (add_ref_cache_parser, ("train", "data")),
    "pipeline": (add_pipeline_parser, ("train", "data")),
    "figures": (add_figures_parser, ()),
    "demo": (add_demo_parser, ()),
    "validate": (add_validate_parser, ()),
    "plan": (add_plan_parser, ("train",)),  # reads results through giftlab.pipeline
    "push": (add_push_parser, ()),
}


def _missing_extras(extras) -> list[str]:
    import importlib.util

    return [e for e in extras if any(importlib.util.find_spec(m) is None for m in EXTRAS[e])]


def main(argv: list[str] | None = None) -> int:
    """The `giftlab` command. A failure caused by input (a config value, a data record, a path, a
    run folder, a non-finite loss: giftlab.errors) prints one line naming it and exits with 2; any
    other exception is a bug and shows its traceback."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(
        prog="giftlab",
        description="GIFT: exact theory, token objectives and a compact trainer.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (build, extras) in COMMANDS.items():
        if name != chosen:
            sub.add_parser(name, help=HELP[name])
            continue
        missing = _missing_extras(extras)
        if missing:
            wanted = ",".join(missing)
            print(
                f"giftlab {name}: error: needs the [{wanted}] extra: "
                f"pip install 'giftlab[{wanted}]'",
                file=sys.stderr,
            )
            return 2
        build(sub)
    flat = chosen in ("train", "rl", "eval", "pipeline", "ref-cache")  # the KEY=VALUE commands
    args = parser.parse_args(_overrides_last(argv) if flat else argv)
    from giftlab.errors import InputError

    try:
        return args.func(args)
    except (InputError, FileNotFoundError, PermissionError, IsADirectoryError) as err:
        # giftlab's own kinds (and a user's path that cannot be read or written); anything else
        # is a bug and shows its traceback
        print(f"giftlab {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except OSError as err:
        import errno

        if err.errno not in (errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.ENOTDIR):
            raise
        print(f"giftlab {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"giftlab {args.command}: interrupted", file=sys.stderr)
        return 130


def _overrides_last(argv: list[str]) -> list[str]:
    """KEY=VALUE may stand on either side of --resume or --config FILE: argparse takes its
    positionals in one run, so move them after the options (an option's own value stays)."""
    takes_value = {"--config", "--report", "--out", "--task", "--n-train", "--n-val", "--seed"}
    front, overrides, i = [], [], 0
    while i < len(argv):
        a = argv[i]
        if a in takes_value and i + 1 < len(argv):
            front += [a, argv[i + 1]]
            i += 2
            continue
        (overrides if ("=" in a and not a.startswith("-")) else front).append(a)
        i += 1
    return front + overrides


def _one_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    if isinstance(err, OSError) and err.filename and str(err.filename) not in text:
        text = f"{err.filename}: {text}"
    return " ".join(text.split())


if __name__ == "__main__":
    sys.exit(main())
