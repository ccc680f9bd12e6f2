"""Issue 19 item 5: every data-dependent sentence of the postmortem is a computed condition. The
template is rendered for facts that make each condition false (and, for contrast, true); parts of
the context that a sentence does not read are left lenient (``ChainableUndefined``)."""
import jinja2
import pytest

from fusionstudy.report.experiments import environment


def _render(**ctx) -> str:
    env = environment()
    env.undefined = jinja2.ChainableUndefined  # only the facts under test are given
    custom = set(env.filters) - set(jinja2.Environment().filters)
    env.filters.update(diff0=lambda d: "d", f1=lambda v: f"{v:.1f}", diff=lambda d: "d", iv=lambda v: "iv", near=lambda d: "")
    for name in custom | {"diff0", "f1"}:  # a number filter on an absent fact prints "?"
        env.filters[name] = lambda v, *a, _f=env.filters[name]: "?" if isinstance(v, jinja2.Undefined) else _f(v, *a)
    base = {"studies": [{"name": "a", "pooled": None}], "rules": {"margin": 0.005, "history": ""}, "n_classes": 2,
            "datasets": ["bundled:clothing"], "encoder": "bag", "imb_seeds": 3, "q1_pooled": "", "proxies": [],
            "q6": {"n": 0}, "q3": None, "costs": None, "trends": None, "q5": None,
            "q4": {"std_range": [0.5, 2.0], "at_cap": {}}}
    return env.get_template("postmortem.md.j2").render({**base, **ctx})


def _group(hits, constant=5, kappa=0.4, r=0.87, n=10):
    return {"n": n, "studies": 2, "names": ["a", "b"], "hits": hits, "rate": hits / n, "constant": constant,
            "constant_says": "helps", "kappa": kappa, "kappa_iv": (0.1, 0.7), "r": r, "r_iv": (0.5, 0.95),
            "labels_equal": 4, "mae": 0.002, "bias": 0.001, "point_hits": 7, "point_constant": 5}


@pytest.mark.parametrize("hits, says", [(8, "it beats the constant"), (5, "it does not beat the constant"),
                                        (3, "it does not beat the constant")])
def test_q6_says_it_beats_the_constant_only_when_it_does(hits, says):
    from fusionstudy.report.forecast import forecast_text
    text = forecast_text({"n": 20, "brier": 0.2, "held": _group(hits), "design": _group(5)})
    held = text.split("\n")[0]
    assert says in held and (("not" in says) or "does not beat" not in held)


def test_q6_goal_kappa_and_correlation_follow_their_values():
    from fusionstudy.report.forecast import forecast_text
    met = forecast_text({"n": 20, "brier": 0.2, "held": _group(10, r=0.85), "design": _group(2)})
    assert "on the held-out situations: met." in met and "Pearson r of forecast and measured gain 0.85" in met
    missed = forecast_text({"n": 20, "brier": float("nan"), "held": _group(9, r=0.7), "design": {"n": 0}})
    assert "on the held-out situations: not met." in missed and "Brier" not in missed
    assert "No design situation is stored." in missed
    nan = forecast_text({"n": 20, "brier": 0.2, "held": _group(5, kappa=float("nan"), r=float("nan")), "design": _group(5)})
    assert "kappa undefined" in nan and "correlation is undefined" in nan
    assert "Q6 text" in _render(q6={"n": 3}, q6_text="Q6 text")


def test_limits_name_the_datasets_and_encoder_actually_run():
    text = _render(datasets=["bundled:clothing", "bundled:faa_strikes", "bundled:lending_club"],
                   studies=[{"name": n, "pooled": None} for n in ("clothing", "faa", "loans")], encoder="minilm")
    assert "- 3 datasets (3 studies: `clothing`, `faa`, `loans`)." in text and "One dataset" not in text
    assert "Rating" not in text.split("## Limits")[1]
    assert "trained from scratch on CPU." not in text and "frozen pretrained minilm" in text
    assert "- One dataset (1 study: `a`)." in _render() and "Encoders are small and trained from scratch" in _render()


COSTS = {"vs": "text_only", "ece_uni": 0.02, "ece_fused": 0.03, "f1_uni": 0.9, "f1_fused": 0.91, "rec_uni": 0.7,
         "rec_fused": 0.72, "bal_uni": 0.8, "bal_fused": 0.81, "params_uni": 10, "params_fused": 20, "secs_uni": 1.0,
         "secs_fused": 2.0,
         "uni": {"minority_recall_min": 0.6, "minority_recall_max": 0.8, "balanced_accuracy_min": 0.75,
                 "balanced_accuracy_max": 0.85},
         "fused": {"minority_recall_min": 0.71, "minority_recall_max": 0.73, "balanced_accuracy_min": 0.8,
                   "balanced_accuracy_max": 0.82}}


