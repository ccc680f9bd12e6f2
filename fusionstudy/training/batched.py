"""The seeds of one model trained as one stacked model: :func:`make_stack` and :func:`fit_stack`.

Most of a training step's cost here is per-operation overhead (a batch touches a few thousand
table rows; the layers are tiny), so S seeds trained as one model of S members cost little more
than one. Each member's parameters are stacked on a leading dimension (``torch.func``:
``stack_module_state``, ``functional_call``, ``vmap``; Horace He et al., functorch's "model
ensembling"); the text encoder's S n-gram tables are one ``(S * V, d)`` table read by one
``EmbeddingBag`` call (member s's ids shifted by ``s * V``), so a sparse table keeps
``optim.RowAdagrad``'s row updates. Everything a member draws is drawn as :func:`loop.fit` draws
it for that seed: initialisation (``loop.make_model``), batch order and the train probe (a NumPy
generator per seed), and dropout masks (a torch generator per member, started from the global
state ``make_model`` leaves, drawn site by site in the model's call order). AdamW and RowAdagrad
update element by element, so each member equals the individually trained seed up to float
rounding: bit for bit for ``text_only`` here, within ~1e-6 in probability for models whose
batched kernels sum in another order (``tests/test_batched.py`` holds them to 1e-4). Early stopping is per
member: a member that stops keeps its best state (training it further is ignored) while the others
go on. Regimes outside the stack (:func:`stack_blocker`) train one model at a time.

Speed: on the 2-core machine this was built on it is *not* faster, so ``train.batched`` is off by
default. ``fusionstudy bench --stack MODEL`` on the clothing data at the full profile (one thread,
under shared load) measured the stacked path at 1.01x (early_concat, 5 seeds), 0.75x (text_only,
5 seeds) and 0.88x (tabular_only, 3 seeds) the speed of one model at a time, with equal val
ROC-AUC per seed. A step's cost here is arithmetic and memory traffic, not per-operation overhead:
a stacked linear layer (``bmm`` under ``vmap``) costs S single ones (~27 us each at batch 128);
the stacked text table's row updates grow with S and lose cache locality (one ``(S * V, d)``
table); the dropout masks must be drawn per member to equal the per-seed draws.
"""
from __future__ import annotations

import copy
import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from fusionstudy.config import Config
from fusionstudy.data.prepare import Prepared, SplitData, to_inputs
from fusionstudy.metrics import classification_metrics
from fusionstudy.models.multimodal import MultimodalModel
from fusionstudy.models.text import TextEncoder
from fusionstudy.training.loop import DEVICE, FitResult, make_model
from fusionstudy.training.optim import RowAdagrad, coalesce_rows

BAG = "encoders.text.bag.weight"


def stack_blocker(cfg: Config, regime: str, n_modalities: int) -> str | None:
    """Why runs of training ``regime`` cannot be trained as one stack under ``cfg``, or ``None``.

    Modality dropout and Part 5 weakening draw per-seed data (``regime != "plain"``), OGM-GE
    modulates each model's gradients by its own batch statistics, and n-gram dropout is a
    functional dropout the stack does not replay.
    """
    if regime != "plain":
        return f"training regime {regime!r}"
    if cfg.train.ogm_alpha > 0 and n_modalities == 2:
        return "OGM-GE (train.ogm_alpha > 0)"
    if cfg.model.token_dropout > 0 and cfg.text.encoder == "bag":
        return "n-gram dropout (model.token_dropout > 0)"
    return None


def make_stack(modalities: tuple[str, ...], fusion: str, prep: Prepared, cfg: Config,
               seeds: list[int]) -> tuple[list[MultimodalModel], list[torch.Generator]]:
    """One model per seed, each initialised by ``loop.make_model``, and per seed a torch generator
    holding the global random state ``make_model`` leaves: what ``loop.fit`` would draw dropout from."""
    models, gens = [], []
    for seed in seeds:
        models.append(make_model(modalities, fusion, prep, cfg, seed))
        g = torch.Generator()
        g.set_state(torch.get_rng_state())
        gens.append(g)
    return models, gens


class _GivenDropout(nn.Module):
    """Dropout with a given mask: the buffer ``mask`` ``(batch, *features)``, already scaled by
    ``1 / (1 - p)`` and swapped in per call by ``functional_call``; identity in eval mode."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p
        self.register_buffer("mask", torch.empty(0), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.mask if self.training and self.p > 0 else x


class _BagSum(nn.Module):
    """Stands in for a ``TextEncoder`` inside the stack: its input is the bag sum ``(batch, d)``
    computed outside ``vmap``; it applies the encoder's (given) feature dropout."""

    def __init__(self, enc: TextEncoder):
        super().__init__()
        self.drop, self.out_dim = _GivenDropout(enc.drop.p), enc.out_dim

    def forward(self, inputs: tuple[Tensor]) -> Tensor:
        return self.drop(inputs[0])


