"""The `giftlab` command. Each subcommand's --help documents it; the README lists them all."""

from __future__ import annotations

import argparse
import json
import sys


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


def _format_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """rows of dicts -> aligned text; columns = (key, header, format)."""
    cells = [[h for _, h, _ in columns]]
    for row in rows:
        cells.append([format(row[k], f) if f else str(row[k]) for k, _, f in columns])
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def add_solve_parser(sub) -> None:
    p = sub.add_parser(
        "solve",
        help="exact Gibbs vs GIFT on a random tabular instance",
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
    from giftlab.theory.report import sample_sequence, solve_report, verifier_reward
    from giftlab.theory.tabular import TabularLM

    lm = TabularLM.random(
        args.vocab_size,
        args.horizon,
        seed=args.seed,
        concentration=args.concentration,
        end_token=args.end_token,
    )
    if lm.n_sequences > 2_000_000:
        raise ValueError(
            f"--vocab-size {args.vocab_size} --horizon {args.horizon} gives {lm.n_sequences} sequences; "
            "the report enumerates them: keep it under 2,000,000"
        )
    gold = sample_sequence(lm, args.seed) if args.gold is None else args.gold
    reward = None
    if args.correct_fraction > 0:
        reward = verifier_reward(lm, gold, args.correct_fraction, args.seed)
    report = solve_report(lm, gold, args.betas, args.eta, reward=reward, smoothing=args.smoothing)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    inst = report["instance"]
    print(
        f"TabularLM V={inst['vocab_size']} T={inst['horizon']} end={inst['end_token']} "
        f"({inst['n_sequences']} sequences), seed {args.seed}, concentration {args.concentration}"
    )
    print(
        f"gold y* = {inst['gold']}  (base probability {inst['gold_base_prob']:.3g}); "
        f"{inst['n_correct']} correct sequence(s); smoothing {inst['smoothing']}"
    )
    print(
        "\nExact Gibbs pi0 exp(beta r)/Z vs the GIFT-induced policy (target on gold prefixes, "
        "pi0 elsewhere)"
    )
    print(
        _format_table(
            report["by_beta"],
            [
                ("beta", "beta", "g"),
                ("exact_gold_mass", "gold mass", ".4f"),
                ("gift_gold_mass", "GIFT gold", ".4f"),
                ("exact_reward", "E[r]", ".4f"),
                ("gift_reward", "GIFT E[r]", ".4f"),
                ("exact_entropy", "H (nats)", ".3f"),
                ("gift_entropy", "GIFT H", ".3f"),
                ("exact_kl_to_base", "KL(.||pi0)", ".3f"),
                ("gift_kl_to_base", "GIFT KL", ".3f"),
                ("kl_gift_to_exact", "KL(GIFT||exact)", ".4f"),
            ],
        )
    )
    print(
        f"\nAlong the gold path at eta = {inst['eta']:g}: GIFT's constant gain vs the exact "
        "g_t = log(1 + (e^eta - 1) pi0(y*_>t))"
    )
    print(
        _format_table(
            report["gold_path"],
            [
                ("t", "t", ""),
                ("token", "y*_t", ""),
                ("base_gold_prob", "pi0(y*_t)", ".4f"),
                ("gift_gain", "GIFT beta", ".3f"),
                ("exact_gain", "exact g_t", ".3f"),
                ("gate_w", "gate w_t", ".4f"),
            ],
        )
    )
    return 0


def add_data_parser(sub) -> None:
    from giftlab.data.tasks import TASK_DEFAULTS

    p = sub.add_parser(
        "data",
        help="write train/validation JSONL from a reasoning-gym task",
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
        choices=["task", "short"],
        help="task: reasoning-gym's question; short: a compact prompt (countdown), cheaper on a CPU",
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

    if args.n_train < 1 or args.n_val < 0:
        raise ValueError(
            f"--n-train must be >= 1 and --n-val >= 0, got {args.n_train}, {args.n_val}"
        )
    settings = {}
    for item in args.set:
        key, _, raw = item.partition("=")
        if not raw:
            raise ValueError(f"--set {item!r} must look like key=value")
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


def add_train_parser(sub) -> None:
    from giftlab.train.config import config_help

    p = sub.add_parser(
        "train",
        help="SFT / GIFT / baselines on a causal LM",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Fine-tune a local causal LM with an objective of giftlab.losses. Settings come from the "
            "defaults, then --config FILE.yaml, then KEY=VALUE overrides. Under torchrun the same "
            "command runs DDP (GIFTLAB_DISTRIBUTED=fsdp for FSDP2).\n\nkeys:\n" + config_help()
        ),
    )
    p.add_argument("--config", default=None, help="YAML file of settings")
    p.add_argument(
        "--resume", action="store_true", help="continue from out_dir's latest checkpoint"
    )
    p.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="settings overriding the config"
    )
    p.set_defaults(func=run_train)


