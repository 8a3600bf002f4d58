"""drift_per_problem against the naive formula on full logits, one record at a time."""

import torch

from giftlab.data import read_records
from giftlab.data.tokenize import encode_records
from giftlab.engine import drift_per_problem


def test_drift_per_problem_equals_the_naive_full_logits_formula(tok, model_factory, data_files):
    recs = read_records(data_files[0])[:5]
    policy, base = model_factory(0), model_factory(1)
    got = drift_per_problem(policy, base, tok, recs, top_k=3, batch=2)
    examples, _ = encode_records(recs, tok, 256)
    assert len(got["kl_to_base"]) == len(recs)
    for i, e in enumerate(examples):  # each record alone, no padding, float64 softmax
        ids = torch.tensor([e["input_ids"]])
        with torch.no_grad():
            lp = torch.log_softmax(policy(input_ids=ids).logits[0, :-1].double(), -1)
            lq = torch.log_softmax(base(input_ids=ids).logits[0, :-1].double(), -1)
        resp = torch.tensor(e["labels"][1:]) != -100  # positions that predict a response token
        lp, lq = lp[resp], lq[resp]
        kl = (lp.exp() * (lp - lq)).sum(-1).mean()
        ent = -(lp.exp() * lp).sum(-1).mean()
        top_p, top_q = lp.topk(3, -1).indices, lq.topk(3, -1).indices
        overlap = torch.tensor(
            [len(set(a.tolist()) & set(b.tolist())) / 3 for a, b in zip(top_p, top_q)]
        ).mean()
        assert abs(got["kl_to_base"][i] - float(kl)) < 1e-4 * max(1.0, float(kl))
        assert abs(got["policy_entropy"][i] - float(ent)) < 1e-4 * float(ent)
        assert abs(got["topk_overlap"][i] - float(overlap)) < 1e-9
    assert min(got["kl_to_base"]) > 0  # two different random models: the check is not vacuous
