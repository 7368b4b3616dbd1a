"""Batched text attribution vs Captum's LLM attribution vs the floor, on a GPT-2, CPU or GPU.

Per method, seconds per explained prompt (medians of ``--repeats`` interleaved runs over the
same ``--prompts`` prompts, after a warm-up of each) of:

- ours: ``native:text_ablation``, ``native:text_shapley_sampling``, ``native:text_kernel_shap``,
  ``native:text_integrated_gradients``, ``batch_size="auto"``: every perturbed prompt (or path
  point) of a call is a row of one matrix, run in memory-bounded chunks, identical rows once;
- Captum: ``LLMAttribution(FeatureAblation | ShapleyValueSampling | KernelShap, tokenizer)``
  with ``TextTokenInput(prompt, tokenizer, baselines=<pad id>)`` and
  ``forward_in_tokens=False`` (its one-pass teacher-forced mode, what ours computes; the
  token-by-token default runs one forward per continuation token and its cached variant fails
  on transformers 5), and ``LLMGradientAttribution(LayerIntegratedGradients(model, embedding
  layer), tokenizer)``. Captum's ``LLMAttribution`` evaluates one perturbation per model call:
  its forward concatenates a ``(1, L)`` continuation to the ``(B, T)`` perturbed ids, so
  ``perturbations_per_eval > 1`` raises a size-mismatch RuntimeError;
- the floor: the model alone on the same number of rows of the same length (prompt +
  continuation), in ours' chunk size, one batched pass per chunk, rows built outside the
  timer, no attribution bookkeeping. Perturbation methods: ours' ``model_rows`` rows, forward
  only; IG: ``n_steps`` rows of embeddings, forward + backward of the target's log-probability.
  The floor asks the model for the logits it needs only (``logits_to_keep``, as ours does);
  Captum computes them at every position.

and Captum / ours, ours / floor, the model rows and calls each made per prompt (counted with a
forward hook on the first block in the warm-up; ours' include the up to 4 rows of the call that
probes the model for ``batch_size="auto"``), and the agreement:

- ablation and layer IG are deterministic and must agree value by value: max |ours - Captum|
  (tolerance 1e-4; IG with the same ``n_steps`` and Gauss-Legendre rule);
- Shapley sampling and KernelSHAP are random: ours draws permutations / coalitions from numpy
  (``random_state``), Captum from torch (seeded with ``torch.manual_seed`` before each call),
  so on the timed prompts their max |ours - Captum| is sampling noise, printed for scale only.
  What is comparable is the error of each against the exact Shapley values, with the same
  budget (``n_samples`` permutations; ``n_samples`` coalitions, i.e. model rows): on a short
  prompt (the first ``--exact-tokens`` tokens of the first prompt, every one of the 2^T
  coalitions run through the model and combined by the Shapley formula, independently of the
  code under test) the script prints the mean absolute error of each over ``--exact-seeds``
  seeds. Ours' KernelSHAP enumerates every coalition when the budget covers them
  (``n_samples >= 2^T - 2``): it is then exact; Captum's KernelShap always samples (with
  repeats) and fits a linear regression in which a weight of 1e6 on the full and empty prompts
  stands in for the efficiency constraint.

Models. ``--model tiny``: the 2-layer, 64-wide GPT-2 of ``xai_suite_llm.tiny`` trained for
seconds on the key task (``--untrained`` skips training; timings and agreement need none), on
key-task prompts of 18 tokens. ``--model small``: a GPT-2 of GPT-2-small shape (12 layers, 768
wide, 12 heads, vocabulary 50,257, 124 M parameters) built from a config with a seeded random
initialisation (nothing downloaded), with a word-level tokenizer over 50,253 synthetic
pseudo-words (three consonant-vowel syllables: "bakitu") plus ``[PAD] [UNK] [EOS] .``; prompts
are 4 sentences of 9 random words and a full stop: 40 tokens. The explained continuation is
the model's own greedy continuation of ``--target-len`` tokens (1), the same ids for both.
``--model small`` is meant for a GPU; on a CPU run it only with ``--quick``.

Threads: ``--threads 1`` (default) pins torch's and the BLAS library's threads (on this shared
2-core machine two intra-op threads per process make every call wait for the slower one);
``--threads 0`` keeps the defaults. ``--device cuda`` moves the model and every input to the
GPU and synchronises before and after each timed call.

Measured on this machine (shared 2-core CPU, 1 torch thread, torch 2.13, captum 0.9,
transformers 5.23) with the defaults, ``python -m xai_suite.bench.scripts.perf_llm`` (1 min 42 s; 4 min 40 s
earlier under a load average of 5 from other jobs)::

  LLM attribution timings on cpu, 1 torch thread(s); ours vs Captum's LLM attribution vs the floor
    model: tiny GPT-2 (2 layers, 64 wide, vocab 33, 104 k parameters), trained on the key task in 14 s
    3 prompts of 18-18 tokens; continuation: the model's greedy 1 token(s); baseline token [PAD]
    Shapley sampling 25 permutations, KernelSHAP 500 coalitions, IG 50 Gauss-Legendre steps;
    medians of 3 interleaved runs

  method                ours s/prompt Captum s/prompt floor s/prompt Captum/ours ours/floor  max|ours-Captum|
  token ablation               0.0125          0.0486         0.0050        3.90       2.47          8.3e-07
  Shapley sampling             0.1369          0.9723         0.1072        7.11       1.28          5.3e-02*
  KernelSHAP                   0.1555          1.5274         0.1259        9.82       1.24          3.5e-02*
  layer IG (embeddings)        0.0332          0.0304         0.0218        0.92       1.53          1.3e-06
    * sampled: different random draws; the difference is sampling noise (see the exact comparison)

  per prompt (counted in the warm-up; ours' rows include the batch-size probe's):
  method                  rows ours  rows Captum  rows floor  calls ours  calls Captum  ours chunk
  token ablation                 22           19          20           3            19         367
  Shapley sampling              401          451         399           4           451         367
  KernelSHAP                    504          500         502           4           500         367
  layer IG (embeddings)          53           52          50           3             3         362
    floor: the model alone on those rows in ours' chunks (IG: forward + backward)

  agreement token ablation: max |ours - Captum| = 8.3e-07 (of max |Captum| 8.0e+00; tol 1e-04): yes
  agreement layer IG (embeddings): max |ours - Captum| = 1.3e-06 (of max |Captum| 8.2e+00; tol 1e-04): yes
  key token (position 7) has ours' largest attribution: ablation 3/3, Shapley 3/3, KernelSHAP 3/3, IG 3/3

  exact Shapley values of the short prompt 'lamp red green. the key is d. snow':
  10 tokens, all 1024 coalitions enumerated (mean |exact| = 0.377, max 1.19);
  mean absolute error over 20 seed(s), same budget:
  method                            budget   MAE ours    (s.e.)  MAE Captum    (s.e.) ours exact
  Shapley sampling         25 permutations   3.17e-02   3.2e-03    2.98e-02   3.1e-03         no
  KernelSHAP                500 coalitions   6.58e-03   3.7e-04    2.62e-02   1.7e-03         no
    (s.e.: standard error of the mean over the seeds; ours exact: every coalition enumerated)

What it says. Perturbation methods: Captum's ``LLMAttribution`` runs one model call per
perturbed prompt, ours a handful of batched calls, so ours is 4-10x faster here; Shapley
sampling and KernelSHAP run within 1.2-1.3x of the floor. Ablation is 2.5x the floor: on 20
rows of a 104 k-parameter model a Hugging Face forward call's fixed cost (a few ms) dominates,
and ours makes 3 calls (the ``batch_size="auto"`` probe, the full and empty prompts, the 18
ablated ones) where the floor makes 1. Layer IG: Captum batches the 50 steps in one call too,
so the two are level (0.9-1.2x over runs) for a one-token continuation (Captum repeats IG once
per continuation token); ours' 1.5x of the floor is again two extra calls (the probe, and the
scores of the prompt and the baseline for the completeness error). Sampling: with the same
permutations the two Shapley samplers are equally accurate (the MAE difference is within one
standard error); with the same number of coalitions ours' KernelSHAP is 4x closer to the
exact values (shap's scheme: coalition sizes that fit the budget are enumerated, the others
sampled in complementary pairs, duplicates merged, the regression constrained to efficiency;
Captum samples every coalition, duplicates included). ``--model small --quick`` on
this CPU took 4 min of CPU (ablation and IG agreed to 1.9e-6 and 1.8e-7); its timings, one
repeat of one prompt, are not figures to quote: run it on a GPU.

Then, against TransformerLens-style loops (same prompts, ``--repeats`` interleaved runs):

- head patching: ``native:activation_patching`` with ``sites=("attn_head_out",)`` (every
  (layer, head) patch a row of one batch) vs one forward per (layer, head) patching
  ``attn.hook_z`` head h at every position; the clean/corrupted pair is the prompt and the
  prompt with its 8th word replaced, the metric the clean greedy token's logit minus the
  corrupted one's; both must give the same patched logit differences (tolerance 1e-5);
- the per-token matrix: ``native:text_ablation`` with ``per_token=True`` on the model's
  greedy ``--matrix-len`` (4) token continuation (every row's J values off one forward) vs
  one ablation per continuation token j, of ``log p(target_j | prompt, target_<j)`` alone (a
  callable scalariser, the continuation cut after j); rows equal to 1e-4.

It prints ours' and the loop's seconds per prompt, loop / ours, the model calls of each
(counted in the warm-up) and max |ours - loop|. ``--quick`` on this CPU (untrained tiny
model): head patching 4 calls vs 9, 1.7x; token matrix 3 calls vs 12, 3.6x; both agree
(0 and 4.8e-7).

Run: ``python -m xai_suite.bench.scripts.perf_llm [--model tiny|small] [--device cpu|cuda|auto]
[--prompts 3] [--repeats 3] [--shapley-samples 25] [--kernel-samples 500] [--n-steps 50]
[--target-len 1] [--matrix-len 4] [--threads 1] [--untrained] [--quick]`` (``--quick``: a smoke run;
tiny: untrained, 1 prompt, 1 repeat, 10 permutations, 260 coalitions (ours' KernelSHAP then enumerates the
8-token exact prompt), 2 exact seeds, about 20 s of CPU; small: 1 prompt, 2 permutations, 40 coalitions, 8
IG steps, a 6-token exact prompt, 1 seed; about 4 min of CPU here). In a checkout, ``python
benchmarks/perf_llm.py`` is the same.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

SEED = 0
TOL = 1e-4
METHODS = ("ablation", "shapley", "kernel_shap", "ig")
SAMPLED = ("shapley", "kernel_shap")
DEFAULTS = {  # per model: (full run, --quick)
    "tiny": ({"prompts": 3, "repeats": 3, "shapley_samples": 25, "kernel_samples": 500,
              "n_steps": 50, "exact_tokens": 10, "exact_seeds": 20},
             {"prompts": 1, "repeats": 1, "shapley_samples": 10, "kernel_samples": 260,
              "n_steps": 50, "exact_tokens": 8, "exact_seeds": 2}),
    "small": ({"prompts": 3, "repeats": 3, "shapley_samples": 25, "kernel_samples": 500,
               "n_steps": 50, "exact_tokens": 8, "exact_seeds": 10},
              {"prompts": 1, "repeats": 1, "shapley_samples": 2, "kernel_samples": 40,
               "n_steps": 8, "exact_tokens": 6, "exact_seeds": 1}),
}


# -- models and prompts --------------------------------------------------------------------
@dataclass
class Setup:
    lm: object  # xai_suite_llm.LanguageModel
    prompts: list[str]
    targets: list  # torch int64 (L,) on the CPU, one per prompt
    description: str
    key_position: int | None = None  # the trained key-task model: where the answer's token is


def _greedy(lm, prompts: list[str], target_len: int) -> list:
    return [lm.generate(lm.encode(p).ids, target_len) for p in prompts]


def setup_tiny(n_prompts: int, target_len: int, device: str, trained: bool) -> Setup:
    """The key-task GPT-2 (trained, or freshly initialised) and key-task prompts of 18 tokens."""
    from xai_suite_llm import (
        KEY_POSITION,
        LanguageModel,
        make_key_prompts,
        make_tiny_gpt2,
        make_tiny_tokenizer,
    )
    from xai_suite_llm.tiny import train_key_model

    if trained:
        t0 = time.perf_counter()
        base = train_key_model(random_state=SEED)
        how = f"trained on the key task in {time.perf_counter() - t0:.0f} s"
        model, tok = base.model, base.tokenizer
    else:
        tok = make_tiny_tokenizer()
        model, how = make_tiny_gpt2(len(tok), random_state=SEED), "untrained (seeded init)"
    lm = LanguageModel(model, tok, device=device)
    prompts, _ = make_key_prompts(n_prompts, random_state=SEED + 1)
    n_par = sum(p.numel() for p in model.parameters())
    return Setup(lm, prompts, _greedy(lm, prompts, target_len),
                 f"tiny GPT-2 (2 layers, 64 wide, vocab {len(tok)}, {n_par / 1e3:.0f} k parameters), {how}",
                 KEY_POSITION if trained else None)


SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]  # 70


def small_tokenizer():
    """A word-level fast tokenizer of GPT-2's vocabulary size: specials, '.', 50,253 pseudo-words."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    s = len(SYLLABLES)
    words = ["[PAD]", "[UNK]", "[EOS]", "."]
    words += [SYLLABLES[i % s] + SYLLABLES[(i // s) % s] + SYLLABLES[i // s**2]
              for i in range(50257 - len(words))]
    tok = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]",
                                   eos_token="[EOS]")


