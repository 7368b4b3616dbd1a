"""Sparse autoencoders (SAEs) on a language model's activations at one hook point.

A :class:`SparseAutoencoder` maps an activation ``x`` (``d_in``) to ``d_sae`` non-negative
feature activations and back::

    f = act((x - b_dec) @ W_enc + b_enc)        # b_dec subtracted when apply_b_dec_to_input
    x_hat = f @ W_dec + b_dec

with ``act`` a ReLU (trained with an L1 penalty on ``f``), top-k (the ``k`` largest
pre-activations, ReLU'd; Gao et al. 2024) or, for loaded SAEs, JumpReLU (a ReLU zeroed at or
below a per-feature threshold). Each feature's decoder row ``W_dec[j]`` (its direction in
the model's space) has unit norm while training. :meth:`~SparseAutoencoder.fit` trains on
cached activations (an array, or prompts read at ``hook_name``); :meth:`~SparseAutoencoder.evaluate`
reports reconstruction (explained variance, MSE) and sparsity (L0, dead features).

It reads and writes SAELens's folder format (:func:`load_saelens`, :meth:`~SparseAutoencoder.save`):
``cfg.json`` and ``sae_weights.safetensors`` holding ``W_enc`` (d_in, d_sae), ``b_enc``
(d_sae), ``W_dec`` (d_sae, d_in), ``b_dec`` (d_in) and, for JumpReLU, ``threshold`` (d_sae).

On a prompt: :meth:`~SparseAutoencoder.feature_activations` (tokens x features,
:class:`FeatureActivations`), :meth:`~SparseAutoencoder.top_contexts` (a feature's strongest
activations over many prompts, with their context, :class:`TopContexts`) and
:meth:`~SparseAutoencoder.steering_hooks` (add ``alpha`` times a feature's decoder row at the
hook point, :func:`~xai_suite_llm.steering.addition_hooks`).

References: Bricken et al. (2023), Towards Monosemanticity; Cunningham et al. (2023), Sparse
Autoencoders Find Highly Interpretable Features in Language Models; Gao et al. (2024), Scaling
and evaluating sparse autoencoders; Bloom et al., SAELens.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from xai_suite.plugin import (
    Result,
    as_float_tensor,
    atomic_write,
    check_choice,
    check_positive_int,
    check_positive_number,
    check_random_state,
    progress,
)

from .models import LanguageModel, check_language_model
from .steering import _check_prompts, addition_hooks, hook_activations

ACTIVATIONS = ("relu", "topk", "jumprelu")
#: SAELens ``architecture`` -> our activation (other architectures are refused on load).
_ARCHITECTURES = {"standard": "relu", "topk": "topk", "jumprelu": "jumprelu"}
CFG_FILE, WEIGHTS_FILE = "cfg.json", "sae_weights.safetensors"


class SparseAutoencoder:
    """A sparse autoencoder on activations of width ``d_in`` (set by :meth:`fit` or on load).

    Parameters
    ----------
    d_sae : int
        Number of features.
    activation : {"relu", "topk"}
        ``"relu"`` is trained with the L1 penalty ``l1_coefficient``; ``"topk"`` keeps the
        ``k`` largest pre-activations of each row (no penalty). (``"jumprelu"`` SAEs can be
        loaded, not trained.)
    k : int, optional
        Active features per row for ``"topk"``.
    l1_coefficient : float
        Weight of the L1 penalty for ``"relu"``. The loss is scale-free: ``||x - x_hat||^2 / s^2
        + l1_coefficient * sum(f) / s``, with ``s^2`` the training data's mean squared distance
        to its mean, so one coefficient fits activations of any scale.
    hook_name : str, optional
        The hook point the SAE reads (``blocks.0.hook_resid_post``): needed to fit on prompts,
        for the per-prompt methods and steering; saved in ``cfg.json``.
    apply_b_dec_to_input : bool
        Subtract ``b_dec`` from the input before encoding (SAELens's default).
    n_epochs : int
        Passes over the training activations.
    batch_size : int
        Activations (tokens) per Adam step.
    lr : float
        Adam's learning rate.
    random_state : int
        Seeds the initialisation and the order of the training rows: one seed, one SAE.

    Attributes
    ----------
    W_enc : torch.Tensor, shape (d_in, d_sae)
    b_enc : torch.Tensor, shape (d_sae,)
    W_dec : torch.Tensor, shape (d_sae, d_in)
    b_dec : torch.Tensor, shape (d_in,)
    threshold : torch.Tensor, shape (d_sae,) or None
        JumpReLU thresholds (loaded SAEs only).
    history_ : list of float
        The mean training loss of each epoch (after :meth:`fit`).
    """

    def __init__(self, d_sae: int = 256, *, activation: str = "relu", k: int | None = None,
                 l1_coefficient: float = 1.0, hook_name: str | None = None,
                 apply_b_dec_to_input: bool = True, n_epochs: int = 20, batch_size: int = 256,
                 lr: float = 1e-3, random_state: int = 0):
        check_positive_int(d_sae=d_sae, n_epochs=n_epochs, batch_size=batch_size)
        check_choice("activation", activation, ACTIVATIONS)
        if activation == "topk":
            check_positive_int(k=k)
            if k > d_sae:
                raise ValueError(f"k must be at most d_sae={d_sae}; got {k}")
        elif k is not None:
            raise ValueError(f"k is for activation='topk' only; got k={k!r} with {activation!r}")
        check_positive_number(l1_coefficient=l1_coefficient, lr=lr)
        check_random_state(random_state)
        if hook_name is not None and not isinstance(hook_name, str):
            raise TypeError(f"hook_name must be a hook point name (str) or None; got {hook_name!r}")
        self.d_sae, self.activation, self.k = int(d_sae), activation, k
        self.l1_coefficient, self.hook_name = float(l1_coefficient), hook_name
        self.apply_b_dec_to_input = bool(apply_b_dec_to_input)
        self.n_epochs, self.batch_size, self.lr, self.random_state = n_epochs, batch_size, lr, random_state
        self.W_enc = self.b_enc = self.W_dec = self.b_dec = self.threshold = None
        self.history_: list[float] = []

    def __repr__(self) -> str:
        k = f", k={self.k}" if self.k is not None else ""
        return (f"SparseAutoencoder(d_in={self.d_in}, d_sae={self.d_sae}, activation={self.activation!r}"
                f"{k}, hook_name={self.hook_name!r})")

    @property
    def d_in(self) -> int | None:
        return None if self.W_enc is None else int(self.W_enc.shape[0])

    def _fitted(self) -> None:
        if self.W_enc is None:
            raise RuntimeError("this SparseAutoencoder has no weights yet: call fit(...) or "
                               "load_saelens(folder)")

    # -- the map ---------------------------------------------------------------------------
    def _pre(self, x: torch.Tensor) -> torch.Tensor:
        if self.apply_b_dec_to_input:
            x = x - self.b_dec
        return x @ self.W_enc + self.b_enc

    def _act(self, pre: torch.Tensor) -> torch.Tensor:
        if self.activation == "topk":
            values, idx = pre.topk(self.k, dim=-1)
            return torch.zeros_like(pre).scatter(-1, idx, values.relu())
        if self.activation == "jumprelu":
            return pre.relu() * (pre > self.threshold.relu())
        return pre.relu()

    def _check_input(self, x, name: str = "activations") -> torch.Tensor:
        self._fitted()
        x = as_float_tensor(x, name).float()
        if x.ndim < 1 or x.shape[-1] != self.d_in:
            raise ValueError(f"{name} must have shape (..., d_in) = (..., {self.d_in}); got {tuple(x.shape)}")
        return x

    def encode(self, x) -> torch.Tensor:
        """Feature activations, shape (..., d_sae), of activations ``x`` (..., d_in)."""
        x = self._check_input(x)
        with torch.no_grad():
            return self._act(self._pre(x))

    def decode(self, f) -> torch.Tensor:
        """Reconstructed activations, shape (..., d_in), of feature activations ``f`` (..., d_sae)."""
        self._fitted()
        f = as_float_tensor(f, "feature activations").float()
        if f.ndim < 1 or f.shape[-1] != self.d_sae:
            raise ValueError(f"feature activations must have shape (..., d_sae) = (..., {self.d_sae}); "
                             f"got {tuple(f.shape)}")
        return f @ self.W_dec + self.b_dec

    def reconstruct(self, x) -> torch.Tensor:
        """``decode(encode(x))``, shape (..., d_in)."""
        return self.decode(self.encode(x))

    # -- training --------------------------------------------------------------------------
    def _rows(self, X, lm: LanguageModel | None) -> torch.Tensor:
        """Training/evaluation rows (N, d_in): ``X`` itself, or every token's activation of the
        prompts ``X`` at ``hook_name``."""
        if lm is None:
            if isinstance(X, str) or (isinstance(X, Sequence) and X and isinstance(X[0], str)):
                raise TypeError("to use prompts, pass the model too: fit(prompts, lm=lm)")
            x = as_float_tensor(X, "activations").float()
            if x.ndim != 2:
                raise ValueError(f"activations must have shape (N, d_in); got {tuple(x.shape)}")
            return x
        lm = check_language_model(lm, "SparseAutoencoder")
        if self.hook_name is None:
            raise ValueError("hook_name is needed to read activations from prompts: "
                             "SparseAutoencoder(..., hook_name='blocks.0.hook_resid_post')")
        return torch.cat(hook_activations(lm, _check_prompts(X, "prompts"), self.hook_name))

    def fit(self, X, *, lm: LanguageModel | None = None) -> SparseAutoencoder:
        """Train on activations.

        Parameters
        ----------
        X : array-like of shape (N, d_in), or sequence of str
            Cached activations, one row per token; or prompts, every token of which is read
            at ``hook_name`` (``lm`` needed).
        lm : LanguageModel, optional

        Returns
        -------
        SparseAutoencoder
            ``self``, trained.
        """
        if self.activation == "jumprelu":
            raise ValueError("activation='jumprelu' SAEs can be loaded (load_saelens) but not trained here; "
                             "use 'relu' or 'topk'")
        x = self._rows(X, lm)
        n, d_in = x.shape
        if n < 2:
            raise ValueError(f"fit needs at least 2 activation rows; got {n}")
        gen = torch.Generator().manual_seed(int(self.random_state))
        W_dec = torch.randn(self.d_sae, d_in, generator=gen)
        W_dec = W_dec / W_dec.norm(dim=1, keepdim=True)
        mean = x.mean(0)
        scale = float((x - mean).pow(2).sum(1).mean().sqrt())
        if scale == 0:
            raise ValueError("the activations are all equal: there is nothing to reconstruct")
        params = {"W_enc": W_dec.T.clone(), "b_enc": torch.zeros(self.d_sae), "W_dec": W_dec,
                  "b_dec": mean.clone()}
        for p in params.values():
            p.requires_grad_(True)
        self.__dict__.update(params)
        opt = torch.optim.Adam(params.values(), lr=self.lr)
        self.history_ = []
        for _ in progress(self.n_epochs, "SAE training"):
            order, total = torch.randperm(n, generator=gen), 0.0
            for s in range(0, n, self.batch_size):
                xb = x[order[s:s + self.batch_size]]
                f = self._act(self._pre(xb))
                loss = (f @ self.W_dec + self.b_dec - xb).pow(2).sum(1).mean() / scale**2
                if self.activation == "relu":
                    loss = loss + self.l1_coefficient * f.sum(1).mean() / scale
                opt.zero_grad()
                loss.backward()
                opt.step()
                with torch.no_grad():  # unit-norm decoder rows
                    self.W_dec /= self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12)
                total += float(loss.detach()) * xb.shape[0]
            self.history_.append(total / n)
        for name in params:
            setattr(self, name, getattr(self, name).detach())
        return self

    def evaluate(self, X, *, lm: LanguageModel | None = None) -> dict[str, float]:
        """Reconstruction and sparsity on activations (or prompts' tokens, as for :meth:`fit`).

        Returns
        -------
        dict
            ``explained_variance``: ``1 - sum ||x - x_hat||^2 / sum ||x - mean(x)||^2``;
            ``mse``: the mean squared error per element; ``l0``: mean number of active
            features per row; ``dead_features``: features active on no row, and
            ``dead_fraction``; ``n_rows``.
        """
        self._fitted()
        x = self._check_input(self._rows(X, lm))
        f = self.encode(x)
        err = (self.decode(f) - x).pow(2)
        total = (x - x.mean(0)).pow(2).sum()
        dead = int((f > 0).sum(0).eq(0).sum())
        return {"explained_variance": float(1 - err.sum() / total), "mse": float(err.mean()),
                "l0": float((f > 0).sum(1).float().mean()), "dead_features": dead,
                "dead_fraction": dead / self.d_sae, "n_rows": int(x.shape[0])}

    # -- on prompts ------------------------------------------------------------------------
    def _prompt_features(self, lm: LanguageModel, prompts: Sequence[str]) -> list[torch.Tensor]:
        lm = check_language_model(lm, "SparseAutoencoder")
        self._fitted()
        if self.hook_name is None:
            raise ValueError("this SAE has no hook_name: set sae.hook_name to the hook point it reads")
        return [self.encode(a) for a in hook_activations(lm, prompts, self.hook_name)]

    def feature_activations(self, lm: LanguageModel, prompt: str) -> FeatureActivations:
        """Every feature's activation at every token of ``prompt`` (read at ``hook_name``)."""
        if not isinstance(prompt, str):
            raise TypeError(f"prompt must be a string; got {type(prompt).__name__}")
        f = self._prompt_features(lm, [prompt])[0]
        enc = lm.encode(prompt)
        return FeatureActivations(prompt=prompt, tokens=np.array(enc.tokens, dtype=str),
                                  activations=f.numpy().astype(np.float32), hook_name=self.hook_name,
                                  method="native:sparse_autoencoder", params=self._params())

    def top_contexts(self, lm: LanguageModel, prompts: Sequence[str], feature: int, *, k: int = 10,
                     window: int = 4) -> TopContexts:
        """The ``k`` tokens among ``prompts`` on which ``feature`` is most active.

        Parameters
        ----------
        lm : LanguageModel
        prompts : sequence of str
        feature : int
            A feature index, 0..d_sae - 1.
        k : int
            How many tokens (fewer when fewer are active).
        window : int
            Tokens of context kept on each side.

        Returns
        -------
        TopContexts
            Sorted by activation, largest first; only tokens where the feature is active.
        """
        self._check_feature(feature)
        check_positive_int(k=k)
        if isinstance(window, bool) or not isinstance(window, int) or window < 0:
            raise ValueError(f"window must be a non-negative int; got {window!r}")
        prompts = _check_prompts(prompts, "prompts")
        feats = self._prompt_features(lm, prompts)
        acts = torch.cat([f[:, feature] for f in feats])
        where = [(i, t) for i, f in enumerate(feats) for t in range(f.shape[0])]
        top = [int(j) for j in torch.argsort(acts, descending=True, stable=True)[:k] if acts[j] > 0]
        rows = {"prompt_index": [], "position": [], "token": [], "left": [], "right": []}
        for j in top:
            i, t = where[j]
            tokens = lm.encode(prompts[i]).tokens
            rows["prompt_index"].append(i)
            rows["position"].append(t)
            rows["token"].append(tokens[t])
            rows["left"].append(" ".join(tokens[max(0, t - window):t]))
            rows["right"].append(" ".join(tokens[t + 1:t + 1 + window]))
        arrays = {name: np.array(v, dtype=np.int64 if name in ("prompt_index", "position") else str)
                  for name, v in rows.items()}
        return TopContexts(feature=int(feature), activations=acts[top].numpy().astype(np.float64),
                           hook_name=self.hook_name, n_prompts=len(prompts),
                           method="native:sparse_autoencoder",
                           params={**self._params(), "k": k, "window": window}, **arrays)

    def steering_hooks(self, feature: int, alpha: float, *, lm: LanguageModel,
                       positions: int | Sequence[int] | None = None) -> dict:
        """Hook functions adding ``alpha * W_dec[feature]`` at ``hook_name`` (see
        :func:`~xai_suite_llm.steering.addition_hooks`; ``positions=None``: every position)."""
        self._check_feature(feature)
        if self.hook_name is None:
            raise ValueError("this SAE has no hook_name: set sae.hook_name to the hook point it reads")
        return addition_hooks(lm, self.hook_name, self.W_dec[feature], alpha=alpha, positions=positions)

    def _check_feature(self, feature) -> None:
        self._fitted()
        if isinstance(feature, bool) or not isinstance(feature, int | np.integer) or \
                not 0 <= feature < self.d_sae:
            raise ValueError(f"feature must be an int in 0..{self.d_sae - 1}; got {feature!r}")

    def _params(self) -> dict:
        return {"d_in": self.d_in, "d_sae": self.d_sae, "activation": self.activation, "k": self.k,
                "hook_name": self.hook_name}

    # -- SAELens format --------------------------------------------------------------------
    def save(self, folder: str | os.PathLike) -> Path:
        """Write SAELens's format into ``folder``: ``cfg.json`` and ``sae_weights.safetensors``
        (each atomically: a crash leaves the old file or none).

        ``cfg.json`` follows SAELens 6's layout (``architecture``, ``d_in``, ``d_sae``, ``dtype``,
        ``apply_b_dec_to_input``, ``normalize_activations``, ``k`` for top-k, ``metadata`` with
        ``hook_name``). Returns the folder.
        """
        from safetensors.torch import save

        self._fitted()
        folder = Path(folder)
        arch = {v: k for k, v in _ARCHITECTURES.items()}[self.activation]
        cfg = {"architecture": arch, "d_in": self.d_in, "d_sae": self.d_sae, "dtype": "float32",
               "device": "cpu", "apply_b_dec_to_input": self.apply_b_dec_to_input,
               "normalize_activations": "none", "reshape_activations": "none",
               "metadata": {"hook_name": self.hook_name, "sae_lens_version": "6.0.0",
                            "written_by": "xai-suite"}}
        if self.activation == "topk":
            cfg.update(k=self.k, rescale_acts_by_decoder_norm=False)
        tensors = {"W_enc": self.W_enc, "b_enc": self.b_enc, "W_dec": self.W_dec, "b_dec": self.b_dec}
        if self.activation == "jumprelu":
            tensors["threshold"] = self.threshold
        data = save({k: v.detach().float().contiguous().cpu() for k, v in tensors.items()})
        atomic_write(folder / WEIGHTS_FILE, lambda fh: fh.write(data))
        text = json.dumps(cfg, indent=1).encode()
        atomic_write(folder / CFG_FILE, lambda fh: fh.write(text))
        return folder


def load_saelens(folder: str | os.PathLike) -> SparseAutoencoder:
    """An SAE saved in SAELens's format in the local folder ``folder`` (never downloads).

    Reads ``cfg.json`` (SAELens 6's layout, or the older flat one: ``hook_point``/``hook_name``,
    ``activation_fn_str``/``activation_fn`` and ``activation_fn_kwargs.k``) and
    ``sae_weights.safetensors``. Supported: ``architecture`` ``standard`` (ReLU), ``topk`` and
    ``jumprelu``, with ``normalize_activations`` ``"none"``.

    Raises
    ------
    FileNotFoundError
        When a file is missing.
    ValueError
        For an architecture, activation normalisation or weight shape it cannot reproduce.
    """
    from safetensors.torch import load_file

    folder = Path(folder)
    for name in (CFG_FILE, WEIGHTS_FILE):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder} has no {name}: expected a SAELens folder "
                                    f"({CFG_FILE} and {WEIGHTS_FILE})")
    cfg = json.loads((folder / CFG_FILE).read_text())
    meta = cfg.get("metadata") or {}
    act_fn = cfg.get("activation_fn", cfg.get("activation_fn_str", "relu"))
    arch = cfg.get("architecture", "standard")
    if arch == "standard" and act_fn == "topk":  # the pre-6 spelling of a top-k SAE
        arch = "topk"
    if arch not in _ARCHITECTURES:
        raise ValueError(f"{folder}: SAELens architecture {arch!r} is not supported; supported: "
                         f"{', '.join(_ARCHITECTURES)}")
    norm = cfg.get("normalize_activations", "none")
    if norm not in ("none", None, False):
        raise ValueError(f"{folder}: normalize_activations={norm!r} needs a scaling of the inputs this "
                         "loader does not apply; fold it into the weights first (SAELens: "
                         "fold_activation_norm_scaling_factor) and save with 'none'")
    k = cfg.get("k", (cfg.get("activation_fn_kwargs") or {}).get("k")) if arch == "topk" else None
    w = load_file(str(folder / WEIGHTS_FILE))
    if "log_threshold" in w:
        w["threshold"] = w.pop("log_threshold").exp()
    for name in ("scaling_factor", "finetuning_scaling_factor"):
        if name in w and not torch.allclose(w[name], torch.ones_like(w[name])):
            raise ValueError(f"{folder}: a {name} other than 1 is not supported")
    d_in, d_sae = int(cfg["d_in"]), int(cfg["d_sae"])
    shapes = {"W_enc": (d_in, d_sae), "b_enc": (d_sae,), "W_dec": (d_sae, d_in), "b_dec": (d_in,)}
    if arch == "jumprelu":
        shapes["threshold"] = (d_sae,)
    for name, shape in shapes.items():
        if name not in w or tuple(w[name].shape) != shape:
            got = tuple(w[name].shape) if name in w else "missing"
            raise ValueError(f"{folder}: {WEIGHTS_FILE} must hold {name} of shape {shape}; got {got}")
    W_dec = w["W_dec"].float()
    if arch == "topk" and cfg.get("rescale_acts_by_decoder_norm") and \
            not torch.allclose(W_dec.norm(dim=1), torch.ones(d_sae), atol=1e-4):
        raise ValueError(f"{folder}: rescale_acts_by_decoder_norm with decoder rows not of unit norm is "
                         "not supported")
    sae = SparseAutoencoder(d_sae, activation=_ARCHITECTURES[arch], k=k,
                            hook_name=meta.get("hook_name", cfg.get("hook_name", cfg.get("hook_point"))),
                            apply_b_dec_to_input=bool(cfg.get("apply_b_dec_to_input", True)))
    sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec = (w["W_enc"].float(), w["b_enc"].float(), W_dec,
                                                  w["b_dec"].float())
    sae.threshold = w["threshold"].float() if arch == "jumprelu" else None
    return sae


