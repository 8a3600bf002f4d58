"""The reference cache on a real model: GIFT (beta 5) on SmolLM2 with few-shot countdown prompts,
trained from the live reference and from caches of its top 16 and top 64 tokens
(configs/ref_cache_check.yaml: `giftlab pipeline rl_steps=0 inits=gift:5,gift:5@k16,gift:5@k64`
at the few-shot SFT-stage sweep's settings), 300 held-out problems x 8 samples each; then each cached run minus the live run on the
same problems and training seeds, with the 95% interval over seeds and problems and the smallest
difference the design resolves.

    python scripts/ref_cache_check.py out_dir=runs/ref_cache_check      # about 60 min here
    python scripts/ref_cache_check.py --table paper_figures/ref_cache_check   # the table only

Writes OUT/results.json, report.md and pipeline.png (the pipeline's) and OUT/cache_check.md.
"""

import json
import sys
from pathlib import Path

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "ref_cache_check.yaml"
KEYS = ["pass@1", "pass@8", "distinct_correct"]


def table(folder: Path) -> str:
    """Each cached run minus the live run. Per training seed: the paired difference over the
    problems with its 95% clustered interval and resolvable difference (the two runs share the
    seed's data order, initialisation and sampling seeds, so the difference is the cache's);
    with two or more seeds also the interval over seeds and problems."""
    from giftlab.results import load_results
    from giftlab.stats import (
        format_paired,
        paired_problem_difference,
        paired_vs_sft,
        per_problem_values,
    )

    data = load_results(folder / "results.json")
    n = data["config"]["eval_samples"]
    rows = [r for r in data["results"] if r["stage"] == "before RL"]
    live = {r["seed"]: r for r in rows if r["init"] == "gift:5"}
    lines = [
        "| run | metric | training seed | cached - live [95% CI over problems] | resolvable | problems |",
        "|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r["init"], r["seed"])):
        if r["init"] in ("gift:5", "base") or r["seed"] not in live:
            continue
        for key in KEYS:
            a = per_problem_values([r], key, n)
            b = per_problem_values([live[r["seed"]]], key, n)
            d = paired_problem_difference(a, b)
            lines.append(
                f"| {r['init']} | {key} | {r['seed']} | {d['mean']:+.4f} "
                f"[{d['low']:+.4f}, {d['high']:+.4f}] | {d['mdd']:.4f} | {len(a)} |"
            )
    two_level = [
        d for d in paired_vs_sft(data["results"], n, KEYS, against="gift:5") if d["n_seeds"] >= 2
    ]
    if two_level:
        lines += ["", "Over training seeds and problems together:", ""]
        lines += [f"- {d['init']} {d['metric']}: {format_paired(d)}" for d in two_level]
    text = "\n".join(lines) + "\n"
    (folder / "cache_check.md").write_text(text)
    return text


def main() -> int:
    if sys.argv[1:2] == ["--table"]:
        print(table(Path(sys.argv[2])))
        return 0
    from giftlab.cli import main as cli

    args = sys.argv[1:]
    rc = cli(["pipeline", "--config", str(CONFIG), *args])
    if rc == 0:
        given = [a.split("=", 1)[1] for a in args if a.startswith("out_dir=")]
        out = Path(given[-1] if given else "paper_figures/ref_cache_check")
        print(table(out))
        print(json.dumps({"wrote": str(out / "cache_check.md")}))
    return rc


if __name__ == "__main__":
    sys.exit(main())