def setup_small(n_prompts: int, target_len: int, device: str) -> Setup:
    """GPT-2-small shape, seeded random init; 40-token prompts of random pseudo-words."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from xai_suite_llm import LanguageModel

    tok = small_tokenizer()
    config = GPT2Config(vocab_size=len(tok), n_positions=1024, n_embd=768, n_layer=12, n_head=12,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=2,
                        eos_token_id=2, pad_token_id=0)
    with torch.random.fork_rng():
        torch.manual_seed(SEED)
        model = GPT2LMHeadModel(config).eval()
    lm = LanguageModel(model, tok, device=device)
    rng = np.random.default_rng(SEED + 1)
    vocab = tok.convert_ids_to_tokens(list(range(4, len(tok))))
    prompts = [" ".join(" ".join(vocab[j] for j in rng.integers(0, len(vocab), 9)) + " ."
                        for _ in range(4)) for _ in range(n_prompts)]
    n_par = sum(p.numel() for p in model.parameters())
    return Setup(lm, prompts, _greedy(lm, prompts, target_len),
                 f"GPT-2-small shape (12 layers, 768 wide, 12 heads, vocab {len(tok)}, "
                 f"{n_par / 1e6:.0f} M parameters), random init (seed {SEED})")


# -- the three implementations -------------------------------------------------------------
def _sync(dev) -> None:
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _interleaved_medians(runs: dict, repeats: int, n: int, dev, *, progress: bool = False) -> dict:
    """Median seconds per prompt of each of ``runs`` (key -> callable over ``n`` prompts), the
    callables interleaved within each of ``repeats`` rounds."""
    seconds = {k: [] for k in runs}
    for r in range(repeats):
        for key, fn in runs.items():
            _sync(dev)
            t0 = time.perf_counter()
            fn()
            _sync(dev)
            seconds[key].append((time.perf_counter() - t0) / n)
        if progress:
            print(f"  repeat {r + 1}/{repeats} done", file=sys.stderr, flush=True)
    return {k: float(np.median(v)) for k, v in seconds.items()}


def ours_explainer(method: str, lm, args, random_state: int = SEED):
    import xai_suite_llm.attribution as A

    if method == "ablation":
        return A.TextAblation(lm)
    if method == "shapley":
        return A.TextShapleySampling(lm, n_samples=args.shapley_samples, random_state=random_state)
    if method == "kernel_shap":
        return A.TextKernelShap(lm, n_samples=args.kernel_samples, random_state=random_state)
    return A.TextIntegratedGradients(lm, n_steps=args.n_steps, quadrature="gausslegendre")


def captum_runner(method: str, lm, args) -> Callable:
    """``run(prompt, target_ids, seed) -> numpy (T,)``: Captum's LLM attribution of one prompt."""
    import torch
    from captum.attr import (
        FeatureAblation,
        KernelShap,
        LayerIntegratedGradients,
        LLMAttribution,
        LLMGradientAttribution,
        ShapleyValueSampling,
        TextTokenInput,
    )

    tok, pad = lm.tokenizer, lm.tokenizer.pad_token_id
    if method == "ig":
        attr = LLMGradientAttribution(LayerIntegratedGradients(lm.model, lm.embed), tok)
        kwargs = {"n_steps": args.n_steps, "method": "gausslegendre"}
    else:
        cls, kwargs = {
            "ablation": (FeatureAblation, {}),
            "shapley": (ShapleyValueSampling, {"n_samples": args.shapley_samples}),
            "kernel_shap": (KernelShap, {"n_samples": args.kernel_samples}),
        }[method]
        attr = LLMAttribution(cls(lm.model), tok)
        kwargs = {**kwargs, "forward_in_tokens": False}

    def run(prompt: str, target, seed: int = SEED) -> np.ndarray:
        torch.manual_seed(seed)  # Captum's samplers draw from torch's global generator
        res = attr.attribute(TextTokenInput(prompt, tok, baselines=pad), target=target, **kwargs)
        return res.seq_attr.detach().double().cpu().numpy()

    return run