# -- results ----------------------------------------------------------------------------------
@dataclass
class FeatureActivations(Result):
    """An SAE's feature activations at every token of one prompt.

    Attributes
    ----------
    prompt : str
    tokens : numpy.ndarray of str, shape (T,)
    activations : numpy.ndarray of float32, shape (T, d_sae)
    hook_name : str
    method : str
    params : dict
        The SAE's settings (d_in, d_sae, activation, k, hook_name).
    """

    format = "xai-suite-sae-features/1"
    text_arrays = ("tokens",)
    prompt: str
    tokens: np.ndarray
    activations: np.ndarray
    hook_name: str
    method: str = "native:sparse_autoencoder"
    params: dict = field(default_factory=dict)

    def __post_init__(self):
        if np.ndim(self.activations) != 2 or np.shape(self.activations)[0] != len(self.tokens):
            raise ValueError(f"activations must have shape (T, d_sae) with T = {len(self.tokens)} tokens; "
                             f"got {np.shape(self.activations)}")

    def top_features(self, n: int = 10) -> np.ndarray:
        """The ``n`` features most active on this prompt (by their largest activation), int (<= n,)."""
        peak = self.activations.max(0)
        order = np.argsort(-peak, kind="stable")[:n]
        return order[peak[order] > 0]

    def to_frame(self) -> pd.DataFrame:
        """One row per active (token, feature): position, token, feature, activation."""
        t, j = np.nonzero(self.activations > 0)
        return pd.DataFrame({"position": t, "token": self.tokens[t], "feature": j,
                             "activation": self.activations[t, j]})

    def plot(self, n: int = 10, ax=None):
        """Heat map token x the ``n`` most active features.

        Returns
        -------
        matplotlib.axes.Axes
        """
        import matplotlib.pyplot as plt

        feats = self.top_features(n)
        if ax is None:
            size = (max(4.0, 0.5 * len(feats) + 2), max(3.0, 0.3 * len(self.tokens) + 1))
            _, ax = plt.subplots(figsize=size)
        im = ax.imshow(self.activations[:, feats], aspect="auto", cmap="viridis")
        ax.set_xticks(range(len(feats)), [str(f) for f in feats])
        ax.set_yticks(range(len(self.tokens)), [repr(t) for t in self.tokens])
        ax.set(xlabel="feature", ylabel="token", title=f"SAE features at {self.hook_name}")
        ax.figure.colorbar(im, ax=ax, label="activation")
        return ax

    def _html(self, page, n: int = 20) -> None:
        from .html import sae_features_view

        sae_features_view(self, page, n)