def run_train(args) -> int:
    from giftlab.train import TrainConfig, train

    cfg = TrainConfig.from_yaml(args.config) if args.config else TrainConfig()
    cfg = cfg.with_overrides(args.overrides)
    last = train(cfg, resume=args.resume)
    keys = [
        "step",
        "loss/train",
        "val/ce",
        "val/policy_entropy",
        "val/kl_policy_ref",
        "perf/tokens_per_s",
    ]
    print(
        "finished: "
        + ", ".join(f"{k} {last[k]:.4g}" for k in keys if k in last)
        + f"  ({cfg.out_dir})"
    )
    return 0


def add_rl_parsers(sub) -> None:
    from giftlab.rl.loop import rl_config_help

    p = sub.add_parser(
        "rl", help="GRPO from any checkpoint", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="GRPO with verifier rewards from reasoning-gym. Settings: defaults, then --config FILE.yaml, "
        "then KEY=VALUE overrides.\n\nkeys:\n" + rl_config_help(),
    )  # fmt: skip
    p.add_argument("--config", default=None, help="YAML file of settings")
    p.add_argument(
        "--resume", action="store_true", help="continue from out_dir's latest checkpoint"
    )
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    p.set_defaults(func=run_rl)
    e = sub.add_parser("eval", help="pass@k and diversity on held-out problems",
                       description="Sample n completions per problem; print pass@k (unbiased, k = 1..n), mean@k, maj@k, "
                       "distinct correct answers, sampled-token entropy and KL to the base; --json for machines.")  # fmt: skip
    e.add_argument("--model", default="smollm2", help="model folder or 'smollm2'")
    e.add_argument("--base", default="smollm2", help="base model for KL (default smollm2)")
    e.add_argument(
        "--data", default="data/countdown/val.jsonl", help="held-out records from giftlab data"
    )
    e.add_argument("--n", type=int, default=16, help="samples per problem (default 16)")
    e.add_argument("--limit", type=int, default=32, help="problems (default 32; 0: all)")
    e.add_argument("--max-new-tokens", type=int, default=24)
    e.add_argument("--temperature", type=float, default=1.0)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--json", action="store_true")
    e.add_argument("--out", default=None, help="also write the JSON here")
    e.set_defaults(func=run_eval)


def run_rl(args) -> int:
    from giftlab.rl.loop import RLConfig, rl

    cfg = RLConfig.from_yaml(args.config) if args.config else RLConfig()
    last = rl(cfg.with_overrides(args.overrides), resume=args.resume)
    print(
        "finished: "
        + ", ".join(
            f"{k} {v:.4g}" for k, v in last.items() if k.startswith(("step", "rl/reward", "rl/kl"))
        )
    )
    return 0


