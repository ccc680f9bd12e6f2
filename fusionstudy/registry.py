"""Model identity: one typed, torch-free registry of every model a study can name.

A model's kind, modalities, fusion and the part of the protocol that trains it are fields here;
no code reads them out of the name. ``FUSION_NAMES`` is the one list of fusion strategies: the
config validates against it at load, and :mod:`fusionstudy.models.fusion` registers exactly one
class per name (checked at import). A training regime (plain, ModDrop, weakened) is not part of
a model's identity: it is the record's ``training`` field (:class:`fusionstudy.records.Training`).
"""
from __future__ import annotations

from dataclasses import dataclass

MODALITIES = ("tabular", "text")  # sorted: the order every per-modality dict is iterated in
KINDS = ("unimodal", "fusion", "ensemble", "reference")
# The fusion strategies (Parts 2 and 4), in the order the reports list them.
FUSION_NAMES = ("early_concat", "late_logit_avg", "late_learned", "gmu", "attention", "tfn", "lmf")
# the late fusions combine the two modalities' logits (``produces_logits``): additive by construction
LATE_FUSIONS = ("late_logit_avg", "late_learned")
# Training regimes against a dominant modality (Part 5 remedies, ``training.remedies``): a run's
# ``training.remedy``, never part of the fusion's identity.
REMEDY_NAMES = ("ogm_ge", "gblend", "mla")


@dataclass(frozen=True)
class ModelSpec:
    """What a model *is*.

    Attributes
    ----------
    name : the name in configs, records and reports.
    kind : one of :data:`KINDS`.
    modalities : the modalities it reads; ``None`` = every modality of the dataset (fusions).
    fusion : the fusion strategy of a trained model (unimodal models use ``early_concat``'s
        head on one encoder); ``None`` for references and post-hoc ensembles.
    part : the protocol part that trains it when plainly trained (``part1``, ``part2``, ``part4``,
        ``reference``).
    """

    name: str
    kind: str
    modalities: tuple[str, ...] | None
    fusion: str | None
    part: str

    def reads(self, available: tuple[str, ...]) -> tuple[str, ...]:
        """The modalities it reads from a dataset that has ``available``, sorted."""
        return tuple(sorted(available)) if self.modalities is None else self.modalities


def _registry() -> dict[str, ModelSpec]:
    specs = [ModelSpec(f"{m}_only", "unimodal", (m,), "early_concat", "part1") for m in MODALITIES]
    specs += [ModelSpec(f, "fusion", None, f, "part2" if f in ("early_concat", "late_logit_avg") else "part4")
              for f in FUSION_NAMES]
    specs.append(ModelSpec("late_ensemble", "ensemble", None, None, "part2"))
    specs += [ModelSpec(n, "reference", mods, None, "reference") for n, mods in (
        ("ref_tfidf_logreg", ("text",)), ("ref_hist_gbdt", ("tabular",)), ("ref_early_logreg", None),
        ("ref_late_avg", None), ("ref_stack_gbdt", None))]
    return {s.name: s for s in specs}


MODELS: dict[str, ModelSpec] = _registry()
UNIMODAL_NAMES = tuple(n for n, s in MODELS.items() if s.kind == "unimodal")
TRAINABLE_NAMES = UNIMODAL_NAMES + FUSION_NAMES  # what ``study.models`` may list


def model_spec(name: str) -> ModelSpec:
    """The registry entry of ``name``.

    Raises
    ------
    ValueError
        If no model has that name (listing the trainable ones).
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; use one of {list(TRAINABLE_NAMES)}")
    return MODELS[name]
