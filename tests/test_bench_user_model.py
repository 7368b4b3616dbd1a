"""The benchmark on the user's own model: a DataFrame with string and categorical columns and a
scikit-learn pipeline, named in a suite through a plugin module, run with `xai-suite bench`:
no float32 cast, zero failed units, perturbations that stay valid codes, explainers only for
the model kinds they take, metrics only where they mean something, one deletion space per
report, ranks whose intervals overlap marked."""

import textwrap

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import forget_plugins

from xai_suite.bench import ConfigError, ResultsStore, expand_units, load_suite, not_applicable
from xai_suite.bench.models import ZOO
from xai_suite.bench.report import rank_ranges
from xai_suite.cli import main
from xai_suite.datasets import DATASETS
from xai_suite.metrics.registry import list_metrics, metric_info
from xai_suite.registry import explainer_info

PLUGIN = textwrap.dedent('''
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from xai_suite.bench.models import ZOO
    from xai_suite.datasets import list_datasets
    from xai_suite.plugin import register_dataset, register_model

    if "user_frame" not in list_datasets():
        @register_dataset("tabular")
        def user_frame(n_samples: int = 160, random_state: int = 0):
            """make_mixed_tabular plus a string column ('private', 'public', 'self')."""
            from xai_suite_tabular import make_mixed_tabular

            X, y = make_mixed_tabular(n_samples, random_state=random_state)
            X["work"] = X["size"].map({"S": "private", "M": "public", "L": "self"}).astype(str)
            return X, y

    if "user_pipeline" not in ZOO:
        @register_model("user_pipeline", modality="tabular", kind="sklearn", frames=True)
        def user_pipeline(X, y, *, random_state):
            """One-hot categoricals, scaled numbers, logistic regression."""
            cats = ["color", "size", "work"]
            pre = ColumnTransformer([("cat", OneHotEncoder(handle_unknown="ignore"), cats),
                                     ("num", StandardScaler(), ["age", "income", "noise"])])
            return make_pipeline(pre, LogisticRegression(max_iter=500, random_state=random_state)).fit(X, y)
''')

SUITE = textwrap.dedent('''
    name = "user-frame"
    seeds = [0, 1]
    n_instances = 5
    imports = ["plugin.py"]
    baselines = ["training_sample"]

    [[datasets]]
    loader = "user_frame"
    label = "mine"

    [[models]]
    name = "user_pipeline"

    [[explainers]]
    name = "captum:feature_ablation"
    [[explainers]]
    name = "captum:saliency"
    [[explainers]]
    name = "captum:integrated_gradients"
    [[explainers]]
    name = "native:kernel_shap"
    params = { n_samples = 64 }

    [[metrics]]
    name = "deletion_auc"
    params = { n_steps = 6 }
    [[metrics]]
    name = "completeness_error"
''')


@pytest.fixture(scope="module")
def user_run(tmp_path_factory):
    """`xai-suite bench suite.toml --out run` then `xai-suite report run`, in a tmp folder."""
    d = tmp_path_factory.mktemp("bench_user")
    (d / "plugin.py").write_text(PLUGIN)
    (d / "suite.toml").write_text(SUITE)
    mp = pytest.MonkeyPatch()
    mp.setenv("XAI_SUITE_CACHE", str(d / "cache"))
    mp.chdir(d)
    assert main(["bench", str(d / "suite.toml"), "--out", str(d / "run")]) == 0
    assert main(["report", str(d / "run")]) == 0
    yield d
    mp.undo()
    DATASETS._entries.pop("user_frame", None)
    ZOO._entries.pop("user_pipeline", None)
    forget_plugins(d)


