"""Smoke test of ``python -m xai_suite.bench.scripts.perf_llm``: it runs, prints its table, and ours
agrees with Captum.

Timings are not checked (performance claims live in the benchmark). What is: the table's
structure, the value-by-value agreement of ablation and layer IG with Captum's LLM
attribution, that ours batches (fewer model calls than Captum's one perturbation per call),
and the exact-Shapley comparison: ours' KernelSHAP is exact once its budget covers every
coalition, and both samplers land near the exact values.
"""

import importlib.util
import math
import os
import re
import subprocess
import sys

import pytest

SCRIPT = ["-m", "xai_suite.bench.scripts.perf_llm"]
LABELS = ("token ablation", "Shapley sampling", "KernelSHAP", "layer IG (embeddings)")
NUM = r"([-+]?\d+(?:\.\d+)?(?:e[-+]\d+)?)"

pytestmark = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("transformers", "captum")),
    reason="transformers and captum are needed")


@pytest.fixture(scope="module")
def quick_output():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, *SCRIPT, "--quick"], capture_output=True, text=True,
                         timeout=300, check=False, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout


def _row(out: str, label: str) -> dict:
    """The timing row and the rows/calls row of ``label``."""
    lines = out.splitlines()
    # timing rows start with a decimal, rows/calls rows with integers, exact rows "<int> permutations"
    timing = [ln for ln in lines if re.match(re.escape(label) + r"\s+\d+\.\d", ln)]
    assert len(timing) == 1, (label, timing)
    m = re.match(re.escape(label) + r"\s+" + r"\s+".join([NUM] * 6) + r"(\*?)\s*$", timing[0])
    assert m, timing[0]
    g = m.groups()
    counts = [ln for ln in lines if re.match(re.escape(label) + r"(\s+\d+){6}\s*$", ln)]
    assert len(counts) == 1, (label, counts)
    c = [int(x) for x in counts[0][len(label):].split()]
    return {"ours": float(g[0]), "captum": float(g[1]), "floor": float(g[2]),
            "captum_over_ours": float(g[3]), "ours_over_floor": float(g[4]), "diff": float(g[5]),
            "sampled": g[6] == "*", "rows": (c[0], c[1]), "floor_rows": c[2], "calls": (c[3], c[4]),
            "chunk": c[5]}


def test_table_structure(quick_output):
    out = quick_output
    assert out.startswith("LLM attribution timings on cpu, 1 torch thread(s)")
    assert "model: tiny GPT-2 (2 layers, 64 wide" in out
    assert re.search(r"1 prompts of 18-18 tokens", out)
    header = next(ln for ln in out.splitlines() if ln.startswith("method") and "s/prompt" in ln)
    for col in ("ours s/prompt", "Captum s/prompt", "floor s/prompt", "Captum/ours", "ours/floor",
                "max|ours-Captum|"):
        assert col in header
    rows = {label: _row(out, label) for label in LABELS}
    for label, r in rows.items():
        for k in ("ours", "captum", "floor"):
            assert r[k] > 0 and math.isfinite(r[k]), (label, k)
        # the ratio columns are the ratios of the printed medians (up to their rounding)
        assert r["captum_over_ours"] == pytest.approx(r["captum"] / r["ours"], rel=0.02, abs=0.01)
        assert r["ours_over_floor"] == pytest.approx(r["ours"] / r["floor"], rel=0.02, abs=0.01)
        assert r["sampled"] == (label in ("Shapley sampling", "KernelSHAP"))
    # Captum's LLMAttribution: one perturbed prompt per model call (18 tokens + the original)
    assert rows["token ablation"]["rows"][1] == rows["token ablation"]["calls"][1] == 19
    assert rows["KernelSHAP"]["calls"][1] == 260
    for label in ("token ablation", "Shapley sampling", "KernelSHAP"):
        ours_calls, captum_calls = rows[label]["calls"]
        assert ours_calls <= 4 < captum_calls, label  # ours: batch-size probe + a few chunks
    # IG: both batch the 50 steps (ours' 2 extra rows: the prompt's and the baseline's score;
    # 1 more: the batch-size probe); the floor runs the 50 steps
    assert rows["layer IG (embeddings)"]["rows"] == (53, 52)
    assert rows["layer IG (embeddings)"]["floor_rows"] == 50
    # perturbation floors run ours' model_rows (ablation: 18 units + the full and empty prompt)
    assert rows["token ablation"]["floor_rows"] == 20