@dataclass
class FloorData:
    chunks: list  # prebuilt model inputs, one per model call
    masks: list  # their all-ones attention masks
    keep: int  # logits kept per row
    targets: object = None  # IG: the continuation ids (L,) the log-probability is read at


def floor_data(method: str, lm, prompt: str, target, rows: int, chunk: int) -> FloorData:
    """Inputs of the floor for one prompt: ``rows`` rows of prompt + continuation, in chunks."""
    import torch

    dev = lm.device
    ids = lm.encode(prompt).ids.to(dev)
    tgt = target.to(dev)
    gen = torch.Generator().manual_seed(SEED)
    if method == "ig":
        with torch.no_grad():
            e, b = lm.embed(ids), lm.embed(torch.full_like(ids, lm.tokenizer.pad_token_id))
            c = lm.embed(tgt)
        a = torch.rand(rows, 1, 1, generator=gen).to(dev)
        z = torch.cat([b + a * (e - b), c.expand(rows, -1, -1)], dim=1).detach()
    else:
        keep = (torch.rand(rows, len(ids), generator=gen) < 0.5).to(dev)
        z = torch.cat([torch.where(keep, ids, torch.full_like(ids, lm.tokenizer.pad_token_id)),
                       tgt.expand(rows, -1)], dim=1)
    chunks = [z[s : s + chunk].contiguous() for s in range(0, rows, chunk)]
    masks = [torch.ones(x.shape[:2], dtype=torch.long, device=dev) for x in chunks]
    return FloorData(chunks, masks, len(tgt) + 1, tgt)