def _dropout_sites(model: MultimodalModel, inputs: dict) -> list[tuple[str, float, tuple[int, ...]]]:
    """``(module name, p, feature shape)`` of every dropout with ``p > 0`` in the order one
    train-mode forward calls them (the order ``loop.fit`` draws their masks in)."""
    sites, hooks = [], []
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Dropout) and mod.p > 0:
            hooks.append(mod.register_forward_hook(
                lambda m, args, out, name=name: sites.append((name, m.p, tuple(args[0].shape[1:])))))
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            model.train()
            model(inputs)
    finally:
        for h in hooks:
            h.remove()
    assert len({s[0] for s in sites}) == len(sites), f"a dropout module is called twice per forward: {sites}"
    return sites


class Stack:
    """S members of one architecture as stacked parameters (see the module docstring).

    Parameters
    ----------
    models : S models of one architecture (from :func:`make_stack`); their weights are read here
        and written back by :meth:`load_into`.
    sample : model inputs of a few rows (``to_inputs``), to find the dropout sites.
    """

    def __init__(self, models: list[MultimodalModel], sample: dict):
        self.size, self.modalities = len(models), models[0].modalities
        self.sites = _dropout_sites(models[0], sample)
        self.template = copy.deepcopy(models[0])
        for name, p, _ in self.sites:
            parent, _, leaf = name.rpartition(".")
            setattr(self.template.get_submodule(parent), leaf, _GivenDropout(p))
        params, buffers = stack_module_state(models)
        self.bag = None
        enc = models[0].encoders["text"] if "text" in self.modalities else None
        if isinstance(enc, TextEncoder):
            self.template.encoders["text"] = _BagSum(enc)
            w = params.pop(BAG).detach()
            self.vocab = w.shape[1]
            self.bag = nn.EmbeddingBag(self.size * self.vocab, w.shape[2], mode="sum", sparse=enc.bag.sparse)
            self.bag.weight.data = w.reshape(-1, w.shape[2]).clone()
        self.params, self.buffers = params, buffers
        self.template.to("meta")  # its own weights are never read: functional_call swaps in the stack's

    def parameters(self) -> list[Tensor]:
        return list(self.params.values()) + ([self.bag.weight] if self.bag is not None else [])

    def _call(self, state: dict, masks: dict, inputs: dict) -> Tensor:
        return functional_call(self.template, {**state, **masks}, (inputs,))

    def forward(self, inputs: list[dict], masks: dict[str, Tensor]) -> Tensor:
        """Logits ``(S, batch, n_classes)``: member s on ``inputs[s]`` (``to_inputs``; equal batch
        sizes) with dropout masks ``masks[site] (S, batch, ...)`` (train mode) or none (eval)."""
        batched = {}
        for m in self.modalities:
            if m == "text" and self.bag is not None:
                ids, offsets, weights = zip(*(x["text"] for x in inputs))
                starts = np.cumsum([0] + [len(i) for i in ids[:-1]])
                feats = self.bag(torch.cat([i + s * self.vocab for s, i in enumerate(ids)]),
                                 torch.cat([o + int(st) for o, st in zip(offsets, starts)]),
                                 per_sample_weights=torch.cat(weights))
                batched[m] = (feats.view(self.size, -1, feats.shape[1]),)
            else:
                batched[m] = tuple(torch.stack(parts) for parts in zip(*(x[m] for x in inputs)))
        out = vmap(self._call)({**self.params, **self.buffers}, masks, batched)
        self.template.fusion.diagnostics = {}  # batched tensors must not outlive vmap
        return out

    def masks(self, batch: int, gens: list[torch.Generator]) -> dict[str, Tensor]:
        """Dropout masks ``{site.mask: (S, batch, ...)}``, member s's drawn from ``gens[s]`` site by
        site as ``F.dropout`` on CPU draws them (``bernoulli_(1 - p)``, then ``/ (1 - p)``)."""
        per = [[torch.empty(batch, *shape).bernoulli_(1 - p, generator=g).div_(1 - p) for _, p, shape in self.sites]
               for g in gens]
        return {f"{name}.mask": torch.stack([m[j] for m in per]) for j, (name, _, _) in enumerate(self.sites)}

    @torch.no_grad()
    def predict(self, splits: list[SplitData], batch_size: int = 4096) -> list[np.ndarray]:
        """Class probabilities ``(n_samples, n_classes)`` of member s on ``splits[s]`` (equal
        lengths), in eval mode, normalised in float64 as ``loop.predict`` does."""
        self.template.eval()
        out = []
        same = all(s is splits[0] for s in splits)
        for start in range(0, len(splits[0]), batch_size):
            idx = np.arange(start, min(start + batch_size, len(splits[0])))
            inputs = [to_inputs(splits[0], idx)] * self.size if same else [to_inputs(s, idx) for s in splits]
            out.append(torch.softmax(self.forward(inputs, {}), dim=2))
        proba = torch.cat(out, dim=1).double().numpy()
        return [p / p.sum(axis=1, keepdims=True) for p in proba]

    def grad_norms(self) -> dict[str, Tensor]:
        """Per encoder, the L2 norm ``(S,)`` of each member's gradient (``loop._grad_norms``)."""
        out = {}
        for m in self.modalities:
            norms = [torch.linalg.vector_norm(p.grad.flatten(1), dim=1)
                     for name, p in self.params.items() if name.startswith(f"encoders.{m}.") and p.grad is not None]
            if m == "text" and self.bag is not None and self.bag.weight.grad is not None:
                g = self.bag.weight.grad
                if g.is_sparse:
                    sq = g._values().pow(2).sum(dim=1)
                    norms.append(torch.zeros(self.size).index_add_(0, g._indices()[0] // self.vocab, sq).sqrt())
                else:
                    norms.append(torch.linalg.vector_norm(g.view(self.size, -1), dim=1))
            out[m] = torch.linalg.vector_norm(torch.stack(norms), dim=0) if norms else torch.zeros(self.size)
        return out

    def state(self, s: int) -> dict[str, Tensor]:
        """Member ``s``'s weights as its model's ``state_dict`` (copies)."""
        st = {k: v[s].detach().clone() for k, v in {**self.params, **self.buffers}.items()}
        if self.bag is not None:
            st[BAG] = self.bag.weight[s * self.vocab:(s + 1) * self.vocab].detach().clone()
        return st


def _step(stack: Stack, opts: list, scheds: list, loss: Tensor) -> Tensor:
    """One optimisation step of every member on ``loss`` ``(S,)`` (their sum: the members share
    no parameter, so each gets its own gradient); returns each encoder's gradient norms ``(M, S)``."""
    for opt in opts:
        opt.zero_grad(set_to_none=True)
    loss.sum().backward()
    if stack.bag is not None and stack.bag.weight.grad is not None and stack.bag.weight.grad.is_sparse:
        stack.bag.weight.grad = coalesce_rows(stack.bag.weight.grad)
    norms = torch.stack(list(stack.grad_norms().values()))
    for opt, sched in zip(opts, scheds):
        opt.step()
        sched.step()
    return norms


class _Member:
    """One member's early-stopping bookkeeping, as ``loop.fit`` keeps it for one model."""

    def __init__(self, modalities: list[str]):
        self.best, self.best_state, self.best_epoch, self.bad, self.seen = math.inf, None, 0, 0, 0
        self.active, self.diverged, self.stopped_at = True, False, None
        self.curves: dict[str, list[float]] = {k: [] for k in ("epoch", "train_loss", "train_eval_loss", "val_loss",
                                                               "val_roc_auc", "seconds", "train_seconds")}
        self.curves.update({f"grad_norm_{m}": [] for m in modalities})
        self.losses: list[float] = []
        self.norms: list[list[float]] = []


def fit_stack(models: list[MultimodalModel], gens: list[torch.Generator], train: SplitData, val: SplitData,
              cfg, seeds: list[int]) -> list[FitResult]:
    """Train S models of one architecture (:func:`make_stack`) as one stack; each member as
    ``loop.fit(models[s], train, val, cfg, seeds[s])`` trains it alone (same optimisers, schedule,
    batch order, dropout, early stopping on validation log loss, best weights restored into
    ``models[s]``). ``cfg`` is the ``TrainConfig``.

    Timings are shares of the stack's wall time: a member's ``train_seconds`` (and its per-epoch
    ``seconds``) is the stack's wall seconds up to its stop divided by S; ``samples_per_s`` is its
    samples over that share.

    Raises
    ------
    ValueError
        If ``models``, ``gens`` and ``seeds`` differ in length.
    """
    if not len(models) == len(gens) == len(seeds):
        raise ValueError(f"fit_stack needs one generator and one seed per model: {len(models)} models, "
                         f"{len(gens)} generators, {len(seeds)} seeds")
    S, n = len(models), len(train)
    stack = Stack(models, to_inputs(train, np.arange(min(2, n))))
    rngs = [np.random.default_rng(s) for s in seeds]
    dense = list(stack.params.values()) + ([stack.bag.weight] if stack.bag is not None and not stack.bag.sparse else [])
    opts = [torch.optim.AdamW(dense, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)]
    if stack.bag is not None and stack.bag.sparse:
        opts.append(RowAdagrad([stack.bag.weight], lr=cfg.text_lr))
    steps = cfg.max_epochs * math.ceil(n / cfg.batch_size)
    scheds = [torch.optim.lr_scheduler.LambdaLR(
        opt, lambda t: 1.0 if cfg.schedule == "constant" else max(0.0, 1 - t / steps)) for opt in opts]
    y_train = torch.from_numpy(train.y).to(DEVICE)
    probes = [train.subset(r.permutation(n)[:4000]) for r in rngs]
    members = [_Member(stack.modalities) for _ in range(S)]
    t0 = time.perf_counter()
    for epoch in range(1, cfg.max_epochs + 1):
        te = time.perf_counter()
        _train_epoch(stack, members, rngs, gens, train, y_train, cfg.batch_size, opts, scheds)
        train_secs = (time.perf_counter() - te) / S
        _evaluate_epoch(stack, members, probes, val, epoch, te, train_secs, cfg.patience)
        for s, mb in enumerate(members):
            if mb.active and mb.best_epoch == epoch:
                mb.best_state = stack.state(s)
            if not mb.active and mb.stopped_at is None:
                mb.stopped_at = time.perf_counter() - t0
        if not any(mb.active for mb in members):
            break
    out = []
    for s, (model, mb) in enumerate(zip(models, members)):
        model.load_state_dict(mb.best_state if mb.best_state is not None else stack.state(s))
        secs = (mb.stopped_at if mb.stopped_at is not None else time.perf_counter() - t0) / S
        out.append(FitResult(mb.best_epoch, len(mb.curves["epoch"]), secs, mb.seen / secs, mb.diverged, mb.curves))
    return out


def _train_epoch(stack: Stack, members: list[_Member], rngs, gens, train: SplitData, y_train: Tensor,
                 batch_size: int, opts: list, scheds: list) -> None:
    """One epoch of every member (each in its own batch order); a member whose loss turns
    non-finite stops counting there, as ``loop.fit`` breaks out of that epoch."""
    stack.template.train()
    perms = [r.permutation(len(train)) for r in rngs]
    for mb in members:
        mb.losses, mb.norms = [], []
    for start in range(0, len(train), batch_size):
        idxs = [p[start:start + batch_size] for p in perms]
        logits = stack.forward([to_inputs(train, i) for i in idxs], stack.masks(len(idxs[0]), gens))
        loss = vmap(F.cross_entropy)(logits, torch.stack([y_train[i] for i in idxs]))
        norms = _step(stack, opts, scheds, loss).T.tolist()
        for mb, v, gn, i in zip(members, loss.tolist(), norms, idxs):
            if mb.active and (not mb.losses or np.isfinite(mb.losses[-1])):
                mb.losses.append(v)
                mb.norms.append(gn)
                mb.seen += len(i)


def _evaluate_epoch(stack: Stack, members: list[_Member], probes: list[SplitData], val: SplitData, epoch: int,
                    te: float, train_secs: float, patience: int) -> None:
    """Score every active member on val and on its train probe; record its curves; update its
    early stopping (``loop.fit``'s rules: divergence, improvement by 1e-5, patience)."""
    val_p = stack.predict([val] * stack.size)
    probe_p = stack.predict(probes)
    secs = (time.perf_counter() - te) / stack.size
    for mb, vp, pp, probe in zip(members, val_p, probe_p, probes):
        if not mb.active:
            continue
        if not (np.isfinite(mb.losses).all() and np.isfinite(vp).all()):
            mb.diverged, mb.active = True, False
            continue
        m = classification_metrics(val.y, vp)
        probe_loss = classification_metrics(probe.y, pp)["log_loss"]
        for k, v in (("epoch", epoch), ("train_loss", float(np.mean(mb.losses))), ("train_eval_loss", probe_loss),
                     ("val_loss", m["log_loss"]), ("val_roc_auc", m["roc_auc"]), ("seconds", secs),
                     ("train_seconds", train_secs)):
            mb.curves[k].append(v)
        for j, mod in enumerate(stack.modalities):
            mb.curves[f"grad_norm_{mod}"].append(float(np.mean([gn[j] for gn in mb.norms])))
        if m["log_loss"] < mb.best - 1e-5:
            mb.best, mb.best_epoch, mb.bad = m["log_loss"], epoch, 0
        else:
            mb.bad += 1
            mb.active = mb.bad < patience