@dataclass
class TopContexts(Result):
    """A feature's largest activations over a set of prompts, with their contexts.

    Attributes
    ----------
    feature : int
    activations : numpy.ndarray of float64, shape (K,)
        Largest first.
    prompt_index, position : numpy.ndarray of int64, shape (K,)
        Where each is (prompt, token position).
    token, left, right : numpy.ndarray of str, shape (K,)
        The token and up to ``window`` tokens on each side (joined by spaces).
    hook_name : str
    n_prompts : int
    method : str
    params : dict
    """

    format = "xai-suite-sae-contexts/1"
    text_arrays = ("token", "left", "right")
    feature: int
    activations: np.ndarray
    prompt_index: np.ndarray
    position: np.ndarray
    token: np.ndarray
    left: np.ndarray
    right: np.ndarray
    hook_name: str
    n_prompts: int
    method: str = "native:sparse_autoencoder"
    params: dict = field(default_factory=dict)

    def __post_init__(self):
        n = np.shape(self.activations)
        for name in ("prompt_index", "position", "token", "left", "right"):
            if np.shape(getattr(self, name)) != n:
                raise ValueError(f"{name} must have one entry per context, shape {n}; "
                                 f"got {np.shape(getattr(self, name))}")

    def to_frame(self) -> pd.DataFrame:
        """One row per context: prompt_index, position, left, token, right, activation."""
        return pd.DataFrame({"prompt_index": self.prompt_index, "position": self.position, "left": self.left,
                             "token": self.token, "right": self.right, "activation": self.activations})

    def labels(self) -> list[str]:
        """Each context as one line, the token in brackets: ``left [token] right``."""
        return [f"{lt} [{t}] {r}".strip() for lt, t, r in zip(self.left, self.token, self.right, strict=True)]

    def plot(self, ax=None):
        """Horizontal bars of the activations, labelled with their contexts (largest on top).

        Returns
        -------
        matplotlib.axes.Axes
        """
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(7, max(2.5, 0.35 * len(self.activations) + 1)))
        y = np.arange(len(self.activations))
        ax.barh(y, self.activations)
        ax.set_yticks(y, self.labels(), fontsize=8)
        ax.invert_yaxis()
        ax.set(xlabel="activation", title=f"feature {self.feature} at {self.hook_name}: top contexts")
        return ax

    def _html(self, page) -> None:
        from .html import top_contexts_view

        top_contexts_view(self, page)