def test_user_dataframe_suite_runs_with_zero_failed_units(user_run):
    with ResultsStore(user_run / "run") as store:
        units, rows, meta = store.units(), store.results(), store.meta()
    assert len(units) == 2 * 2 and (units.status == "done").all()  # feature ablation, KernelSHAP x 2 seeds
    assert set(units.explainer) == {"captum:feature_ablation", "native:kernel_shap"}
    # the gradient entries crossed with the pipeline are no units: listed, with why
    skipped = {p["explainer"]: p["reason"] for p in meta["plan"]["not_applicable"]}
    assert set(skipped) == {"captum:saliency", "captum:integrated_gradients"}
    assert all("explains torch models; user_pipeline is callable" in r for r in skipped.values())
    # completeness_error only for the method with a completeness property (KernelSHAP's efficiency)
    comp = rows[rows.metric == "completeness_error"]
    assert set(comp.explainer) == {"native:kernel_shap"} and (comp.value < 1e-4).all()
    assert meta["plan"]["metrics_not_applicable"][0]["explainer"] == "captum:feature_ablation"
    assert len(rows[rows.metric == "deletion_auc"]) == 2 * 2 * 5


def test_the_frame_is_not_cast_and_explainers_see_codes(user_run):
    from xai_suite.bench.runner import load_data, load_model

    suite = load_suite(user_run / "suite.toml")
    data = load_data(suite, "mine", 0)
    assert not pd.api.types.is_numeric_dtype(data["frame_train"]["work"])  # strings, as given
    assert "private" in set(data["frame_train"]["work"])
    assert data["coded"] == ["color", "size", "work"]
    assert data["X_train"].dtype == np.float32
    work = data["X_train"][:, list(data["frame_train"].columns).index("work")]
    assert set(np.unique(work)) == {0.0, 1.0, 2.0}
    model = load_model(suite, "mine", "user_pipeline", 0)
    decoded, frame = model.decode(data["X_test"]), data["frame_test"]  # the codes stand for the rows
    for col in frame.columns:
        if col in data["coded"]:
            assert decoded[col].astype(str).tolist() == frame[col].astype(str).tolist()
        else:
            np.testing.assert_allclose(decoded[col], frame[col], rtol=1e-6)


def test_a_model_taking_arrays_refuses_categorical_columns(user_run):
    from xai_suite.bench.runner import load_model

    suite = load_suite({"name": "arrays", "imports": [str(user_run / "plugin.py")],
                        "datasets": [{"loader": "user_frame", "label": "mine"}], "models": ["logreg"],
                        "explainers": ["captum:feature_ablation"]})
    with pytest.raises(ValueError, match=r"categorical columns \['color', 'size', 'work'\]; model 'logreg' "
                                         "takes numeric arrays: register a zoo model with frames=True"):
        load_model(suite, "mine", "logreg", 0)


def test_the_report_states_its_deletion_space_and_marks_what_does_not_apply(user_run):
    text = (user_run / "run" / "report" / "report.md").read_text()
    assert "- deletion space: removal metrics" in text
    assert "follow the probability of the explained class" in text
    assert "0 failed" in text and "2 explainer x model pairs not applicable" in text
    section = text[text.index("## Not applicable"):]
    assert "captum:saliency explains torch models" in section
    assert "| captum:feature_ablation | completeness_error | completeness_error needs an explainer with " \
           "has_convergence_delta |" in section
    row = next(ln for ln in text.splitlines() if ln.startswith("| captum:feature_ablation | training_sample"))
    assert row.split(" | ")[3] == "n/a"  # its completeness_error cell
    with ResultsStore(user_run / "run") as store:
        meta, curves = store.meta(), store.curves()
    assert meta["plan"]["deletion_output"] == "probability"
    assert meta["metrics"]["deletion_auc"]["output"].startswith("probability")
    assert ((curves.value >= 0) & (curves.value <= 1)).all()  # predict_proba of the pipeline


def test_report_ranks_mark_overlapping_intervals(user_run):
    text = (user_run / "run" / "report" / "report.md").read_text()
    summary = pd.read_csv(user_run / "run" / "report" / "summary.csv")
    d = summary[summary.metric == "deletion_auc"].set_index("explainer")
    start = text.index("| method | baseline |")
    ranks = {ln.split(" | ")[0].strip("| "): ln.split(" | ")[2]
             for ln in text[start:].splitlines()[2:4]}
    a, b = d.loc["captum:feature_ablation"], d.loc["native:kernel_shap"]
    overlap = a.low <= b.high and b.low <= a.high
    assert set(ranks.values()) == ({"1-2"} if overlap else {"1", "2"})


