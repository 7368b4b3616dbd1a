"""A tiny GPT-2 built from a config and trained in seconds on a task with a known answer.

Nothing is downloaded: the tokenizer is a word-level one built from a fixed vocabulary, the
model a 2-layer GPT-2 initialised from a seed. The *key task* makes every prompt's answer
depend on one known token, so tests and tutorials can check that an explanation finds it::

    "red cat sun . the key is c . blue dog sea tree . so the answer is"  ->  " c"

The key sentence is always the second one and the key the 8th token (:data:`KEY_POSITION`);
the filler words around it are random and carry no information about the answer.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from xai_suite.plugin import check_positive_int, check_random_state, register_dataset, register_model

from .models import LanguageModel

#: Answers: the key token copied to the end of the prompt.
KEYS = tuple("abcdefgh")
FILLERS = ("red", "blue", "green", "cat", "dog", "sun", "sea", "tree", "rock", "bird", "fish",
           "road", "rain", "snow", "hill", "lamp")
_TEMPLATE = "{0} {1} {2} . the key is {k} . {3} {4} {5} {6} . so the answer is"
#: Index of the key token in every prompt's tokens.
KEY_POSITION = 7
SPECIALS = ("[PAD]", "[UNK]", "[EOS]")


def make_tiny_tokenizer():
    """A word-level fast tokenizer over the key task's words (whitespace and punctuation split).

    Returns
    -------
    transformers.PreTrainedTokenizerFast
        ``[PAD]`` is id 0, ``[UNK]`` 1, ``[EOS]`` 2.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = list(SPECIALS) + list(KEYS) + list(FILLERS) + ["the", "key", "is", "so", "answer", "."]
    vocab = {w: i for i, w in enumerate(dict.fromkeys(words))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece()  # joins words with spaces
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]",
                                   eos_token="[EOS]")


def make_tiny_gpt2(vocab_size: int, *, n_layer: int = 2, n_embd: int = 64, n_head: int = 4,
                   n_positions: int = 32, random_state: int = 0):
    """A GPT-2 LM head model from a config (no dropout), initialised from ``random_state``."""
    from transformers import GPT2Config, GPT2LMHeadModel

    check_positive_int(vocab_size=vocab_size, n_layer=n_layer, n_embd=n_embd, n_head=n_head,
                       n_positions=n_positions)
    check_random_state(random_state)
    config = GPT2Config(vocab_size=vocab_size, n_positions=n_positions, n_embd=n_embd,
                        n_layer=n_layer, n_head=n_head, resid_pdrop=0.0, embd_pdrop=0.0,
                        attn_pdrop=0.0, bos_token_id=2, eos_token_id=2, pad_token_id=0)
    with torch.random.fork_rng():
        torch.manual_seed(random_state)
        return GPT2LMHeadModel(config).eval()


