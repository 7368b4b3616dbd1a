"""CELL-style contrastive prompt edits (native:cell) and Token Highlighter scores
(native:token_highlighter): planted signals on the key model, and the numbers they report
recomputed independently."""

import math

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

import xai_suite as xs
from xai_suite_llm import KEY_POSITION, PromptEdits, make_key_prompts
from xai_suite_llm.testing import PROMPT, reference_language_model

PROMPTS, ANSWERS = make_key_prompts(4, random_state=4)


pytestmark = pytest.mark.usefixtures("one_thread")


def _logprob(lm, prompt_emb, target_ids):
    """Independent reference: log p(target | prompt embeddings (T, d)) by teacher forcing."""
    seq = torch.cat([prompt_emb, lm.embed(target_ids)])[None]
    logp = lm.logits(None, inputs_embeds=seq)[0].double().log_softmax(-1)
    t = len(prompt_emb)
    return sum(logp[t - 1 + j, int(target_ids[j])] for j in range(len(target_ids)))


# -- CELL -------------------------------------------------------------------------------------
@pytest.mark.parametrize("level", ["token", "word"])
@pytest.mark.parametrize("replacements", ["lm", "mask"])
def test_cell_flips_the_answer_by_editing_the_key(key_lm, level, replacements):
    """The key model's answer is its key token: the contrast found edits the key, and only it."""
    for prompt, answer in zip(PROMPTS, ANSWERS, strict=True):
        res = xs.create_explainer("native:cell", key_lm, level=level, replacements=replacements,
                                  random_state=0).explain(prompt)
        assert res.response == answer.strip() and res.found[0], res.to_frame()
        assert [e["unit"] for e in res.edits[0]] == [KEY_POSITION]
        assert res.edits[0][0]["old"] == answer.strip() and res.responses[0] != res.response
        assert res.changes[0] > 1.0 and res.params["queries"] <= res.params["budget"]
        if replacements == "lm":  # the model proposes other keys: the answer follows the new key
            assert res.responses[0] == res.edits[0][0]["new"]
            assert res.edited_prompts[0].split()[KEY_POSITION] == res.edits[0][0]["new"]


def test_cell_with_a_contrast_makes_the_contrast_preferred(key_lm):
    prompt, answer = PROMPTS[1], ANSWERS[1]
    contrast = " a" if answer != " a" else " b"
    res = xs.create_explainer("native:cell", key_lm, random_state=0).explain(prompt, contrast=contrast)
    assert res.found[0] and res.objectives[0] > 0 > res.objective  # log p(contrast) - log p(answer)
    assert res.edits[0] == [{"unit": KEY_POSITION, "old": answer.strip(), "new": contrast.strip()}]
    # recomputed: the edited prompt's lead of the contrast over the answer
    ids = key_lm.encode(res.edited_prompts[0]).ids
    with torch.no_grad():
        emb = key_lm.embed(ids)
        lead = (_logprob(key_lm, emb, key_lm.token_ids(contrast))
                - _logprob(key_lm, emb, key_lm.token_ids(answer)))
    assert float(lead) == pytest.approx(res.objectives[0], rel=1e-5)


def test_cell_budget_and_seed():
    """A budget smaller than the round's extensions: a seeded sample is scored, within budget."""
    lm = reference_language_model()
    make = lambda seed: xs.create_explainer("native:cell", lm, budget=25, random_state=seed).explain(  # noqa: E731
        PROMPT, " b")
    a, again, other = make(0), make(0), make(1)
    assert a.params["queries"] <= 25 and a.params["rounds"] == 1
    assert a.edited_prompts == again.edited_prompts and np.array_equal(a.objectives, again.objectives)
    assert a.edited_prompts != other.edited_prompts
    with pytest.raises(ValueError, match="raise the budget"):
        xs.create_explainer("native:cell", lm, budget=4).explain(PROMPT, " b")


def test_cell_page_and_round_trip(tmp_path, key_lm):
    res = xs.create_explainer("native:cell", key_lm, random_state=0).explain(PROMPTS[0])
    text = res.to_html(tmp_path / "cell.html").read_text()
    assert "native:cell" in text and res.edited_prompts[0] in text
    back = xs.load_explanation(res.save(tmp_path / "cell.npz"))
    assert isinstance(back, PromptEdits) and back.edits == res.edits and back.found == res.found


# -- Token Highlighter ------------------------------------------------------------------------
def test_highlighter_scores_are_the_affirmation_loss_gradient_norms():
    lm = reference_language_model()
    res = xs.create_explainer("native:token_highlighter", lm, fraction=0.2, beta=0.3).explain(PROMPT, " b c")
    ids, aff = lm.encode(PROMPT).ids, lm.token_ids(" b c")
    emb = lm.embed(ids).detach().requires_grad_(True)
    loss = -_logprob(lm, emb, aff)
    (grad,) = torch.autograd.grad(loss, emb)
    np.testing.assert_allclose(res.attributions, grad.double().norm(dim=-1).numpy(), rtol=1e-4, atol=1e-7)
    top = list(np.argsort(-res.attributions, kind="stable")[: math.ceil(0.2 * 18)])
    assert res.params["highlighted"] == top and res.score == pytest.approx(-float(loss.detach()), rel=1e-5)
    with torch.no_grad():  # soft removal, recomputed
        scaled = lm.embed(ids).clone()
        scaled[top] *= 0.3
        after = float(_logprob(lm, scaled, aff))
    assert res.params["affirmation_logprob_removed"] == pytest.approx(after, rel=1e-5)
    assert res.params["affirmation_prob_removed"] == pytest.approx(math.exp(after), rel=1e-5)
    word = xs.create_explainer("native:token_highlighter", lm, level="sentence").explain(PROMPT, " b c")
    per_token = grad.double().norm(dim=-1).numpy()
    np.testing.assert_allclose(word.attributions, [np.sqrt((per_token[list(t)] ** 2).sum())
                                                   for t in word.unit_tokens], rtol=1e-4)


def test_highlighter_finds_the_key_and_soft_removal_lowers_the_affirmation(key_lm):
    """Affirmation = the key model's answer: its probability hangs on the key token."""
    for prompt, answer in zip(PROMPTS, ANSWERS, strict=True):
        res = xs.create_explainer("native:token_highlighter", key_lm, fraction=0.05).explain(prompt, answer)
        assert int(np.argmax(res.attributions)) == KEY_POSITION
        assert res.params["highlighted"] == [KEY_POSITION]
        p = res.params
        assert p["affirmation_prob"] > 0.99 and p["affirmation_prob_removed"] < p["affirmation_prob"]
        # the key model's layer norms undo most of a scaling: beta = 0 removes the key outright
        gone = xs.create_explainer("native:token_highlighter", key_lm, fraction=0.05,
                                   beta=0.0).explain(prompt, answer).params
        assert gone["affirmation_prob_removed"] < p["affirmation_prob_removed"]
        if answer != " f":  # without its key the model answers its prior, "f"
            assert gone["affirmation_prob_removed"] < 0.01 and gone["response_removed"] == "f"