def test_rank_ranges_give_ranges_where_intervals_overlap():
    mean, low, high = [0.85, 0.9, 0.15, np.nan], [0.8, 0.85, 0.1, np.nan], [0.9, 0.95, 0.2, np.nan]
    assert rank_ranges(mean, low, high, higher_is_better=True) == ["1-2", "1-2", "3", "-"]
    assert rank_ranges(mean, low, high, higher_is_better=False) == ["2-3", "2-3", "1", "-"]
    # no interval (n < 2): the mean alone
    assert rank_ranges([1.0, 2.0], [np.nan, 1.5], [np.nan, 2.5], True) == ["2", "1"]


# -- perturbations of coded columns --------------------------------------------------------------
@pytest.fixture(scope="module")
def tabular_model():
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from xai_suite_tabular import TabularModel, make_mixed_tabular

    X, y = make_mixed_tabular(200, random_state=1)
    pre = ColumnTransformer([("cat", OneHotEncoder(), ["color", "size"]),
                             ("num", StandardScaler(), ["age", "income", "noise"])])
    pipe = make_pipeline(pre, LogisticRegression(max_iter=500)).fit(X, y)
    return TabularModel(pipe, X), X


def test_feature_ablation_on_a_tabular_model_refuses_zeros(tabular_model):
    import xai_suite as xs

    model, X = tabular_model
    for name in ("captum:feature_ablation", "captum:occlusion", "captum:shapley_value_sampling",
                 "captum:kernel_shap", "captum:lime"):
        with pytest.raises(ValueError, match="coded categorical columns .*baseline='training_sample'"):
            xs.create_explainer(name, model).explain(X.iloc[:3])


def test_feature_ablation_with_training_sample_ablates_to_training_values(tabular_model):
    import xai_suite as xs

    model, X = tabular_model
    exp = xs.create_explainer("captum:feature_ablation", model, baseline="training_sample",
                              random_state=0).fit(X).explain(X.iloc[:8])
    codes = model.encode(X)
    b = exp.baselines[0]  # (N, F): one training row per instance
    assert not (b[:, [0, 1]] == 0).any()  # age and income are never replaced by 0
    assert all((codes == row).all(1).any() for row in b)  # every reference is a training row
    assert np.abs(exp.attributions).sum() > 0


def test_deletion_of_a_kernel_shap_explanation_keeps_codes_valid(tabular_model):
    import xai_suite as xs
    from xai_suite.metrics.faithfulness import deletion_auc, replacement_values

    model, X = tabular_model
    exp = xs.create_explainer("native:kernel_shap", model, n_samples=64, random_state=0).fit(X).explain(
        X.iloc[:6])
    assert exp.categories is not None and exp.baselines.shape[0] > 1
    ref = replacement_values(exp)
    coded = [exp.feature_names.index(c) for c in exp.categories]
    draws = exp.baselines[:, :, coded]
    assert np.array_equal(ref[:, coded], np.round(ref[:, coded]))  # whole codes, never fractional
    for i, j in np.ndindex(ref[:, coded].shape):  # the commonest code of the draws
        counts = np.bincount(draws[:, i, j].astype(int))
        assert counts[int(ref[i, coded[j]])] == counts.max()
    numeric = [j for j in range(ref.shape[1]) if j not in coded]
    np.testing.assert_allclose(ref[:, numeric], exp.baselines[:, :, numeric].mean(0), rtol=1e-6)
    values = deletion_auc(exp, model=model, n_steps=5)
    assert values.shape == (6,) and np.isfinite(values).all()


