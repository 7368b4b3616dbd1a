"""The 2-state HMM benchmark of DynaMask / time-interpret: data, classifier, time-forward tunnel.

Crabbé & van der Schaar (2021, DynaMask, section 4.1) and time-interpret (Enguehard 2023,
``tint.datasets.HMM`` and ``experiments/hmm``), after Tonekaboni et al. (2020, FIT): a hidden
2-state Markov chain emits 3 Gaussian signals per step, a label per step depends on the
state's *important* feature, and the true saliency marks that feature at every step
(:func:`make_hmm_timeseries`).

The classifier is time-interpret's GRU (:class:`StateClassifier`), explained step by step as
time-interpret's ``TimeForwardTunnel`` does (:func:`time_forward_tunnel`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from xai_suite.plugin import (
    Explanation,
    check_choice,
    check_positive_int,
    check_random_state,
    register_dataset,
    train_loop,
)

#: Means of the 3 signals in state 0 and state 1 (time-interpret's ``scale``).
HMM_MEANS = ((0.1, 1.6, 0.5), (-0.1, -0.4, -1.5))
#: The important feature in state 0 and state 1 (time-interpret's ``imp_feature``).
HMM_IMPORTANT = (1, 2)
#: The feature correlated (covariance 0.01) with the important one in each state.
HMM_CORRELATED = (0, 0)
#: Variance of every signal (plus a 1e-3 jitter on the diagonal, as time-interpret).
HMM_VARIANCE = 0.8


def hmm_covariances() -> np.ndarray:
    """The emission covariance of each state, shape (2, 3, 3), as time-interpret builds it."""
    cov = []
    for imp, corr in zip(HMM_IMPORTANT, HMM_CORRELATED, strict=True):
        c = np.eye(3) * HMM_VARIANCE
        c[imp, corr] = c[corr, imp] = 0.01
        cov.append(c + np.eye(3) * 1e-3)
    return np.array(cov)


@register_dataset("timeseries")
def make_hmm_timeseries(
    n_samples: int = 1000,
    length: int = 200,
    *,
    p0: float = 0.5,
    random_state: int | None = 0,
    return_states: bool = False,
):
    """Series from time-interpret's 2-state HMM with a label and a true saliency per step.

    The rule (``tint.datasets.HMM.download``; DynaMask section 4.1), per series: draw an
    initial state ``s_{-1} ~ Bernoulli(p0)`` (not part of the series), set ``d = 0``, then for
    ``t = 0 .. T-1``:

    - ``s_t ~ Bernoulli(q)``, ``q = 0.95 - d / 500`` (clipped at 0) if ``s_{t-1} = 1`` else
      0.05; ``d`` counts the steps since the last change (``d + 1`` if ``s_t = s_{t-1}`` else 0);
    - ``x_t ~ N(mu[s_t], Sigma[s_t])``, ``mu`` = :data:`HMM_MEANS`, ``Sigma`` = 0.8 I + 1e-3 I
      with covariance 0.01 between feature 0 and the important feature;
    - ``y_t ~ Bernoulli(sigmoid(2 x_t[1 + s_t]))``;
    - the true saliency of step ``t`` is feature ``1 + s_t`` (time-interpret's ``states + 1``).

    The distribution is time-interpret's; its numbers (numpy's global generator) are not.

    Parameters
    ----------
    n_samples : int
        Series ``N`` (time-interpret: 800 for training, 200 for testing).
    length : int
        Steps ``T`` (time-interpret: 200).
    p0 : float
        Probability that the initial state is 1, in [0, 1].
    random_state : int or None
        Seed of ``numpy.random.default_rng``; the same seed gives the same data.
    return_states : bool
        Also return the hidden states.

    Returns
    -------
    X : numpy.ndarray of float32, shape (N, 3, T)
        Channels first.
    y : numpy.ndarray of int64, shape (N, T)
        The label of every step (0 or 1).
    mask : numpy.ndarray of bool, shape (N, 3, T)
        True exactly at ``(n, 1 + s_t, t)``.
    states : numpy.ndarray of int64, shape (N, T)
        Only with ``return_states=True``.
    """
    check_positive_int(n_samples=n_samples, length=length)
    check_random_state(random_state)
    if not (isinstance(p0, int | float | np.floating) and 0 <= p0 <= 1):
        raise ValueError(f"p0 must be a probability in [0, 1]; got {p0!r}")
    rng = np.random.default_rng(random_state)
    n, t_len = int(n_samples), int(length)
    previous = (rng.random(n) < p0).astype(np.int64)
    run = np.zeros(n)
    states = np.empty((n, t_len), dtype=np.int64)
    for t in range(t_len):
        q = np.where(previous == 1, np.clip(0.95 - run / 500, 0.0, 1.0), 0.05)
        state = (rng.random(n) < q).astype(np.int64)
        run = np.where(state == previous, run + 1, 0)
        states[:, t] = previous = state
    chol = np.linalg.cholesky(hmm_covariances())  # (2, 3, 3)
    z = rng.standard_normal((n, t_len, 3))
    x = np.asarray(HMM_MEANS)[states] + np.einsum("ntij,ntj->nti", chol[states], z)
    important = np.asarray(HMM_IMPORTANT)[states]  # (N, T)
    value = np.take_along_axis(x, important[..., None], axis=2)[..., 0]
    y = (rng.random((n, t_len)) < 1.0 / (1.0 + np.exp(-2.0 * value))).astype(np.int64)
    mask = np.zeros((n, 3, t_len), dtype=bool)
    rows, steps = np.indices((n, t_len))
    mask[rows, important, steps] = True
    X = np.ascontiguousarray(x.transpose(0, 2, 1), dtype=np.float32)
    return (X, y, mask, states) if return_states else (X, y, mask)


class StateClassifier(nn.Module):
    """time-interpret's HMM classifier: a GRU whose last hidden state feeds a small head.

    The head is ``BatchNorm1d -> ReLU -> Dropout(0.5) -> Linear`` (time-interpret's
    ``regressor``). On ``(N, C, T)`` inputs of any length it returns the logits ``(N, K)`` of
    the last step's label: a prefix ``x[:, :, :t]`` gives the prediction for step ``t - 1``.

    Parameters
    ----------
    in_channels : int
        Features per step (3 for the HMM).
    n_classes : int
    hidden_size : int
        GRU width (time-interpret: 200).
    dropout : float
        Dropout of the head, in [0, 1).
    """

    def __init__(self, in_channels: int = 3, n_classes: int = 2, *, hidden_size: int = 200,
                 dropout: float = 0.5):
        super().__init__()
        check_positive_int(in_channels=in_channels, n_classes=n_classes, hidden_size=hidden_size)
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1); got {dropout!r}")
        self.rnn = nn.GRU(in_channels, hidden_size, batch_first=True)
        self.head = nn.Sequential(
            nn.BatchNorm1d(hidden_size), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden_size, n_classes)
        )

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3 or x.shape[1] != self.rnn.input_size:
            raise ValueError(f"StateClassifier expects (N, {self.rnn.input_size}, T) inputs; got shape "
                             f"{tuple(x.shape)}")
        no_cudnn = x.is_cuda and not self.training  # cuDNN RNNs have no backward in eval mode
        with torch.backends.cudnn.flags(enabled=not no_cudnn):
            encodings, _ = self.rnn(x.transpose(1, 2))
        return encodings

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the last step's label, shape (N, K), for ``x`` of shape (N, C, T)."""
        return self.head(self._encode(x)[:, -1])

    def forward_steps(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of every step's label, shape (N, T, K): ``forward(x[:, :, :t + 1])`` for all ``t``."""
        enc = self._encode(x)
        n, t, h = enc.shape
        return self.head(enc.reshape(n * t, h)).view(n, t, -1)


def fit_state_classifier(
    model: StateClassifier,
    X,
    y,
    *,
    epochs: int = 30,
    lr: float = 3e-3,
    batch_size: int = 32,
    weight_decay: float = 1e-3,
    steps: str = "all",
    device: str = "cpu",
    random_state: int = 0,
) -> StateClassifier:
    """Train a :class:`StateClassifier` with Adam and cross-entropy on per-step labels.

    time-interpret trains on one random step per batch (``x[:, :t + 1]`` against ``y[:, t]``;
    Adam at a constant 1e-4, weight decay 1e-3, batch 32, 50 epochs): ``steps="random"``
    with ``lr=1e-4, epochs=50``. A GRU's outputs at every step are those of the prefixes, so
    ``steps="all"`` trains each batch on all ``T`` steps at once
    (:meth:`StateClassifier.forward_steps`), with a one-cycle learning rate (30% warm-up,
    then annealing to nearly 0): the Bayes rate in a few CPU seconds.

    Parameters
    ----------
    model : StateClassifier
    X : array-like, shape (N, C, T)
    y : array-like of int, shape (N, T)
        The label of every step, 0..K-1.
    epochs, batch_size, lr, weight_decay, random_state
        As for :func:`xai_suite.plugin.fit_classifier` (``lr`` is the peak only with
        ``steps="all"``); the seed also draws the steps.
    steps : {"all", "random"}
        Train on every step's label with a one-cycle schedule, or on one step drawn per
        batch with a constant rate (time-interpret's loop).
    device : str
        Where to train (``"cpu"``, ``"cuda"``); the model stays there.

    Returns
    -------
    StateClassifier
        The same model, trained, in eval mode.
    """
    if np.ndim(X) != 3 or np.shape(y) != (len(X), np.shape(X)[2]):
        raise ValueError(f"expected X of shape (N, C, T) and y of shape (N, T); got {np.shape(X)} "
                         f"and {np.shape(y)}")
    check_choice("steps", steps, ("all", "random"))
    ce = nn.CrossEntropyLoss()

    def loss(m, xb, yb, gen):
        if steps == "all":
            logits = m.forward_steps(xb)
            return ce(logits.reshape(-1, logits.shape[-1]), yb.reshape(-1))
        t = int(torch.randint(xb.shape[2], (1,), generator=gen))
        return ce(m(xb[:, :, : t + 1]), yb[:, t])

    model.to(device)
    return train_loop(model, X, y, loss=loss, epochs=epochs, lr=lr,
                      batch_size=batch_size, weight_decay=weight_decay, random_state=random_state,
                      one_cycle=steps == "all")


def step_accuracy(model: StateClassifier, X, y) -> float:
    """Accuracy of ``model``'s per-step predictions against ``y`` (N, T), in eval mode."""
    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad():
        logits = model.forward_steps(torch.as_tensor(np.asarray(X, dtype=np.float32), device=device))
    return float((logits.argmax(-1).cpu().numpy() == np.asarray(y)).mean())


def time_forward_tunnel(explainer, inputs, *, min_length: int = 1, progress: bool = False):
    """Explain a causal sequence model step by step, as time-interpret's ``TimeForwardTunnel``.

    For each ``t`` in ``1 .. T``, ``explainer`` explains the model's predicted class on the
    prefix ``inputs[:, :, :t]`` and the result keeps the attributions of its last step,
    ``t - 1``: every step is scored for the prediction made there, without looking ahead. The
    model must accept inputs of any length (e.g. :class:`StateClassifier`).

    Parameters
    ----------
    explainer : AttributionExplainer
        E.g. ``xs.create_explainer("native:integrated_gradients", model)``; its baseline
        is built for each prefix (``"zeros"`` as time-interpret's IG).
    inputs : array-like, shape (N, C, T)
    min_length : int
        Shortest prefix explained; steps before ``min_length - 1`` get attribution 0
        (time-interpret: 1, every step).
    progress : bool
        Print one dot per 10 prefixes.

    Returns
    -------
    Explanation
        ``attributions[n, c, t - 1]`` from the prefix of length ``t``, signed and
        unnormalised; ``target`` and ``predictions`` are those of the whole series (the
        last prefix); ``params`` holds the explainer's, ``time_forward_tunnel: True``,
        ``min_length`` and ``step_targets`` (N, T), the class explained at each step
        (-1 before ``min_length``).
    """
    x = np.asarray(inputs, dtype=np.float32)
    if x.ndim != 3:
        raise ValueError(f"time_forward_tunnel expects (N, C, T) inputs; got shape {x.shape}")
    check_positive_int(min_length=min_length)
    t_len = x.shape[2]
    if min_length > t_len:
        raise ValueError(f"min_length must be at most the series length {t_len}; got {min_length}")
    attr = np.zeros_like(x)
    step_targets = np.full((x.shape[0], t_len), -1, dtype=np.int64)
    exp = None
    for t in range(min_length, t_len + 1):
        exp = explainer.explain(x[:, :, :t])
        attr[:, :, t - 1] = exp.attributions[:, :, -1]
        step_targets[:, t - 1] = exp.target
        if progress and t % 10 == 0:
            print(".", end="" if t < t_len else "\n", flush=True)
    params = dict(exp.params, time_forward_tunnel=True, min_length=int(min_length),
                  step_targets=step_targets.tolist())
    return Explanation(attributions=attr, inputs=x, target=exp.target, predictions=exp.predictions,
                       method=exp.method, params=params)