def run_floor(method: str, lm, data: FloorData) -> None:
    """The model alone: forward (perturbation methods) or forward + backward (IG) per chunk."""
    import torch

    model, length = lm.model, data.keep - 1
    if method != "ig":
        with torch.no_grad():
            for x, m in zip(data.chunks, data.masks, strict=True):
                model(input_ids=x, attention_mask=m, use_cache=False, logits_to_keep=data.keep)
        return
    for x, m in zip(data.chunks, data.masks, strict=True):
        z = x.detach().requires_grad_(True)
        logits = model(inputs_embeds=z, attention_mask=m, use_cache=False,
                       logits_to_keep=data.keep).logits[:, :length]
        logp = logits.log_softmax(-1).gather(2, data.targets.expand(len(z), -1).unsqueeze(2))
        torch.autograd.grad(logp.sum(), z)


class RowCounter:
    """Counts the model's calls and rows while active (warm-up only).

    A forward hook on the first transformer block: Captum's ``LLMAttribution`` calls
    ``model.forward`` directly, which bypasses hooks on the model itself.
    """

    def __init__(self, lm):
        self.block, self.calls, self.rows = lm.blocks[0], 0, 0

    def __enter__(self):
        def hook(module, args, out):
            self.calls += 1
            self.rows += int((out[0] if isinstance(out, tuple) else out).shape[0])
        self.handle = self.block.register_forward_hook(hook)
        return self

    def __exit__(self, *exc):
        self.handle.remove()