def test_deterministic_methods_agree_with_captum(quick_output):
    out = quick_output
    for label in ("token ablation", "layer IG (embeddings)"):
        m = re.search(re.escape(f"agreement {label}: max |ours - Captum| = ") + NUM
                      + r" \(of max \|Captum\| " + NUM + r"; tol 1e-04\): (yes|NO)", out)
        assert m, label
        diff, scale, verdict = float(m.group(1)), float(m.group(2)), m.group(3)
        assert diff <= 1e-4 and verdict == "yes", (label, diff)
        assert scale > 0.1  # the attributions compared are not all ~0
        assert _row(out, label)["diff"] == pytest.approx(diff, rel=0.06)


def test_sampled_methods_against_exact_shapley(quick_output):
    out = quick_output
    m = re.search(r"\n(\d+) tokens, all (\d+) coalitions enumerated \(mean \|exact\| = " + NUM, out)
    assert m and int(m.group(1)) == 8 and int(m.group(2)) == 256
    scale = float(m.group(3))
    assert scale > 0
    found = {}
    for label in ("Shapley sampling", "KernelSHAP"):
        r = re.search(re.escape(label) + r"\s+(\d+) (permutations|coalitions)\s+" + NUM + r"\s+" + NUM
                      + r"\s+" + NUM + r"\s+" + NUM + r"\s+(yes|no)\s*$", out, flags=re.M)
        assert r, label
        found[label] = (float(r.group(3)), float(r.group(5)), r.group(7))
    # ours' KernelSHAP enumerates all 254 proper coalitions (260 >= 2^8 - 2): exact Shapley values
    ks_ours, ks_captum, ks_exact = found["KernelSHAP"]
    assert ks_exact == "yes" and ks_ours < 1e-6
    assert 0 < ks_captum < 0.25 * scale  # Captum samples: close, not exact
    sv_ours, sv_captum, sv_exact = found["Shapley sampling"]
    assert sv_exact == "no"
    assert 0 < sv_ours < 0.25 * scale and 0 < sv_captum < 0.25 * scale


def test_head_patching_and_token_matrix_agree_with_the_loops(quick_output):
    out = quick_output
    assert "head patching (attn_head_out at every position, 2 x 4 = 8 patches)" in out
    rows = {}
    for label in ("head patching", "token matrix"):
        line = [ln for ln in out.splitlines() if re.match(re.escape(label) + r"\s+\d+\.\d", ln)]
        assert len(line) == 1, (label, line)
        m = re.match(re.escape(label) + r"\s+" + r"\s+".join([NUM] * 6) + r"\s*$", line[0])
        assert m, line[0]
        ours, loop, ratio, calls_ours, calls_loop, diff = (float(x) for x in m.groups())
        assert ours > 0 and loop > 0 and ratio == pytest.approx(loop / ours, rel=0.02, abs=0.01)
        rows[label] = (calls_ours, calls_loop, diff)
        tol = "1e-05" if label == "head patching" else "1e-04"
        a = re.search(re.escape(f"agreement {label}: max |ours - loop| = ") + NUM + r" \(of max \|loop\| "
                      + NUM + re.escape(f"; tol {tol}): ") + r"(yes|NO)", out)
        assert a and a.group(3) == "yes" and float(a.group(1)) <= float(tol), (label, a and a.groups())
        assert float(a.group(2)) > 0.01  # the values compared are not all ~0
    # the loop: one forward per (layer, head) patch plus the clean run; one ablation per token
    assert rows["head patching"][1] == 2 * 4 + 1 and rows["head patching"][0] < rows["head patching"][1]
    assert rows["token matrix"][0] < rows["token matrix"][1]
