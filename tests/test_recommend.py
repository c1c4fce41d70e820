"""The recommender on constructed result sets, one per regime of the field's guidance."""
from __future__ import annotations

import numpy as np

from advisor.economics import StrategyCosts
from advisor.recommend import Row, recommend
from advisor.stats import paired_compare
from advisor.task import EconomicsSpec

FAMILY = {"few-shot": ("prompting", 1), "rag": ("rag", 3), "lora": ("finetune", 5), "lora+rag": ("finetune+rag", 6)}


def build(scores: dict[str, list[float]], prompt_tokens: dict[str, float], train_seconds=300.0):
    rows, comps = [], {}
    for name, s in scores.items():
        fam, cx = FAMILY[name]
        costs = StrategyCosts(name, prompt_tokens[name], 40, train_seconds if fam.startswith("finetune") else 0.0,
                              5.0 if "rag" in fam else 0.0, fam == "finetune", float(np.mean(s)), family=fam)
        rows.append(Row(name, fam, cx, float(np.mean(s)), 0, 1, costs))
    names = list(scores)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            comps[(a, b)] = paired_compare(a, scores[a], b, scores[b]).as_dict()
    return rows, comps


def spec(**kw):
    base = dict(requests_per_day=3000, horizon_days=365, input_price_per_mtok=0.5, output_price_per_mtok=1.5,
                hardware_price_per_hour=2.0, knowledge_changes_per_month=0)
    base.update(kw)
    return EconomicsSpec(**base)


rng = np.random.default_rng(0)


def draws(p, n=60):
    return list((rng.random(n) < p).astype(float))


def test_changing_knowledge_goes_to_rag():
    rows, comps = build({"few-shot": draws(0.15), "rag": draws(0.8), "lora": draws(0.2)},
                        {"few-shot": 800, "rag": 950, "lora": 60})
    rec = recommend(rows, comps, spec(knowledge_changes_per_month=4), n_train=150)
    assert rec["strategy"] == "rag"
    assert any("retrains a year" in r for r in rec["reasons"])


def test_style_at_high_volume_goes_to_finetune():
    same = draws(0.9)
    rows, comps = build({"few-shot": draws(0.3), "lora": same},
                        {"few-shot": 800, "lora": 60})
    rec = recommend(rows, comps, spec(requests_per_day=5000), n_train=500)
    assert rec["strategy"] == "lora"
    assert any("cheaper" in r for r in rec["reasons"])


def test_tie_at_high_volume_goes_to_cheaper_finetune():
    base = draws(0.7)
    rows, comps = build({"few-shot": base, "lora": list(base)}, {"few-shot": 800, "lora": 60})
    assert recommend(rows, comps, spec(requests_per_day=5000), n_train=500)["strategy"] == "lora"


def test_low_volume_simple_task_stays_prompting():
    base = draws(0.85)
    rows, comps = build({"few-shot": base, "lora": list(base)}, {"few-shot": 300, "lora": 60}, train_seconds=3600 * 5)
    rec = recommend(rows, comps, spec(requests_per_day=100), n_train=200)
    assert rec["strategy"] == "few-shot"
    # ... and the report says at which volume that flips.
    flips = [f for f in rec["sensitivity"] if f["field"] == "requests_per_day"]
    assert flips and flips[0]["to"] == "lora"


def test_statistical_tie_goes_to_the_simpler():
    a = draws(0.6)
    b = list(a)
    b[0], b[1] = 1 - b[0], 1 - b[1]  # nearly identical: no significant difference
    rows, comps = build({"few-shot": a, "rag": b}, {"few-shot": 800, "rag": 810})
    assert recommend(rows, comps, spec(), n_train=100)["strategy"] == "few-shot"


def test_combination_only_when_measurably_better():
    rag = draws(0.6)
    better = draws(0.95)
    rows, comps = build({"few-shot": draws(0.1), "rag": rag, "lora+rag": better},
                        {"few-shot": 800, "rag": 950, "lora+rag": 250})
    assert recommend(rows, comps, spec(knowledge_changes_per_month=4), n_train=300)["strategy"] == "lora+rag"


def test_cautions_name_what_argues_against_the_verdict():
    """A fine-tune that wins overall but cannot answer a tag, with knowledge that changes, is flagged."""
    rows, comps = build({"few-shot": draws(0.2), "rag": draws(0.5), "lora": draws(0.9)},
                        {"few-shot": 800, "rag": 950, "lora": 60})
    for r in rows:
        r.by_tag = {"knowledge": {"few-shot": 0.0, "rag": 0.8, "lora": 0.1}[r.name]}
    rec = recommend(rows, comps, spec(knowledge_changes_per_month=4), n_train=300)
    assert rec["strategy"] == "lora"
    assert any("retrains over the horizon" in c for c in rec["cautions"])
    assert any("`knowledge`" in c and "rag" in c for c in rec["cautions"])
    assert not any(r.startswith("Caution") for r in rec["reasons"])


def test_owning_a_fine_tune_decides_a_tie_at_low_volume():
    """Equal quality, 100 requests/day: cents of tokens saved never repay the people and hosting cost of an adapter."""
    from advisor.task import OwnershipSpec

    same = draws(0.65)
    rows, comps = build({"few-shot": same, "lora": same}, {"few-shot": 120, "lora": 30}, train_seconds=60)
    low = dict(requests_per_day=100)
    assert recommend(rows, comps, spec(**low), n_train=110)["strategy"] == "lora"  # compute alone: lora is cheaper
    owned = {"ownership": {"finetune": OwnershipSpec(setup_usd=400, monthly_usd=50)}}
    rec = recommend(rows, comps, spec(**low, **owned), n_train=110)
    assert rec["strategy"] == "few-shot"
    # ...until the volume is large enough for the saved tokens to pay for it.
    flip = [f for f in rec["sensitivity"] if f["field"] == "requests_per_day"]
    assert flip and flip[0]["to"] == "lora" and flip[0]["between"][0] > 100