# -- exact Shapley values ------------------------------------------------------------------
def exact_shapley(lm, ids, target, baseline_id: int, chunk: int = 256) -> np.ndarray:
    """Shapley values of the prompt's tokens for the target's log-probability, by enumeration.

    Every coalition (2^T rows: absent tokens replaced by ``baseline_id``) runs through the
    model; ``phi_i = sum_S |S|! (T - |S| - 1)! / T! (v(S + i) - v(S))``. Independent of the
    explainers under test.
    """
    import torch

    dev = lm.device
    ids, target = ids.to(dev), target.to(dev)
    n, length = len(ids), len(target)
    codes = torch.arange(2**n, device=dev)
    present = (codes[:, None] >> torch.arange(n, device=dev)[None, :]) & 1 == 1  # bit i: token i
    v = torch.empty(2**n, dtype=torch.float64)
    with torch.no_grad():
        for s in range(0, 2**n, chunk):
            rows = torch.where(present[s : s + chunk], ids, torch.full_like(ids, baseline_id))
            seq = torch.cat([rows, target.expand(len(rows), -1)], dim=1)
            logp = lm.logits(seq)[:, n - 1 : n - 1 + length].double().log_softmax(-1)
            v[s : s + len(rows)] = logp.gather(2, target.expand(len(rows), -1).unsqueeze(2)).sum((1, 2)).cpu()
    v = v.numpy()
    codes = np.arange(2**n)
    size = np.array([bin(c).count("1") for c in codes])
    weight = np.array([math.factorial(k) * math.factorial(n - k - 1) / math.factorial(n) if k < n else 0.0
                       for k in range(n + 1)])
    phi = np.empty(n)
    for i in range(n):
        without = codes[(codes >> i) & 1 == 0]
        phi[i] = float(np.sum(weight[size[without]] * (v[without | (1 << i)] - v[without])))
    return phi


def sampling_vs_exact(s: Setup, args) -> dict:
    """Mean absolute error against the exact Shapley values, ours and Captum, same budget."""
    lm = s.lm
    ids = lm.encode(s.prompts[0]).ids[: args.exact_tokens]
    prompt = lm.decode(ids)
    if not np.array_equal(lm.encode(prompt).ids.numpy(), ids.numpy()):
        raise RuntimeError(f"the short prompt {prompt!r} does not re-tokenise to its own ids")
    target = s.targets[0]
    exact = exact_shapley(lm, ids, target, lm.tokenizer.pad_token_id)
    out = {"prompt": prompt, "n_tokens": len(ids), "scale": float(np.abs(exact).mean()),
           "max_exact": float(np.abs(exact).max())}
    for method in SAMPLED:
        run_captum = captum_runner(method, lm, args)
        errs = {"ours": [], "captum": []}
        exact_flags = []
        for seed in range(args.exact_seeds):
            res = ours_explainer(method, lm, args, random_state=seed).explain(prompt, target)
            errs["ours"].append(float(np.abs(res.attributions - exact).mean()))
            exact_flags.append(bool(res.params.get("exact", False)))
            errs["captum"].append(float(np.abs(run_captum(prompt, target, seed) - exact).mean()))
        out[method] = {k: float(np.mean(v)) for k, v in errs.items()}
        out[method].update({f"{k}_se": float(np.std(v, ddof=1) / np.sqrt(len(v))) if len(v) > 1
                            else float("nan") for k, v in errs.items()})
        out[method]["ours_exact"] = all(exact_flags)
    return out