def test_multi_class_costs_have_no_threshold_metrics():
    text = _render(costs={**COSTS, "binary": False}, n_classes=5)
    costs = text.split("Fusion's costs")[1].split("\n")[0]
    assert "minority-class recall 0." not in costs and "F1 0." not in costs and "balanced accuracy 0." not in costs
    assert "multi-class labels: no single decision threshold" in costs and "ECE 0.0200 → 0.0300" in costs
    binary = _render(costs={**COSTS, "binary": True}).split("Fusion's costs")[1].split("\n")[0]
    assert ("F1 0.9000 → 0.9100; minority-class recall 0.7000 (seeds 0.6000–0.8000) → 0.7200 (0.7100–0.7300); "
            "balanced accuracy 0.8000 (0.7500–0.8500) → 0.8100 (0.8000–0.8200)") in binary


def test_majority_class_is_the_most_frequent_class_and_threshold_0_5_only_for_two_classes():
    q3 = {"majority": 0.99, "majority_class": "C", "majority_rate": 0.41, "acc": 0.41, "also_majority": [],
          "conditional": True, "moddrop": None}
    text = _render(q3=q3, n_classes=5)
    assert "to the majority class `C` (the most frequent test class, 0.4100 of test rows; its most probable class;" in text
    assert "threshold 0.5" not in text
    assert "i.e. at threshold 0.5" in _render(q3=q3, n_classes=2)
    assert "majority class" not in _render(q3={**q3, "majority": None}, n_classes=5)


def test_each_limit_is_its_own_bullet():
    limits = _render().split("## Limits of this study")[1]
    assert "\n- Encoders are small" in limits and "splits.- " not in limits


def test_q3_remedy_sentence_follows_the_share_intervals():
    base = {"n": 2, "seeds": 3, "level": "97.5", "margin": 0.005, "raised": [], "lowered": [], "small": [], "nothing": [],
            "unmoved": ["OGM-GE at clean", "MLA at clean"], "verdicts": {"equivalent": 2}, "helps": []}
    none = _render(remedies=base)
    assert "no remedy raises the weak modality's share" in none and "lowered by" not in none
    assert "no measurable change: OGM-GE at clean; MLA at clean" in none and "97.5% intervals" in none
    assert "no remedy makes the fused model measurably better here" in none and "crowd-out" in none
    assert "moved, but by less" not in none and "contributes nothing" not in none
    moved = _render(remedies={**base, "raised": ["G-Blend at clean: up"], "lowered": ["OGM-GE at clean: down"],
                              "small": ["MLA at x: tiny"], "nothing": ["MLA at y (text: z)"], "unmoved": [],
                              "verdicts": {"helps": 1, "equivalent": 1}, "helps": ["early_concat_gblend"]})
    assert "raised by G-Blend at clean: up; lowered by OGM-GE at clean: down" in moved
    assert "by less than the margin in Shapley value: MLA at x: tiny" in moved
    assert "contributes nothing with or without the remedy (Shapley value within ±0.005" in moved
    assert "no remedy raises" not in moved and "measurably better" not in moved and "helps 1, equivalent 1" in moved
    assert "(helps: early_concat_gblend)" in moved and "crowd-out" not in moved and "no measurable change" not in moved
    assert "Does the dominance answer" not in _render(remedies=None)


@pytest.mark.parametrize("emap, says, not_says", [
    ({"n": 500, "models": 3, "additive": ["`late`"], "within": True, "above": [], "widest": "`m` w"},
     "None of the 3 fused models that can model an interaction uses one", "Fused models use"),
    ({"n": 500, "models": 3, "additive": [], "within": False, "above": ["`tfn` +0.1"], "widest": "`tfn` w"},
     "Fused models use cross-modal interaction (EMAP", "None of the"),
    ({"n": 500, "models": 3, "additive": [], "within": False, "above": [], "widest": "`tfn` w"}, "is not settled",
     "None of the")])
def test_q6_emap_sentence_follows_the_intervals(emap, says, not_says):
    pid = {"redundancy": 0.7, "unique_text": 0.0, "unique_tabular": 0.2, "synergy": 0.1, "largest": "redundancy",
           "text_adds": 0.1, "tabular_adds": 0.3}
    text = _render(interaction={"study": "a", "margin": 0.005, "emap": emap, "pid": pid})
    assert says in text and not_says not in text
    assert "70.0% in redundancy" in text and "Text adds 10.0% of that information to the table's predictions and the " \
        "table 30.0% to the text's" in text and "lower bounds" in text
    assert ("`late` add two logit vectors and are additive by construction" in text) == bool(emap["additive"]) == \
        ("None of the" in text)


def test_q6_pid_sentence_names_the_largest_atom():
    pid = {"redundancy": 0.1, "unique_text": 0.0, "unique_tabular": 0.1, "synergy": 0.8, "largest": "synergy",
           "text_adds": 0.8, "tabular_adds": 0.9}
    text = _render(interaction={"study": "a", "margin": 0.005, "emap": None, "pid": pid})
    assert "80.0% in synergy: most of the information lies in the two together" in text and "EMAP" not in text
    assert "What kind of gain" not in _render(interaction=None)