def run_eval(args) -> int:
    from giftlab.models import load_model, load_tokenizer
    from giftlab.rl.evaluate import evaluate
    from giftlab.rl.loop import load_task_records

    tok = load_tokenizer(args.model)
    tok.padding_side = "left"
    recs = load_task_records(args.data, limit=args.limit or None)
    m = evaluate(load_model(args.model), load_model(args.base), tok, recs, n_samples=args.n,
                 max_new_tokens=args.max_new_tokens, temperature=args.temperature, seed=args.seed)  # fmt: skip
    if args.out:
        from pathlib import Path

        Path(args.out).write_text(json.dumps(m, indent=2))
    if args.json:
        print(json.dumps(m, indent=2))
        return 0
    ks = [k for k in (1, 2, 4, 8, 16, 32, 64) if k <= args.n]
    print(f"{m['n_problems']} problems x {m['n_samples']} samples ({args.model})")
    print(
        _format_table(
            [{"k": k, "pass": m["pass_at_k"][k]} for k in ks],
            [("k", "k", ""), ("pass", "pass@k", ".3f")],
        )
    )
    for key in ("mean_at_k", "maj_at_n", "distinct_correct", "sample_entropy", "kl_to_base_per_token",
                "verifier_errors", "empty_completions", "generation_tokens_per_s"):  # fmt: skip
        print(f"{key:26s} {m[key]:.4g}")
    return 0


def add_pipeline_parser(sub) -> None:
    p = sub.add_parser(
        "pipeline",
        help="base -> {SFT, GIFT, ...} -> the same GRPO -> eval, over seeds",
        description="Runs the two-stage comparison on the CPU with SmolLM2 on countdown (about 46 minutes with "
        "defaults) and writes OUT/report.md, OUT/pipeline.png and OUT/results.json. KEY=VALUE overrides: "
        "out_dir, task, n_train, n_val, inits (e.g. sft,gift:5,gift:20,dft), seeds (e.g. 0,1,2), sft_steps, "
        "sft_batch, sft_lr, rl_steps, rl_prompts, group_size, rl_lr, eval_samples, max_new_tokens, model.",
    )  # fmt: skip
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    p.set_defaults(func=run_pipeline_cmd)


def run_pipeline_cmd(args) -> int:
    import dataclasses

    from giftlab.rl.pipeline import PipelineConfig, run_pipeline

    cfg = PipelineConfig()
    fields = {f.name: f for f in dataclasses.fields(cfg)}
    for item in args.overrides:
        key, sep, raw = item.partition("=")
        if not sep or key not in fields:
            raise ValueError(f"override {item!r}: expected KEY=VALUE with KEY in {sorted(fields)}")
        current = getattr(cfg, key)
        if isinstance(current, list):
            value = [type(current[0])(x) if current else x for x in raw.split(",")]
        else:
            value = type(current)(raw)
        setattr(cfg, key, value)
    print(f"wrote {run_pipeline(cfg)}")
    return 0


def add_figures_parsers(sub) -> None:
    p = sub.add_parser(
        "figures",
        help="regenerate every figure (scripts/fig*.py) with its CSV",
        description="Run every scripts/fig*.py; each writes NAME.csv (with provenance) and NAME.png.",
    )
    p.add_argument("--out", default="paper_figures", help="output folder (default paper_figures)")
    p.add_argument(
        "--quick", action="store_true", help="small versions of every figure (seconds; for tests)"
    )
    p.set_defaults(func=run_figures)
    d = sub.add_parser(
        "demo",
        help="the main job: exact figures and a markdown report",
        description="Regenerate the exact figures and write OUT/report.md with them and the solver report.",
    )
    d.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    d.add_argument("--quick", action="store_true", help="small figures (seconds)")
    d.set_defaults(func=run_demo_cmd)


def run_figures(args) -> int:
    from pathlib import Path

    from giftlab.figures import regenerate

    regenerate(Path(args.out), quick=args.quick)
    return 0


def run_demo_cmd(args) -> int:
    from pathlib import Path

    from giftlab.reports.demo import run_demo

    run_demo(Path(args.out), quick=args.quick)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="giftlab",
        description="GIFT: exact theory, token objectives and a compact trainer.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    add_solve_parser(sub)
    add_data_parser(sub)
    add_train_parser(sub)
    add_figures_parsers(sub)
    add_rl_parsers(sub)
    add_pipeline_parser(sub)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"giftlab {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
