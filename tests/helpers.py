"""Small helpers shared by the tests: data files, tiny model folders, a trainer config."""

import json


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def save_tiny_model(folder, seed: int = 0, vocab: int | None = None):
    """A tiny random Llama and the tests' tokenizer saved as a loadable checkpoint folder."""
    from giftlab.models import tiny_llama, tiny_tokenizer

    tok = tiny_tokenizer()
    tiny_llama(vocab or len(tok), seed=seed).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def train_config(tmp_path, train_file, val_file="", **kw):
    """The trainer tests' TrainConfig: a tiny model given to train(), a few fast steps, no
    progress bar and no model folders; `kw` overrides any key."""
    from giftlab.train import TrainConfig

    base = dict(
        model="tiny",
        train_file=str(train_file),
        val_file=str(val_file),
        out_dir=str(tmp_path / "run"),
        max_steps=4,
        batch_size=4,
        lr=1e-2,
        diag_every=0,
        max_length=64,
        progress=False,
        save_final=False,
        beta=5.0,
    )
    return TrainConfig(**(base | kw))


def tiny_pipeline_config(tmp_path, **kw):
    """A pipeline on the tiny model saved in tmp_path/tiny: a few steps and samples of each
    stage (seconds on a CPU); `kw` overrides any key."""
    from giftlab.pipeline import PipelineConfig

    save_tiny_model(tmp_path / "tiny")
    base = dict(
        out_dir=str(tmp_path / "p"),
        n_train=8,
        n_val=2,
        sft_steps=2,
        sft_batch=2,
        rl_steps=2,
        rl_prompts=2,
        group_size=2,
        eval_samples=2,
        max_new_tokens=4,
        model=str(tmp_path / "tiny"),
    )
    return PipelineConfig(**(base | kw))


def exact_variant_module(folder, monkeypatch, module: str) -> str:
    """Write `module`.py into `folder` with `target`, the exact sequence-consistent GIFT target,
    make it importable from there (and the working folder), and return its MODULE:FUNCTION spec.
    Give each test a module name of its own: sys.modules is shared by the whole run."""
    (folder / f"{module}.py").write_text(
        "from giftlab.theory.gift import sequence_consistent_gift_target\n"
        "def target(base, tokens, eta):\n"
        "    return sequence_consistent_gift_target(base, tokens, eta)\n"
    )
    monkeypatch.chdir(folder)
    monkeypatch.syspath_prepend(str(folder))
    return f"{module}:target"