def test_removal_without_baselines_on_codes_asks_for_a_data_reference(tabular_model):
    import xai_suite as xs
    from xai_suite.baselines import TrainingSample
    from xai_suite.metrics.faithfulness import deletion_auc

    model, X = tabular_model
    exp = xs.create_explainer("captum:feature_permutation", model, random_state=0).explain(X.iloc[:6])
    assert exp.baselines is None
    with pytest.raises(ValueError, match="zeros are no reference for coded categorical columns"):
        deletion_auc(exp, model=model)
    ref = TrainingSample().fit(model.encode(X))
    assert np.isfinite(deletion_auc(exp, model=model, replacement=ref, n_steps=4)).all()


# -- applicability, deletion space -----------------------------------------------------------------
def test_completeness_applies_only_to_methods_with_a_completeness_property():
    info = metric_info("completeness_error")
    for name in ("captum:saliency", "captum:occlusion", "captum:feature_ablation"):
        assert "has_convergence_delta" in info.not_applicable(explainer_info(name).tags, "torch")
    for name in ("captum:integrated_gradients", "native:kernel_shap"):
        assert info.not_applicable(explainer_info(name).tags, "torch") is None
    assert metric_info("deletion_auc").not_applicable(explainer_info("captum:saliency").tags, "torch") is None
    reason = metric_info("randomisation_correlation").not_applicable(
        explainer_info("native:kernel_shap").tags, "sklearn")
    assert "takes torch models, not sklearn" in reason
    table = list_metrics().set_index("name")
    assert table.loc["completeness_error", "applies_to"] == "explainers with has_convergence_delta"


def _numeric_suite(**changes):
    cfg = {"name": "space", "seeds": [0], "n_instances": 3,
           "datasets": [{"loader": "load_tabular", "label": "cancer",
                         "params": {"name": "breast_cancer", "as_frame": False, "standardize": True}}],
           "models": [{"name": "mlp", "params": {"hidden": [8], "epochs": 3}}, "logreg"],
           "explainers": ["captum:saliency", "captum:feature_ablation"],
           "metrics": [{"name": "deletion_auc", "params": {"n_steps": 4}}]}
    return cfg | changes


def test_gradient_entries_crossed_with_sklearn_are_no_units():
    suite = load_suite(_numeric_suite())
    assert {(u.model, u.explainer) for u in expand_units(suite)} == {
        ("mlp", "captum:saliency"), ("mlp", "captum:feature_ablation"), ("logreg", "captum:feature_ablation")}
    assert [(p["model"], p["explainer"]) for p in not_applicable(suite)] == [("logreg", "captum:saliency")]


def test_deletion_space_is_one_choice_per_suite(tmp_path, monkeypatch):
    from xai_suite.batching import softmax
    from xai_suite.bench import run_suite

    monkeypatch.setenv("XAI_SUITE_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ConfigError, match=r"needs models that give logits; \['logreg'\] give probabilities"):
        load_suite(_numeric_suite(deletion_output="logit"))
    with pytest.raises(ConfigError, match="sets 'softmax'"):
        load_suite(_numeric_suite(metrics=[{"name": "deletion_auc", "params": {"softmax": True}}]))
    with pytest.raises(ConfigError, match="deletion_output must be one of"):
        load_suite(_numeric_suite(deletion_output="probabilities"))
    from xai_suite.bench.runner import instances, load_data, load_model

    for space in ("probability", "logit"):
        cfg = _numeric_suite(deletion_output=space, explainers=["captum:saliency"],
                             models=[{"name": "mlp", "params": {"hidden": [8], "epochs": 3}}])
        with ResultsStore(run_suite(cfg, tmp_path / space, progress=False)) as store:
            c, meta = store.curves(), store.meta()
        assert meta["plan"]["deletion_output"] == space
        start = c[c.step == 0].sort_values("instance")
        suite = load_suite(cfg)
        data, model = load_data(suite, "cancer", 0), load_model(suite, "cancer", "mlp", 0)
        rows = instances(len(data["X_test"]), 3, 0)
        assert start.instance.tolist() == rows.tolist()
        with torch.no_grad():
            out = model(torch.from_numpy(data["X_test"][rows])).double().numpy()
        expected = softmax(out).max(1) if space == "probability" else out.max(1)  # the predicted class
        np.testing.assert_allclose(start.value, expected, rtol=1e-5)