# -- timing --------------------------------------------------------------------------------
def compare(s: Setup, args) -> dict:
    lm = s.lm
    dev = lm.device
    pairs = list(zip(s.prompts, s.targets, strict=True))
    res: dict = {}
    runs: dict[tuple[str, str], Callable[[], None]] = {}
    for method in METHODS:
        print(f"  warm-up {method} ...", file=sys.stderr, flush=True)
        ours = ours_explainer(method, lm, args)
        captum = captum_runner(method, lm, args)
        ours_out, captum_out = [], []
        with RowCounter(lm) as oc:
            for p, t in pairs:
                ours_out.append(ours.explain(p, t))
        with RowCounter(lm) as cc:
            for p, t in pairs:
                captum_out.append(captum(p, t))
        floors = [floor_data(method, lm, p, t, e.params["model_rows"] - (2 if method == "ig" else 0),
                             int(e.params["batch_size_used"]))
                  for (p, t), e in zip(pairs, ours_out, strict=True)]
        diff = max(float(np.abs(e.attributions - c).max()) for e, c in zip(ours_out, captum_out, strict=True))
        scale = max(float(np.abs(c).max()) for c in captum_out)
        res[method] = {
            "diff": diff, "scale": scale,
            "ours_rows": oc.rows / len(pairs), "ours_calls": oc.calls / len(pairs),
            "captum_rows": cc.rows / len(pairs), "captum_calls": cc.calls / len(pairs),
            "floor_rows": sum(len(x) for f in floors for x in f.chunks) / len(pairs),
            "chunk": int(ours_out[0].params["batch_size_used"]),
            "top_token": [int(np.argmax(e.attributions)) for e in ours_out],
        }

        def run_ours(ex=ours):
            for p, t in pairs:
                ex.explain(p, t)

        def run_captum(fn=captum):
            for p, t in pairs:
                fn(p, t)

        def run_fl(m=method, fl=floors):
            for f in fl:
                run_floor(m, lm, f)

        runs[method, "ours"], runs[method, "captum"], runs[method, "floor"] = run_ours, run_captum, run_fl
        run_fl()  # warm-up of the floor
    for (method, kind), v in _interleaved_medians(runs, args.repeats, len(pairs), dev, progress=True).items():
        res[method][kind] = v
    return res


# -- head patching and the per-token matrix: ours batched vs one run per patch / token -------------
def corrupted_pair(prompt: str) -> str:
    """``prompt`` with its 8th word (the key-task's key) replaced by another word: same length."""
    words = prompt.split()
    words[7] = "a" if words[7] != "a" else "b"
    return " ".join(words)


def answer_pair(lm, clean: str, corrupted: str) -> tuple[str, str]:
    """The clean run's greedy next token and the corrupted run's (the clean run's second best
    when they agree), as the patching metric's answer and wrong token."""
    import torch

    with torch.no_grad():
        top = [lm.logits(lm.encode(p).ids[None])[0, -1].topk(2).indices.tolist() for p in (clean, corrupted)]
    wrong = top[1][0] if top[1][0] != top[0][0] else top[0][1]
    return lm.decode([top[0][0]]), lm.decode([wrong])


def loop_head_patching(lm, clean: str, corrupted: str, answer: str, wrong: str) -> np.ndarray:
    """TransformerLens style: one forward per (layer, head), patching ``attn.hook_z`` head h at
    every position; the patched logit differences (L, H)."""
    a, w = lm.token_ids(answer)[0].item(), lm.token_ids(wrong)[0].item()
    names = [f"blocks.{layer}.attn.hook_z" for layer in range(lm.n_layers)]
    _, cache = lm.run_with_cache(lm.encode(clean).ids[None], names)
    ids = lm.encode(corrupted).ids[None]
    out = np.empty((lm.n_layers, lm.n_heads))
    for layer, name in enumerate(names):
        for h in range(lm.n_heads):
            def fn(act, h=h, src=cache[name]):
                new = act.clone()
                new[:, :, h] = src[:, :, h]
                return new
            last = lm.run_with_hooks(ids, {name: fn})[0, -1].float()
            out[layer, h] = (last[a] - last[w]).item()
    return out


def position_score(j: int) -> Callable:
    """Scalariser: ``log p(target_j | prompt, target_<j)`` alone, ``(R, J, V), (J,) -> (R,)``."""
    def score(logits, ids):
        return logits[:, j].float().log_softmax(-1)[:, ids[j]]
    score.__qualname__ = f"position_score_{j}"
    return score


def loop_token_matrix(lm, prompt: str, target) -> np.ndarray:
    """One ablation per continuation token j, explaining its log-probability alone (the
    continuation cut after j): the rows (J, U)."""
    import xai_suite_llm.attribution as A

    return np.stack([A.TextAblation(lm, scalariser=position_score(j)).explain(prompt, target[:j + 1])
                     .attributions for j in range(len(target))])


