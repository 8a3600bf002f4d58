"""Every bad input through the `giftlab` CLI ends as exit code 2 and one line on stderr that names
what was wrong (the key, the file and line, or the path) and what is allowed; never a traceback."""

import json

import pytest
import torch

from giftlab.cli import main
from giftlab.models import tiny_llama, tiny_tokenizer
from tests.helpers import save_tiny_model


def _jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A tiny model folder, good and bad data files, and two finished runs to misuse."""
    d = tmp_path_factory.mktemp("cli")
    tok = tiny_tokenizer()
    for name, vocab in (("model", len(tok)), ("big_vocab", 200)):
        save_tiny_model(d / name, vocab=vocab)
    odd = tiny_llama(len(tok))  # a config key Llama's forward never applies: an unknown head
    odd.config.logit_scale = 3.0
    odd.save_pretrained(d / "odd_head")
    tok.save_pretrained(d / "odd_head")
    (d / "no_weights").mkdir()
    tiny_llama(len(tok)).config.save_pretrained(d / "no_weights")
    tok.save_pretrained(d / "no_weights")
    rows = [{"prompt": f"add {a} {b}", "response": str(a + b)} for a in range(4) for b in range(4)]
    _jsonl(d / "train.jsonl", rows)
    _jsonl(d / "bad_json.jsonl", [rows[0], '{"prompt": "x", "response": '])
    _jsonl(d / "msg_strings.jsonl", [{"messages": ["hi", "there"]}])
    _jsonl(d / "prompt_null.jsonl", [{"prompt": None, "response": "1"}])
    _jsonl(
        d / "no_content.jsonl",
        [{"messages": [{"role": "user"}, {"role": "assistant", "content": "1"}]}],
    )
    _jsonl(d / "bad_role.jsonl", [{"messages": [{"role": "robot", "content": "x"}]}])
    (d / "latin1.jsonl").write_bytes(b'{"prompt": "caf\xe9", "response": "1"}\n')
    math = [{"task": "math", "prompt": f"What is {a}+{a}?", "answer": str(2 * a)} for a in range(4)]
    _jsonl(d / "math.jsonl", math)
    _jsonl(d / "math_no_answer.jsonl", [{"task": "math", "prompt": "1+1?"}])
    _jsonl(
        d / "unknown_task.jsonl",
        [{"prompt": "x", "task": "nope", "index": 0, "seed": 0, "config": {}}] * 4,
    )
    (d / "malformed.yaml").write_text("max_steps: 3\nlr: [1, 2\n")
    (d / "list.yaml").write_text("- lr\n- 3\n")
    (d / "bad_value.yaml").write_text("max_steps: 3\nlr: -1\n")
    (d / "unknown_key.yaml").write_text("max_steps: 3\nbta: 2\n")
    (d / "a_file").write_text("not a folder")
    _jsonl(
        d / "two_assistant.jsonl",
        [
            {
                "messages": [
                    {"role": "user", "content": "q"},
                    {"role": "assistant", "content": "a"},
                    {"role": "assistant", "content": "b"},
                ]
            }
        ],
    )
    (d / "dup_key.yaml").write_text("max_steps: 3\nlr: 0.1\nmax_steps: 4\n")
    _jsonl(d / "train2.jsonl", rows)
    (d / "pipe_bad").mkdir()
    from giftlab.pipeline import PipelineConfig

    typed_wrong = PipelineConfig().to_dict() | {"n_val": "many"}
    (d / "pipe_bad" / "results.json").write_text(
        json.dumps({"config": typed_wrong, "results": [], "minutes": 1})
    )
    common = _train_args(d)
    cache = [f"model={d / 'model'}", f"train_file={d / 'train.jsonl'}", "val_file=", "top_k=4"]
    assert (
        main(["ref-cache", *cache, "max_length=64", f"out_dir={d / 'cache'}", "progress=false"])
        == 0
    )
    (d / "own_files").mkdir()
    (d / "own_files" / "notes.txt").write_text("mine")
    assert main(["train", *common, f"out_dir={d / 'done'}", "save_every=1"]) == 0
    assert main(["train", *common, f"out_dir={d / 'corrupt'}", "save_every=0"]) == 0
    for ckpt in (d / "corrupt").glob("ckpt-*"):
        (ckpt / "trainer_state.pt").write_bytes(b"not a pickle")
    return d


def _train_args(d):
    return [
        f"model={d / 'model'}",
        f"train_file={d / 'train.jsonl'}",
        "val_file=",
        "max_steps=2",
        "batch_size=2",
        "progress=false",
        "diag_every=0",
        "save_final=false",
        "max_length=64",
    ]


def _train(*extra):
    return lambda d: ["train", *_train_args(d), f"out_dir={d / 'fresh'}", *extra]


def _rl(*extra):
    return lambda d: [
        "rl",
        f"model={d / 'model'}",
        f"ref_model={d / 'model'}",
        f"train_file={d / 'math.jsonl'}",
        f"out_dir={d / 'rl_fresh'}",
        "max_steps=1",
        "prompts_per_step=2",
        "group_size=2",
        "max_new_tokens=2",
        "progress=false",
        "save_final=false",
        *extra,
    ]


def _eval(*extra):
    return lambda d: [
        "eval",
        f"model={d / 'model'}",
        f"ref_model={d / 'model'}",
        f"data={d / 'math.jsonl'}",
        "samples=2",
        "limit=1",
        "max_new_tokens=2",
        *extra,
    ]


def _pipeline(*extra):
    return lambda d: ["pipeline", f"out_dir={d / 'pipe'}", f"model={d / 'model'}", *extra]


CASES = [
    # config values: the key and the allowed range
    ("log_every=0", _train("log_every=0"), r"log_every must be >= 1, got 0"),
    ("lr=inf", _train("lr=inf"), r"lr must be a finite number > 0, got inf"),
    ("lr=nan", _train("lr=nan"), r"lr must be a finite number > 0, got nan"),
    ("lr=0", _train("lr=0"), r"lr must be a finite number > 0, got 0"),
    ("clip_grad=nan", _train("clip_grad=nan"), r"clip_grad must be a finite number >= 0"),
    ("clip_grad<0", _train("clip_grad=-1"), r"clip_grad must be a finite number >= 0"),
    ("save_every<0", _train("save_every=-1"), r"save_every must be >= 1, or 0"),
    ("eval_every<0", _train("eval_every=-2"), r"eval_every must be >= 1, or 0"),
    ("diag_every<0", _train("diag_every=-1"), r"diag_every must be >= 1, or 0"),
    ("beta<0", _train("beta=-1"), r"beta must be in \[0, 1e30\] or inf"),
    ("beta=1e39", _train("beta=1e39"), r"beta must be in \[0, 1e30\] or inf .*got 1e\+39"),
    ("smoothing>1", _train("smoothing=2"), r"smoothing must be in \[0, 1\]"),
    ("objective", _train("objective=rlhf"), r"objective must be one of \["),
    (
        "report_to",
        _train("report_to=comet"),
        r"report_to must be one of \['none', 'tensorboard', 'wandb', 'mlflow'\], got 'comet'",
    ),
    ("unknown key", _train("bta=3"), r"unknown key 'bta'"),
    ("int type", _train("max_steps=abc"), r"max_steps: expected int, got 'abc'"),
    ("bool type", _train("chunked=maybe"), r"chunked: expected true or false"),
    ("no equals", _train("lr"), r"override 'lr' must look like key=value"),
    ("lora+ref", _train("lora_rank=2", "ref_model=x"), r"ref_model must be empty with lora_rank"),
    # YAML: the file and the line
    (
        "yaml missing",
        lambda d: ["train", "--config", str(d / "nope.yaml")],
        r"nope.yaml: no such file",
    ),
    (
        "yaml malformed",
        lambda d: ["train", "--config", str(d / "malformed.yaml")],
        r"malformed.yaml:\d+: malformed YAML",
    ),
    (
        "yaml not a mapping",
        lambda d: ["train", "--config", str(d / "list.yaml")],
        r"list.yaml: a config must be a mapping",
    ),
    (
        "yaml bad value",
        lambda d: ["train", "--config", str(d / "bad_value.yaml")],
        r"bad_value.yaml:2: lr must be a finite number > 0, got -1",
    ),
    (
        "yaml unknown key",
        lambda d: ["train", "--config", str(d / "unknown_key.yaml")],
        r"unknown_key.yaml:2: unknown key\(s\) \['bta'\]",
    ),
    # data: the file and the line
    (
        "data missing",
        _train("train_file=/nonexistent/t.jsonl"),
        r"/nonexistent/t.jsonl does not exist",
    ),
    ("data is a folder", lambda d: _train(f"train_file={d}")(d), r"is a folder"),
    (
        "malformed JSON",
        lambda d: _train(f"train_file={d / 'bad_json.jsonl'}")(d),
        r"bad_json.jsonl:2: malformed JSON",
    ),
    (
        "messages of strings",
        lambda d: _train(f"train_file={d / 'msg_strings.jsonl'}")(d),
        r"msg_strings.jsonl:1: messages\[0\] must be an object",
    ),
    (
        "prompt null",
        lambda d: _train(f"train_file={d / 'prompt_null.jsonl'}")(d),
        r"prompt_null.jsonl:1: 'prompt' must be non-empty text, got None",
    ),
    (
        "message without content",
        lambda d: _train(f"train_file={d / 'no_content.jsonl'}")(d),
        r"no_content.jsonl:1: messages\[0\] \(user\) has no text content",
    ),
    (
        "message role",
        lambda d: _train(f"train_file={d / 'bad_role.jsonl'}")(d),
        r"bad_role.jsonl:1: messages\[0\].role must be one of",
    ),
    (
        "not UTF-8",
        lambda d: _train(f"train_file={d / 'latin1.jsonl'}")(d),
        r"latin1.jsonl:1: not UTF-8 text",
    ),
    ("batch > data", _train("batch_size=64"), r"16 examples cannot fill one global batch of 64"),
    # run folders and models: the path
    (
        "out_dir is a file",
        lambda d: _train(f"out_dir={d / 'a_file'}")(d),
        r"a_file is a file, not a folder",
    ),
    (
        "out_dir under a file",
        lambda d: _train(f"out_dir={d / 'a_file' / 'run'}")(d),
        r"a_file/run: cannot write there",
    ),
    (
        "out_dir holds a run",
        lambda d: _train(f"out_dir={d / 'done'}")(d),
        r"done already holds a run .*--resume.*overwrite=true",
    ),
    (
        "resume, batch changed",
        lambda d: _train(f"out_dir={d / 'done'}", "batch_size=4")(d) + ["--resume"],
        r"--resume: the run in .*done was started with other settings \(batch_size 2 -> 4\)",
    ),
    (
        "resume, model changed",
        lambda d: _train(f"out_dir={d / 'done'}", f"model={d / 'big_vocab'}")(d) + ["--resume"],
        r"--resume: .*started with other settings \(model '.*model' -> '.*big_vocab'\)",
    ),
    (
        "resume, corrupt state",
        lambda d: _train(f"out_dir={d / 'corrupt'}", "max_steps=3")(d) + ["--resume"],
        r"none of the checkpoints in .*corrupt loads \(ckpt-000002\)",
    ),
    (
        "model missing",
        _train("model=/nonexistent/model"),
        r"model=/nonexistent/model: no such folder",
    ),
    (
        "model without weights",
        lambda d: _train(f"model={d / 'no_weights'}")(d),
        r"no_weights has a config.json but no weights",
    ),
    (
        "ref vocabulary",
        lambda d: _train(f"ref_model={d / 'big_vocab'}")(d),
        r"model=.* has a vocabulary of \d+ tokens, ref_model=.*big_vocab one of 200: they must share",
    ),
    (
        "weights blow up",
        _train("lr=1e30", "max_steps=4", "clip_grad=0"),
        r"step \d: .*(NaN or infinite|the loss is (nan|inf)).*Last good checkpoint",
    ),
    # rl
    ("rl lr=inf", _rl("lr=inf"), r"lr must be a finite number > 0, got inf"),
    ("rl temperature<0", _rl("temperature=-1"), r"temperature must be a finite number >= 0"),
    ("rl group_size=1", _rl("group_size=1"), r"group_size must be >= 2, got 1"),
    ("rl kl_estimator", _rl("kl_estimator=k2"), r"kl_estimator must be k1 or k3, got 'k2'"),
    (
        "rl unknown task",
        lambda d: _rl(f"train_file={d / 'unknown_task.jsonl'}")(d),
        r"unknown_task.jsonl:1: unknown task 'nope'",
    ),
    (
        "rl training data",
        lambda d: _rl(f"train_file={d / 'train.jsonl'}")(d),
        r"train.jsonl:1: has no 'task' \(the verifier's name\)",
    ),
    (
        "rl math without answer",
        lambda d: _rl(f"train_file={d / 'math_no_answer.jsonl'}")(d),
        r"math_no_answer.jsonl:1: task 'math' needs the field\(s\) \['answer'\]",
    ),
    (
        "rl vocabulary",
        lambda d: _rl(f"ref_model={d / 'big_vocab'}")(d),
        r"must share one vocabulary",
    ),
    # eval
    ("eval limit -1", _eval("limit=-1"), r"limit must be >= 0 \(0: all\), got -1"),
    (
        "eval temperature -1",
        _eval("temperature=-1"),
        r"temperature must be a finite number >= 0",
    ),
    ("eval samples 0", _eval("samples=0"), r"samples must be >= 1, got 0"),
    (
        "eval ref_model vocabulary",
        lambda d: _eval(f"ref_model={d / 'big_vocab'}")(d),
        r"model=.* has a vocabulary of \d+ tokens, ref_model=.*big_vocab one of 200",
    ),
    (
        "eval unknown task",
        lambda d: _eval(f"data={d / 'unknown_task.jsonl'}")(d),
        r"unknown task 'nope'",
    ),
    # pipeline: every init checked before any work
    (
        "pipeline init typo",
        _pipeline("inits=sft,gfit:5"),
        r"inits: unknown objective 'gfit' in 'gfit:5'",
    ),
    (
        "pipeline init beta",
        _pipeline("inits=gift:abc"),
        r"inits: 'gift:abc': beta must be a number",
    ),
    ("pipeline n_val", _pipeline("n_val=0"), r"n_val must be >= 1, got 0"),
    (
        "pipeline fewshot task",
        _pipeline("task=chain_sum", "prompt_style=fewshot"),
        r"prompt_style=fewshot has solved examples for countdown only, not 'chain_sum'",
    ),
    ("pipeline select", _pipeline("select=last"), r"select must be best or final, got 'last'"),
    (
        "pipeline report of a folder without results",
        lambda d: ["pipeline", "--report", str(d / "nothing")],
        r"nothing/results.json does not exist: give the out_dir of a pipeline run",
    ),
    ("pipeline seeds", _pipeline("seeds=a"), r"seeds: expected int, got 'a'"),
    # issue 16: settings checked before anything is claimed or loaded
    ("kernel", _train("kernel=foo"), r"kernel must be one of \['auto', 'torch', 'triton'\]"),
    (
        "report_to without its package",
        _train("report_to=wandb"),
        r"report_to must be a tracker whose package is installed; wandb needs `pip install wandb`",
    ),
    (
        "train from a cache built with another max_length",
        lambda d: [*_train()(d), f"ref_cache={d / 'cache'}", "max_length=48"],
        r"ref_cache=.*cache was built for another run: max_length differ",
    ),
    (
        "train from a cache folder that is not one",
        lambda d: [*_train()(d), f"ref_cache={d / 'own_files'}"],
        r"ref_cache=.*own_files: no manifest.json \(build it with giftlab ref-cache\)",
    ),
    (
        "ref-cache into a folder of the user's files",
        lambda d: [
            "ref-cache",
            f"model={d / 'model'}",
            f"train_file={d / 'train.jsonl'}",
            "val_file=",
            f"out_dir={d / 'own_files'}",
            "progress=false",
        ],
        r"out_dir=.*own_files holds files and no manifest.json: not a reference cache",
    ),
    (
        "ref-cache top_k=0",
        lambda d: ["ref-cache", f"model={d / 'model'}", "top_k=0"],
        r"top_k must be >= 1, got 0",
    ),
    (
        "ref-cache dtype=int8",
        lambda d: ["ref-cache", f"model={d / 'model'}", "dtype=int8"],
        r"dtype must be one of \['float16', 'bfloat16', 'float32', 'float64'\]",
    ),
    (
        "train a model whose head giftlab cannot reproduce",
        lambda d: ["train", *_train_args(d)[1:], f"model={d / 'odd_head'}", f"out_dir={d / 'oh'}"],
        r"model=.*odd_head: LlamaForCausalLM's head cannot be reproduced .* differ .* by up to",
    ),
    (
        "rl on a model whose head giftlab cannot reproduce",
        lambda d: [*_rl()(d), f"model={d / 'odd_head'}"],
        r"model=.*odd_head: LlamaForCausalLM's head cannot be reproduced",
    ),
    ("rl report_to", _rl("report_to=wandb"), r"wandb needs `pip install wandb`"),
    ("rl max_verifier_failures", _rl("max_verifier_failures=2"), r"must be in \[0, 1\]"),
    (
        "yaml duplicate key",
        lambda d: ["train", "--config", str(d / "dup_key.yaml")],
        r"dup_key.yaml:3: key 'max_steps' appears twice \(first at line 1\)",
    ),
    (
        "two assistant turns",
        lambda d: _train(f"train_file={d / 'two_assistant.jsonl'}")(d),
        r"two_assistant.jsonl:1: messages\[1\] and messages\[2\] are two assistant turns",
    ),
    (
        "run folder as a model",
        lambda d: _eval(f"model={d / 'done'}")(d),
        r"model=.*done is a giftlab run folder, not a model: give one of its model folders",
    ),
    (
        "eval out into a file's folder",
        lambda d: _eval(f"out={d / 'a_file' / 'x.json'}")(d),
        r"out=.*a_file/x.json: cannot make",
    ),
    (
        "resume a finished run",
        lambda d: _train(f"out_dir={d / 'done'}")(d) + ["--resume"],
        r"reached step 2 .*max_steps=2 is finished: nothing to train. .*max_steps > 2",
    ),
    (
        "resume below the checkpoint",
        lambda d: _train(f"out_dir={d / 'done'}", "max_steps=1")(d) + ["--resume"],
        r"reached step 2 .*max_steps=1 is past it",
    ),
    (
        "resume with another lr",
        lambda d: _train(f"out_dir={d / 'done'}", "lr=0.5", "max_steps=3")(d) + ["--resume"],
        r"other settings \(lr 1e-05 -> 0.5\)",
    ),
    (
        "resume with another objective and beta",
        lambda d: (
            _train(f"out_dir={d / 'done'}", "objective=sft", "beta=2", "max_steps=3")(d)
            + ["--resume"]
        ),
        r"objective 'gift' -> 'sft'; beta 5.0 -> 2.0",
    ),
    (
        "resume with another train_file",
        lambda d: (
            _train(f"out_dir={d / 'done'}", f"train_file={d / 'train2.jsonl'}")(d) + ["--resume"]
        ),
        r"other settings \(train_file .*train.jsonl' -> .*train2.jsonl'\)",
    ),
    ("pipeline inits twice", _pipeline("inits=sft,sft"), r"inits: sft is listed twice"),
    ("pipeline inits twice (5 = 5.0)", _pipeline("inits=gift:5,gift:5.0"), r"gift:5 is listed"),
    ("pipeline seeds twice", _pipeline("seeds=0,0"), r"seeds: 0 is listed twice"),
    (
        "pipeline model missing",
        lambda d: ["pipeline", f"out_dir={d / 'pipe_nomodel'}", "model=/nonexistent/m"],
        r"model=/nonexistent/m: no such folder",
    ),
    (
        "pipeline --report with a wrongly typed field",
        lambda d: ["pipeline", "--report", str(d / "pipe_bad")],
        r"pipe_bad/results.json \(config\): n_val must be int, got 'many'",
    ),
    (
        "data --set not a number",
        lambda d: ["data", "--n-train", "2", "--out", str(d / "x"), "--set", "max_numbers=abc"],
        r"--set: countdown refused the settings",
    ),
    (
        "data --set before other options",
        lambda d: ["data", "--set", "max_numbers=abc", "--n-train", "2", "--out", str(d / "x")],
        r"--set: countdown refused the settings",
    ),
    (
        "data --set unknown key",
        lambda d: ["data", "--n-train", "2", "--out", str(d / "x"), "--set", "nosuchkey=3"],
        r"--set nosuchkey: not a setting of countdown; its settings: \[",
    ),
    (
        "data --set out of range",
        lambda d: ["data", "--n-train", "2", "--out", str(d / "x"), "--set", "max_numbers=1"],
        r"max_numbers must be >= min_numbers",
    ),
    # data and solve
    (
        "data --n-train 0",
        lambda d: ["data", "--n-train", "0", "--out", str(d / "x")],
        r"--n-train must be >= 1",
    ),
    (
        "data --out under a file",
        lambda d: ["data", "--n-train", "2", "--n-val", "1", "--out", str(d / "a_file" / "x")],
        r"a_file/x",
    ),
    (
        "solve --smoothing",
        lambda d: ["solve", "--smoothing", "2"],
        r"smoothing must be in \[0, 1\]",
    ),
    # seeds: one rule (what every generator seeded accepts: numpy's [0, 2**32 - 1])
    (
        "train seed<0",
        _train("seed=-1"),
        r"seed must be a whole number in \[0, 4294967295\], got -1",
    ),
    (
        "train seed=2**64",
        _train(f"seed={2**64}"),
        r"seed must be a whole number in \[0, 4294967295\]",
    ),
    ("rl seed<0", _rl("seed=-3"), r"seed must be a whole number in \[0, 4294967295\], got -3"),
    ("eval seed<0", _eval("seed=-3"), r"seed must be a whole number in \[0, 4294967295\], got -3"),
    (
        "pipeline seeds<0",
        _pipeline("seeds=0,-1"),
        r"seeds: each a whole number in \[0, 4294967295\], got -1",
    ),
    (
        "solve --seed<0",
        lambda d: ["solve", "--seed", "-1"],
        r"--seed must be a whole number in \[0, 4294967295\], got -1",
    ),
    (
        "data --seed<0",
        lambda d: ["data", "--n-train", "2", "--seed", "-5", "--out", str(d / "x")],
        r"--seed must be a whole number in \[0, 4294967295\], got -5",
    ),
]


@pytest.mark.parametrize("argv, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_exits_2_with_one_line_naming_it(env, capsys, argv, expected):
    import re

    code = main(argv(env))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    last = err[-1]
    assert last.startswith(f"giftlab {argv(env)[0]}: error: "), err
    assert re.search(expected, last), last
    assert "Traceback" not in "\n".join(err)


def test_the_table_covers_at_least_forty_inputs():
    assert len(CASES) >= 40


def test_documented_user_math_format_is_accepted_by_rl(env, capsys):
    """Wrongly rejected before: {"task": "math", "prompt", "answer"} has no response."""
    assert main(_rl()(env)) == 0
    rows = (env / "rl_fresh" / "metrics.jsonl").read_text().splitlines()
    assert json.loads(rows[-1])["step"] == 1


def test_documented_user_math_format_is_accepted_by_eval(env, capsys):
    assert main([*_eval()(env), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_problems"] == 1 and len(out["per_problem_correct"]) == 1


def test_blown_up_weights_leave_no_checkpoint(env, tmp_path, capsys):
    out = tmp_path / "blow"
    argv = [
        "train",
        *_train_args(env),
        f"out_dir={out}",
        "lr=1e30",
        "max_steps=4",
        "clip_grad=0",
        "save_every=1",
    ]
    assert main(argv) == 2
    from giftlab.runtime import read_checkpoint

    for ckpt in out.glob("ckpt-*"):
        weights, _ = read_checkpoint(ckpt)
        assert all(torch.isfinite(w).all() for w in weights.values()), ckpt


def test_a_missing_relative_model_path_is_named_not_taken_for_a_hub_id(env, capsys, monkeypatch):
    """`runs/final` looks like a hub id 'org/name'; with a local `runs/` it is a path."""
    monkeypatch.chdir(env)
    (env / "runs").mkdir(exist_ok=True)
    assert main(["train", *_train_args(env), "model=runs/final", "out_dir=never_claimed"]) == 2
    err = capsys.readouterr().err
    assert "model=runs/final: no such folder" in err and "hub" not in err.split("give")[0]
    assert not (env / "never_claimed").exists()  # nothing claimed


def test_every_bad_key_of_a_config_is_named_at_once(tmp_path, capsys):
    """A config with a wrong type, an unknown key and two values out of range: one line names
    all four, each with its file:line (not only the first one met)."""
    cfg = tmp_path / "many.yaml"
    cfg.write_text("max_steps: 3\nlr: -1\nbta: 2\nbatch_size: many\nwarmup_steps: -4\n")
    assert main(["train", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "settings are not valid" in err
    for part in (
        "many.yaml:3: unknown key(s) ['bta']",
        "many.yaml:4: batch_size must be int, got 'many'",
    ):
        assert part in err, err
    # the rules of the values that could be read: both out-of-range keys, with their lines
    cfg.write_text("max_steps: 3\nlr: -1\nwarmup_steps: -4\n")
    assert main(["train", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "many.yaml:2: lr must be a finite number > 0, got -1" in err
    assert "many.yaml:3: warmup_steps must be >= 0, got -4" in err