def make_tiny_llama(vocab_size: int, *, n_layer: int = 2, n_embd: int = 64, n_head: int = 4,
                    n_kv_head: int = 2, n_positions: int = 32, random_state: int = 0):
    """A LLaMA LM from a config (rotary, RMSNorm, gated MLP, grouped-query attention: ``n_head``
    query heads share ``n_kv_head`` key/value heads), initialised from ``random_state``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    check_positive_int(vocab_size=vocab_size, n_layer=n_layer, n_embd=n_embd, n_head=n_head,
                       n_kv_head=n_kv_head, n_positions=n_positions)
    check_random_state(random_state)
    if n_embd % n_head or n_head % n_kv_head:
        raise ValueError(f"n_head must divide n_embd and n_kv_head n_head; got n_embd={n_embd}, "
                         f"n_head={n_head}, n_kv_head={n_kv_head}")
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=n_embd, intermediate_size=2 * n_embd,
                         num_hidden_layers=n_layer, num_attention_heads=n_head, num_key_value_heads=n_kv_head,
                         max_position_embeddings=n_positions, attention_dropout=0.0, bos_token_id=2,
                         eos_token_id=2, pad_token_id=0)
    with torch.random.fork_rng():
        torch.manual_seed(random_state)
        return LlamaForCausalLM(config).eval()


@register_dataset("text")
def make_key_prompts(n_samples: int, *, random_state: int | None = None
                     ) -> tuple[list[str], list[str]]:
    """Prompts of the key task and their answers (``xs.datasets.make_key_prompts``).

    Returns
    -------
    prompts : list of str, length n_samples
    answers : list of str, length n_samples
        The key, with a leading space (the continuation as it follows the prompt).
    """
    check_positive_int(n_samples=n_samples)
    check_random_state(random_state)
    rng = np.random.default_rng(random_state)
    keys = rng.integers(0, len(KEYS), size=n_samples)
    fill = rng.integers(0, len(FILLERS), size=(n_samples, 7))
    prompts = [_TEMPLATE.format(*(FILLERS[j] for j in row), k=KEYS[k])
               for row, k in zip(fill, keys, strict=True)]
    return prompts, [" " + KEYS[k] for k in keys]


def train_key_model(*, n_samples: int = 2000, steps: int = 300, batch_size: int = 64,
                    lr: float = 3e-3, corrupt: float = 0.5, random_state: int = 0,
                    prompts: tuple[list[str], list[str]] | None = None,
                    builder: Callable[..., torch.nn.Module] = make_tiny_gpt2, **arch) -> LanguageModel:
    """A tiny GPT-2 (or the model ``builder`` makes) trained on the key task (next-token loss on
    the answer only).

    About 10-15 s on one CPU thread with the defaults; test accuracy 1.0, answer probability
    about 0.998. Each non-key token of a prompt is replaced by ``[PAD]`` or a random token with
    a probability drawn per prompt from ``[0, corrupt)``, so the answer depends on the key
    alone and perturbation explainers find it (trained with ``corrupt=0``, replacing the last
    token "is" by ``[PAD]`` costs 7.7 nats of the answer's log-probability, the key 0.7-4.3).

    Parameters
    ----------
    n_samples, steps, batch_size, lr
        Training prompts drawn, Adam steps, prompts per step, learning rate.
    corrupt : float
        Largest per-prompt corruption rate of the non-key tokens, in [0, 1).
    random_state : int
        Seeds the prompts, the initialisation and the batches.
    prompts : (list of str, list of str), optional
        Key-task prompts and answers (:func:`make_key_prompts`) to train on instead of
        ``n_samples`` new ones.
    builder : callable
        ``builder(vocab_size, random_state=..., **arch)`` returns the untrained causal LM:
        :func:`make_tiny_gpt2` (default) or :func:`make_tiny_llama`.
    **arch
        Passed to ``builder`` (``n_layer``, ``n_embd``, ...).

    Returns
    -------
    LanguageModel
        In eval mode, on the CPU.
    """
    check_positive_int(steps=steps, batch_size=batch_size)
    if isinstance(corrupt, bool) or not isinstance(corrupt, int | float) or not 0 <= corrupt < 1:
        raise ValueError(f"corrupt must be a number in [0, 1); got {corrupt!r}")
    tok = make_tiny_tokenizer()
    model = builder(len(tok), random_state=random_state, **arch)
    prompts, answers = prompts or make_key_prompts(n_samples, random_state=random_state)
    ids = torch.tensor(tok(prompts, add_special_tokens=False)["input_ids"])
    y = torch.tensor([tok(a, add_special_tokens=False)["input_ids"][0] for a in answers])
    gen = torch.Generator().manual_seed(random_state)
    not_key = torch.arange(ids.shape[1]) != KEY_POSITION
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    with torch.random.fork_rng():
        torch.manual_seed(random_state)
        for _ in range(steps):
            rows = torch.randint(0, len(ids), (batch_size,), generator=gen)
            x = ids[rows]
            rate = torch.rand(batch_size, 1, generator=gen) * corrupt
            hit = (torch.rand(x.shape, generator=gen) < rate) & not_key
            pad = torch.rand(x.shape, generator=gen) < 0.5
            other = torch.randint(0, len(tok), x.shape, generator=gen)
            x = torch.where(hit, torch.where(pad, torch.full_like(x, tok.pad_token_id), other), x)
            # pad tokens are part of the corrupted prompt: attend to every position
            logits = model(input_ids=x, attention_mask=torch.ones_like(x), use_cache=False).logits[:, -1]
            loss = torch.nn.functional.cross_entropy(logits, y[rows])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return LanguageModel(model.eval(), tok, device="cpu")


def answers_greedy(lm: LanguageModel, prompts, answers) -> np.ndarray:
    """Whether each answer is the model's greedy continuation of its prompt (bool, shape (N,))."""
    answers = [lm.token_ids(str(a)) for a in answers]
    return np.array([torch.equal(lm.generate(lm.encode(str(p)).ids, len(ids)), ids)  # both on the CPU
                     for p, ids in zip(prompts, answers, strict=True)], dtype=bool)


@register_model("key_gpt2", modality="text", kind="hf_causal_lm", correct=answers_greedy)
def _key_gpt2(X, y, *, random_state: int, steps: int = 300, n_layer: int = 2, n_embd: int = 64):
    """A tiny GPT-2 trained on key-task prompts (:func:`train_key_model`), from a config."""
    return train_key_model(steps=steps, random_state=random_state, n_layer=n_layer, n_embd=n_embd,
                           prompts=([str(p) for p in X], [str(a) for a in y]))