def compare_loops(s: Setup, args) -> dict:
    """Head patching (``attn_head_out``) and the per-token ablation matrix, ours vs the loops:
    agreement and model calls (warm-up), then medians of interleaved timed runs."""
    import xai_suite_llm.attribution as A
    from xai_suite_llm.patching import ActivationPatching

    lm, dev = s.lm, s.lm.device
    pairs = [(p, corrupted_pair(p)) for p in s.prompts]
    metric = [answer_pair(lm, c, k) for c, k in pairs]
    targets = _greedy(lm, s.prompts, args.matrix_len)
    patching = ActivationPatching(lm, sites=("attn_head_out",))
    matrix = A.TextAblation(lm, per_token=True)
    runs = {
        ("heads", "ours"): lambda: [patching.explain(c, k, a, w).patched["attn_head_out"]
                                    for (c, k), (a, w) in zip(pairs, metric, strict=True)],
        ("heads", "loop"): lambda: [loop_head_patching(lm, c, k, a, w)
                                    for (c, k), (a, w) in zip(pairs, metric, strict=True)],
        ("matrix", "ours"): lambda: [matrix.explain(p, t).token_attributions
                                     for p, t in zip(s.prompts, targets, strict=True)],
        ("matrix", "loop"): lambda: [loop_token_matrix(lm, p, t)
                                     for p, t in zip(s.prompts, targets, strict=True)],
    }
    res = {"heads": {}, "matrix": {}}
    for (what, kind), fn in runs.items():  # warm-up: the values and the model calls
        with RowCounter(lm) as rc:
            res[what][kind + "_values"] = fn()
        res[what][kind + "_calls"] = rc.calls / len(pairs)
    for what in res:
        r = res[what]
        r["diff"] = max(float(np.abs(o - x).max())
                        for o, x in zip(r["ours_values"], r["loop_values"], strict=True))
        r["scale"] = max(float(np.abs(x).max()) for x in r["loop_values"])
    for (what, kind), v in _interleaved_medians(runs, args.repeats, len(pairs), dev).items():
        res[what][kind] = v
    return res


LOOP_TOL = {"heads": 1e-5, "matrix": TOL}
LOOP_LABELS = {"heads": "head patching", "matrix": "token matrix"}


def report_loops(s: Setup, res: dict, args) -> None:
    """Print the loop comparison: timings, the ratio, model calls and the agreement."""
    lm = s.lm
    print(f"\nhead patching (attn_head_out at every position, {lm.n_layers} x {lm.n_heads} = "
          f"{lm.n_layers * lm.n_heads} patches) and the per-token ablation matrix ({args.matrix_len} "
          "continuation tokens x prompt tokens), per prompt:")
    print("  ours: every patch (or token row) in batched rows; loop: one forward per (layer, head) "
          "patch, one ablation per continuation token")
    print(f"{'method':21s} {'ours s/prompt':>13s} {'loop s/prompt':>13s} {'loop/ours':>9s} "
          f"{'calls ours':>10s} {'calls loop':>10s} {'max|ours-loop|':>15s}")
    for what, label in LOOP_LABELS.items():
        r = res[what]
        print(f"{label:21s} {r['ours']:13.4f} {r['loop']:13.4f} {r['loop'] / r['ours']:9.2f} "
              f"{r['ours_calls']:10.0f} {r['loop_calls']:10.0f} {r['diff']:15.1e}")
    for what, label in LOOP_LABELS.items():
        r = res[what]
        ok = r["diff"] <= LOOP_TOL[what]
        print(f"agreement {label}: max |ours - loop| = {r['diff']:.1e} (of max |loop| {r['scale']:.1e}; "
              f"tol {LOOP_TOL[what]:.0e}): {'yes' if ok else 'NO'}")


LABELS = {
    "ablation": "token ablation",
    "shapley": "Shapley sampling",
    "kernel_shap": "KernelSHAP",
    "ig": "layer IG (embeddings)",
}


def _fmt_se(x: float) -> str:
    return "n/a" if not np.isfinite(x) else f"{x:.1e}"


