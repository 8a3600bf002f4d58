"""A user's variant in one file, trained from the command line: `objective=MODULE:FUNCTION`.

Held to independent computations: the chunked variant loss and its gradients against the naive
cross-entropy to the target (float64); a run of the variant written as GIFT's target against a run
of the built-in `gift` (tested elsewhere against the naive GIFT formula), loss and held-out
statistics step for step; the half-mix's gate against its definition (w = 1/2 exactly)."""

import json

import numpy as np
import pytest
import torch

from giftlab.cli import main
from giftlab.flatconfig import ConfigError
from giftlab.losses import OBJECTIVES
from giftlab.losses.variant import VARIANT_PATHS, fused_linear_target_loss, register_variant
from giftlab.pipeline import PipelineConfig, cell_name, init_display
from giftlab.pipeline.config import _init_args
from giftlab.train import TrainConfig
from tests.test_cli_errors import _train_args
from tests.test_cli_errors import env as env  # noqa: F401 - the shared fixture

USER_FILE = """
import numpy as np
from giftlab.variants import log, onehot, softmax


def gift_like(base, tokens, eta):  # the paper's GIFT target, for numpy and torch alike
    return softmax(log(base) + eta * onehot(base, tokens))


def half_mix(base, tokens, eta):
    return 0.5 * base + 0.5 * onehot(base, tokens)


def numpy_only(base, tokens, eta):  # np.eye indexing: no torch form
    return 0.5 * base + 0.5 * np.eye(base.shape[1])[np.asarray(tokens)]


def not_a_distribution(base, tokens, eta):
    return base + onehot(base, tokens)


def with_companion(base, tokens, eta):
    return 0.25 * base + 0.75 * np.eye(base.shape[1])[tokens]


def with_companion_torch(base, tokens, eta):
    import torch

    return 0.25 * base + 0.75 * torch.nn.functional.one_hot(tokens, base.shape[1]).to(base.dtype)
"""


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """`uservariants.py` in the current folder, as a user keeps it beside the run."""
    import sys

    (tmp_path / "uservariants.py").write_text(USER_FILE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("uservariants", None)  # this test's file, not an earlier test's
    yield "uservariants"
    sys.modules.pop("uservariants", None)
    for spec in [k for k in OBJECTIVES if k.startswith("uservariants:")]:
        OBJECTIVES.pop(spec)
        VARIANT_PATHS.pop(spec, None)


def _metrics(folder):
    return [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]


def test_the_chunked_variant_loss_and_gradients_equal_the_naive_cross_entropy(user_module):
    import uservariants

    obj, message = register_variant("uservariants:half_mix")
    assert "chunked path" in message and obj.fused is not None
    gen = torch.Generator().manual_seed(0)
    h = torch.randn(13, 8, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(11, 8, generator=gen, dtype=torch.float64, requires_grad=True)
    rh = torch.randn(13, 8, generator=gen, dtype=torch.float64)
    rw = torch.randn(11, 8, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 11, (13,), generator=gen)
    y[[2, 7]] = -100
    loss = obj.fused(h, w, y, ref_hidden=rh, ref_weight=rw, beta=3.0, chunk_size=4)
    loss.backward()
    # naive: q from the numpy target on the reference's probabilities, CE over valid rows
    keep = (y != -100).numpy()
    base = torch.softmax(rh @ rw.T, -1).numpy()[keep]
    q = uservariants.half_mix(base, y.numpy()[keep], 3.0)
    h2, w2 = h.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    logp = torch.log_softmax(h2 @ w2.T, -1)[torch.as_tensor(keep)]
    want = -(torch.as_tensor(q) * logp).sum(-1).mean()
    want.backward()
    assert torch.allclose(loss, want, rtol=1e-12)
    assert torch.allclose(h.grad, h2.grad, rtol=1e-10, atol=1e-14)
    assert torch.allclose(w.grad, w2.grad, rtol=1e-10, atol=1e-14)
    # the dense torch form, the same number
    dense = obj.loss(h.detach() @ w.detach().T, rh @ rw.T, y, beta=3.0)
    assert torch.allclose(dense, want.detach(), rtol=1e-12)


def test_each_kind_of_variant_finds_its_path(user_module):
    assert "chunked" in register_variant("uservariants:gift_like")[1]
    assert "chunked" in register_variant("uservariants:with_companion")[1]
    _, message = register_variant("uservariants:numpy_only")
    assert "numpy target on the host" in message and "numpy_only_torch" in message
    assert OBJECTIVES["uservariants:numpy_only"].fused is None  # the dense float64 host path
    # the companion, not the numpy function, is what the chunked path runs
    fused = fused_linear_target_loss("x", lambda b, t, e: b)  # q = pi0: a loss of CE(pi0, pi)
    h = torch.randn(3, 4, dtype=torch.float64)
    w = torch.randn(5, 4, dtype=torch.float64)
    y = torch.tensor([0, 1, 2])
    got = fused(h, w, y, ref_hidden=h, ref_weight=w)
    p = torch.softmax(h @ w.T, -1)
    assert torch.allclose(got, -(p * p.log()).sum(-1).mean(), rtol=1e-12)


def test_the_variant_written_as_gift_trains_like_the_built_in_gift(env, user_module, capsys):
    """Same model folder, data, seed and beta: the loss of every step and every held-out
    statistic agree (float32 training: 1e-5 relative; 2e-6 absolute for statistics near 0, such
    as the KL to the base at the first step: a difference of float32 log-probabilities of size
    log V ~ 5 carries ~5 x 1.2e-7 of rounding, which the CPU's vector width changes)."""
    common = [*_train_args(env), f"val_file={env / 'train.jsonl'}", "beta=3", "diag_every=1"]
    runs = {}
    for objective in ("gift", "uservariants:gift_like"):
        out = user_module + "-" + objective.replace(":", "-")
        assert main(["train", *common, f"objective={objective}", f"out_dir={out}"]) == 0
        runs[objective] = _metrics(pytest.importorskip("pathlib").Path(out))
    assert (
        "uservariants:gift_like: a torch target, trained on the chunked path"
        in capsys.readouterr().out
    )
    a, b = runs["gift"], runs["uservariants:gift_like"]
    assert len(a) == len(b) >= 3
    for ra, rb in zip(a, b, strict=True):
        for k in ra:
            if k.startswith(("loss/", "val/", "diag/")) and "topk" not in k:
                np.testing.assert_allclose(rb[k], ra[k], rtol=1e-5, atol=2e-6, err_msg=k)


def test_the_variants_statistics_describe_its_own_target(env, user_module):
    out = "half"
    argv = [*_train_args(env), f"val_file={env / 'train.jsonl'}", "objective=uservariants:half_mix"]
    assert main(["train", *argv, "diag_every=1", f"out_dir={out}"]) == 0
    rows = _metrics(__import__("pathlib").Path(out))
    val = [r for r in rows if "val/gate_w" in r]
    diag = [r for r in rows if "diag/gate_w" in r]
    assert val and diag
    for r in val:  # q = (pi0 + onehot) / 2: the one-hot share is 1/2 at every token
        np.testing.assert_allclose(r["val/gate_w"], 0.5, atol=1e-6)
    for r in diag:
        np.testing.assert_allclose(r["diag/gate_w"], 0.5, atol=1e-6)


def test_the_variant_is_recorded_and_found_again_on_resume(env, user_module):
    argv = ["train", *_train_args(env), "objective=uservariants:half_mix", "beta=2", "out_dir=r"]
    assert main(argv) == 0
    info = json.loads(open("r/config.json").read())
    assert info["config"]["objective"] == "uservariants:half_mix"
    # a new process has no registry: forget the variant, then resume with more steps
    OBJECTIVES.pop("uservariants:half_mix")
    argv = [a if not a.startswith("max_steps") else "max_steps=3" for a in argv]
    assert main([*argv, "save_every=1", "--resume"]) == 0
    assert "uservariants:half_mix" in OBJECTIVES
    assert max(r["step"] for r in _metrics(__import__("pathlib").Path("r"))) == 3


def test_a_variant_that_cannot_be_imported_is_one_line_and_exit_2(env, user_module, capsys):
    for spec, message in (
        ("nosuchmodule:f", "cannot import nosuchmodule"),
        ("uservariants:nothere", "has no 'nothere'"),
        ("uservariants:not_a_distribution", "rows sum to 2, not 1"),
    ):
        capsys.readouterr()
        argv = ["train", *_train_args(env), f"objective={spec}", "out_dir=never"]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0] and "objective" in err[0], err
    with pytest.raises(ConfigError, match="nosuchmodule"):
        TrainConfig(objective="nosuchmodule:f")


def test_pipeline_starts_take_a_variant_with_its_value(user_module):
    assert _init_args("uservariants:half_mix:3") == ("uservariants:half_mix", {"beta": 3.0})
    assert _init_args("uservariants:half_mix") == ("uservariants:half_mix", {})
    assert init_display("uservariants:half_mix:3.0") == "uservariants:half_mix:3"
    PipelineConfig(inits=["sft", "uservariants:half_mix:3"])
    with pytest.raises(ConfigError, match="cannot import nosuch"):
        PipelineConfig(inits=["sft", "nosuch:f:3"])
    # one folder per start x seed, named from the start as displayed
    assert (
        cell_name(init_display("uservariants:half_mix:3.0"), 0) == "uservariants-half_mix-3-seed0"
    )
    assert cell_name("gift:1e-05@k16", 2) == "gift-1e-05-k16-seed2"


def test_one_file_validated_then_trained_from_the_command_line(
    env, user_module, monkeypatch, capsys
):
    """The whole path a user takes: validate the file's variant, train it with the CLI on the
    chunked path, and find the verdict on the model's card (an edited file is not the same
    variant: its card says it was not validated)."""
    from pathlib import Path

    monkeypatch.setenv("GIFTLAB_CACHE", str(Path.cwd() / "cache"))
    spec = "uservariants:half_mix"
    assert main(["validate", spec, "--seeds", "1", "--search", "0", "--out", "v"]) == 1
    argv = ["train", *_train_args(env), f"objective={spec}", "save_final=true", "out_dir=t"]
    assert main(argv) == 0
    assert "trained on the chunked path" in capsys.readouterr().out
    card = Path("t/final/README.md").read_text()
    assert f"Validated against the exact Gibbs policy by `giftlab validate {spec}`" in card
    assert "**FAIL (kl, limit_zero, limit_inf, stationary)**" in card
    assert "- gift-variant" in card and "- sft" not in card
    Path("uservariants.py").write_text(USER_FILE + "\n# edited\n")
    import importlib

    importlib.reload(__import__("uservariants"))
    argv = ["train", *_train_args(env), f"objective={spec}", "save_final=true", "out_dir=t2"]
    assert main(argv) == 0
    assert "Not validated against the exact Gibbs policy" in Path("t2/final/README.md").read_text()


def test_gifttrainer_takes_a_variant_by_name_and_matches_its_gift(user_module, tmp_path):
    """TRL's path: GIFTConfig(objective="MODULE:FUNCTION") registers the variant; written as
    GIFT's target its loss and gradients equal the built-in gift's on the same batch (float64)."""
    pytest.importorskip("trl")
    from tests.helpers import save_tiny_model
    from tests.integrations.test_trl import _trainer

    model_dir = tmp_path / "tiny"
    save_tiny_model(model_dir)
    got = []
    for objective in ("gift", "uservariants:gift_like"):
        tr = _trainer(
            model_dir, tmp_path / objective.replace(":", "-"), objective=objective, smoothing=0.0
        )
        batch = dict(next(iter(tr.get_train_dataloader())))
        loss = tr.compute_loss(tr.model, batch)
        got.append((loss, torch.autograd.grad(loss, list(tr.model.parameters()))))
    torch.testing.assert_close(got[1][0], got[0][0], rtol=1e-10, atol=1e-12)
    for a, b in zip(got[1][1], got[0][1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-12)