def report(s: Setup, res: dict, exact: dict, args) -> None:
    """Print the timing table, the rows and calls, the agreement and the exact-Shapley errors."""
    lm = s.lm
    n_tok = [len(lm.encode(p).ids) for p in s.prompts]
    print(f"  {len(s.prompts)} prompts of {min(n_tok)}-{max(n_tok)} tokens; continuation: the model's "
          f"greedy {args.target_len} token(s); baseline token [PAD]")
    print(f"  Shapley sampling {args.shapley_samples} permutations, KernelSHAP {args.kernel_samples} "
          f"coalitions, IG {args.n_steps} Gauss-Legendre steps;")
    print(f"  medians of {args.repeats} interleaved runs\n")
    print(f"{'method':21s} {'ours s/prompt':>13s} {'Captum s/prompt':>15s} {'floor s/prompt':>14s} "
          f"{'Captum/ours':>11s} {'ours/floor':>10s} {'max|ours-Captum|':>17s}")
    for m in METHODS:
        r = res[m]
        mark = "*" if m in SAMPLED else " "
        print(f"{LABELS[m]:21s} {r['ours']:13.4f} {r['captum']:15.4f} {r['floor']:14.4f} "
              f"{r['captum'] / r['ours']:11.2f} {r['ours'] / r['floor']:10.2f} {r['diff']:16.1e}{mark}"
              .rstrip())
    print("  * sampled: different random draws; the difference is sampling noise (see the exact "
          "comparison)")
    print("\nper prompt (counted in the warm-up; ours' rows include the batch-size probe's):")
    print(f"{'method':22s} {'rows ours':>10s} {'rows Captum':>12s} {'rows floor':>11s} {'calls ours':>11s} "
          f"{'calls Captum':>13s} {'ours chunk':>11s}")
    for m in METHODS:
        r = res[m]
        print(f"{LABELS[m]:22s} {r['ours_rows']:10.0f} {r['captum_rows']:12.0f} {r['floor_rows']:11.0f} "
              f"{r['ours_calls']:11.0f} {r['captum_calls']:13.0f} {r['chunk']:11d}")
    print("  floor: the model alone on those rows in ours' chunks (IG: forward + backward)\n")
    for m in ("ablation", "ig"):
        ok = res[m]["diff"] <= TOL
        print(f"agreement {LABELS[m]}: max |ours - Captum| = {res[m]['diff']:.1e} (of max |Captum| "
              f"{res[m]['scale']:.1e}; tol {TOL:.0e}): {'yes' if ok else 'NO'}")
    if s.key_position is not None:
        short = {"ablation": "ablation", "shapley": "Shapley", "kernel_shap": "KernelSHAP", "ig": "IG"}
        hits = ", ".join(f"{short[m]} {sum(t == s.key_position for t in res[m]['top_token'])}"
                         f"/{len(s.prompts)}" for m in METHODS)
        print(f"key token (position {s.key_position}) has ours' largest attribution: {hits}")
    print(f"\nexact Shapley values of the short prompt {exact['prompt']!r}:")
    print(f"{exact['n_tokens']} tokens, all {2 ** exact['n_tokens']} coalitions enumerated (mean |exact| = "
          f"{exact['scale']:.3g}, max {exact['max_exact']:.3g});")
    print(f"mean absolute error over {args.exact_seeds} seed(s), same budget:")
    print(f"{'method':22s} {'budget':>17s} {'MAE ours':>10s} {'(s.e.)':>9s} {'MAE Captum':>11s} "
          f"{'(s.e.)':>9s} {'ours exact':>10s}")
    budget = {"shapley": f"{args.shapley_samples} permutations",
              "kernel_shap": f"{args.kernel_samples} coalitions"}
    for m in SAMPLED:
        e = exact[m]
        print(f"{LABELS[m]:22s} {budget[m]:>17s} {e['ours']:10.2e} {_fmt_se(e['ours_se']):>9s} "
              f"{e['captum']:11.2e} {_fmt_se(e['captum_se']):>9s} {'yes' if e['ours_exact'] else 'no':>10s}")
    print("  (s.e.: standard error of the mean over the seeds; ours exact: every coalition enumerated)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=("tiny", "small"), default="tiny")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--prompts", type=int, help="prompts explained per run (3)")
    p.add_argument("--repeats", type=int, help="interleaved runs per method (3)")
    p.add_argument("--shapley-samples", type=int, help="permutations, both libraries (25)")
    p.add_argument("--kernel-samples", type=int, help="coalitions = model rows, both (500)")
    p.add_argument("--n-steps", type=int, help="IG steps, both (50)")
    p.add_argument("--exact-tokens", type=int, help="tokens of the exact-Shapley prompt (10 tiny, 8 small)")
    p.add_argument("--exact-seeds", type=int, help="seeds of the exact comparison (20 tiny, 10 small)")
    p.add_argument("--target-len", type=int, default=1, help="continuation tokens explained")
    p.add_argument("--matrix-len", type=int, default=4, help="continuation tokens of the per-token matrix")
    p.add_argument("--threads", type=int, default=1, help="torch and BLAS threads (0: defaults)")
    p.add_argument("--untrained", action="store_true", help="tiny: skip training")
    p.add_argument("--quick", action="store_true", help="smoke run (see the module doc)")
    args = p.parse_args(argv)
    for k, v in DEFAULTS[args.model][int(args.quick)].items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    for k in ("prompts", "repeats", "shapley_samples", "kernel_samples", "n_steps", "exact_tokens",
              "exact_seeds", "target_len", "matrix_len"):
        if getattr(args, k) < 1:
            p.error(f"--{k.replace('_', '-')} must be >= 1; got {getattr(args, k)}")
    if args.exact_tokens > 14:
        p.error(f"--exact-tokens enumerates 2^T coalitions: at most 14; got {args.exact_tokens}")

    import torch
    import transformers

    from xai_suite.batching import resolve_device

    # Captum's gradient forward calls the model without an attention mask (there is no padding)
    transformers.logging.set_verbosity_error()
    if args.threads:
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(args.threads)
        threadpool_limits(args.threads)
    device = str(resolve_device(args.device))
    if args.model == "tiny":
        s = setup_tiny(args.prompts, args.target_len, device, trained=not (args.untrained or args.quick))
    else:
        s = setup_small(args.prompts, args.target_len, device)
    print(f"LLM attribution timings on {device}, {torch.get_num_threads()} torch thread(s); "
          f"ours vs Captum's LLM attribution vs the floor")
    print(f"  model: {s.description}")
    exact = sampling_vs_exact(s, args)
    res = compare(s, args)
    report(s, res, exact, args)
    report_loops(s, compare_loops(s, args), args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
