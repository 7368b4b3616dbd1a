"""Tabular adapter: datasets, DataFrames in and out, categorical pipelines, grouping, MLPs."""

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, PolynomialFeatures, StandardScaler

import xai_suite as xs
from xai_suite.explanation import decoded_frame
from xai_suite.modeling import fit_classifier
from xai_suite_tabular import MLP, FrameEncoder, TabularModel, column_groups, group_attributions


@pytest.fixture(scope="module")
def cancer():
    X, y = xs.datasets.load_tabular("breast_cancer", "train")
    Xt, yt = xs.datasets.load_tabular("breast_cancer", "test")
    return X, y, Xt, yt


@pytest.fixture(scope="module")
def mixed():
    X, y = xs.datasets.make_mixed_tabular(600, random_state=0)
    return X.iloc[:500], y[:500], X.iloc[500:].reset_index(drop=True), y[500:]


def _one_hot_pipeline(final):
    pre = ColumnTransformer([("cat", OneHotEncoder(), ["color", "size"])], remainder=StandardScaler())
    return make_pipeline(pre, final)


# -- datasets ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "shape", "n_classes"),
    [("breast_cancer", (569, 30), 2), ("wine", (178, 13), 3), ("diabetes", (442, 10), 0)],
)
def test_load_tabular_splits(name, shape, n_classes):
    X, y = xs.datasets.load_tabular(name, "all")
    Xa, ya = xs.datasets.load_tabular(name, "train")
    Xb, yb = xs.datasets.load_tabular(name, "test")
    assert X.shape == shape and len(Xa) + len(Xb) == shape[0]
    assert all(X.dtypes == np.float32)
    # the splits are disjoint and cover the set: every row appears once
    rows = pd.concat([Xa, Xb]).round(4).apply(tuple, axis=1)
    assert rows.nunique() == X.round(4).apply(tuple, axis=1).nunique() == len(rows)
    if n_classes:
        assert y.dtype == np.int64 and set(np.unique(y)) == set(range(n_classes))
        # stratified: class shares agree within one row
        for k in range(n_classes):
            assert abs((ya == k).mean() - (yb == k).mean()) < 2 / len(yb)
    else:
        assert y.dtype == np.float32
    again, _ = xs.datasets.load_tabular(name, "test")
    pd.testing.assert_frame_equal(again, Xb)


def test_load_tabular_standardize_uses_training_statistics():
    Xa, _ = xs.datasets.load_tabular("wine", "train", standardize=True)
    Xb, _ = xs.datasets.load_tabular("wine", "test", standardize=True)
    raw_a, _ = xs.datasets.load_tabular("wine", "train")
    raw_b, _ = xs.datasets.load_tabular("wine", "test")
    np.testing.assert_allclose(Xa.mean(), 0, atol=1e-5)
    np.testing.assert_allclose(Xa.std(ddof=0), 1, atol=1e-4)
    expected = (raw_b - raw_a.mean()) / raw_a.std(ddof=0)
    np.testing.assert_allclose(Xb.to_numpy(), expected.to_numpy(), rtol=1e-4, atol=1e-4)
    arr, _ = xs.datasets.load_tabular("wine", "test", as_frame=False)
    assert isinstance(arr, np.ndarray) and arr.dtype == np.float32


def test_load_tabular_errors():
    with pytest.raises(ValueError, match="breast_cancer"):
        xs.datasets.load_tabular("iris")
    with pytest.raises(ValueError, match="split"):
        xs.datasets.load_tabular("wine", "validation")
    with pytest.raises(ValueError, match="test_size"):
        xs.datasets.load_tabular("wine", test_size=1.5)


def test_make_mixed_tabular_follows_its_rule():
    X, y = xs.datasets.make_mixed_tabular(400, random_state=3)
    score = 2.0 * (X.color == "red") - 2.0 * (X["size"] == "L") + 0.1 * (X.age - 40)
    np.testing.assert_array_equal(y, (score > 0).astype(int))
    assert 0.2 < y.mean() < 0.8
    X2, y2 = xs.datasets.make_mixed_tabular(400, random_state=3)
    pd.testing.assert_frame_equal(X, X2)
    np.testing.assert_array_equal(y, y2)
    assert not xs.datasets.make_mixed_tabular(400, random_state=4)[0].equals(X)


# -- DataFrames in, names out -------------------------------------------------------------------
def test_dataframe_in_names_out(cancer, tmp_path):
    X, y, Xt, _ = cancer
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, y)
    rows = Xt.iloc[:5]
    exp = xs.explain(pipe, rows, method="captum:feature_ablation", baseline="training_mean", fit_data=X)
    assert exp.feature_names == tuple(X.columns)
    wide = exp.to_frame(wide=True)
    assert list(wide.columns) == list(X.columns) and wide.shape == (5, 30)
    np.testing.assert_array_equal(wide.to_numpy(), exp.attributions)
    long = exp.to_frame()
    assert set(long.feature) == set(X.columns)
    # numpy inputs give the same numbers, and take their names from the model
    same = xs.explain(pipe, rows.to_numpy(), method="captum:feature_ablation",
                      baseline="training_mean", fit_data=X.to_numpy())
    np.testing.assert_allclose(same.attributions, exp.attributions, rtol=1e-5, atol=1e-7)
    assert same.feature_names == exp.feature_names
    # ablation of one feature at a time to the mean: values agree with the model itself
    j = int(np.abs(exp.attributions[0]).argmax())
    moved = rows.iloc[:1].copy()
    moved.iloc[0, j] = X.iloc[:, j].mean()
    t = exp.target[0]
    drop = pipe.predict_proba(rows.iloc[:1])[0, t] - pipe.predict_proba(moved)[0, t]
    assert exp.attributions[0, j] == pytest.approx(drop, rel=1e-3, abs=1e-6)
    back = xs.load_explanation(exp.save(tmp_path / "e.npz"))
    assert back.feature_names == exp.feature_names
    with pytest.raises(ValueError, match="wide=True"):
        xs.Explanation(np.zeros((1, 2, 3), np.float32), np.zeros((1, 2, 3), np.float32),
                       np.zeros(1, int), np.zeros((1, 2)), "m").to_frame(wide=True)


def test_dataframe_columns_are_checked(cancer, mixed):
    X, y, Xt, _ = cancer
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, y)
    swapped = Xt.iloc[:3, ::-1]
    with pytest.raises(ValueError, match="another order"):
        xs.explain(pipe, swapped, method="captum:feature_ablation")
    with pytest.raises(ValueError, match="missing"):
        xs.explain(pipe, Xt.iloc[:3, 1:], method="captum:feature_ablation")
    # a model that does not know its columns: explain must see fit's columns, in order
    mlp = MLP(30, 2)
    e = xs.create_explainer("captum:feature_ablation", mlp, baseline="training_mean").fit(X)
    with pytest.raises(ValueError, match="same order"):
        e.explain(swapped)
    Xm, *_ = mixed
    with pytest.raises(TypeError, match="TabularModel"):
        xs.explain(mlp, Xm, method="saliency")


def test_mlp_on_standardised_frame():
    X, y = xs.datasets.load_tabular("breast_cancer", "train", standardize=True)
    Xt, yt = xs.datasets.load_tabular("breast_cancer", "test", standardize=True)
    torch.manual_seed(0)
    mlp = fit_classifier(MLP(30, 2), X.to_numpy(), y, epochs=30, random_state=0)
    acc = (mlp(torch.from_numpy(np.array(Xt))).argmax(1).numpy() == yt).mean()
    assert acc > 0.93
    exp = xs.explain(mlp, Xt.iloc[:8], method="native:integrated_gradients", n_steps=128)
    assert exp.feature_names == tuple(X.columns)
    scale = np.abs(exp.predictions).max()
    assert np.abs(exp.convergence_delta).max() < 0.01 * scale
    with pytest.raises(ValueError, match=r"\(N, 30\)"):
        mlp(torch.zeros(2, 29))
    with pytest.raises(ValueError, match="dropout"):
        MLP(3, 2, dropout=1.0)


def test_explain_all_classes_covers_every_output():
    X, y = xs.datasets.load_tabular("wine", "train", standardize=True)
    Xt, _ = xs.datasets.load_tabular("wine", "test", standardize=True)
    model = LogisticRegression(max_iter=1000).fit(X, y)
    e = xs.create_explainer("captum:feature_ablation", model, baseline="training_mean").fit(X)
    per_class = e.explain_all_classes(Xt.iloc[:6])
    assert len(per_class) == 3
    for k, exp in enumerate(per_class):
        np.testing.assert_array_equal(exp.target, k)
        np.testing.assert_array_equal(exp.attributions, e.explain(Xt.iloc[:6], k).attributions)
    # probabilities sum to 1, so every feature's effects over the classes sum to 0
    total = sum(exp.attributions for exp in per_class)
    np.testing.assert_allclose(total, 0, atol=1e-5)


# -- categorical columns ------------------------------------------------------------------------
def test_frame_encoder_round_trip_and_errors(mixed):
    X, *_ = mixed
    enc = FrameEncoder(X)
    assert list(enc.categories_) == ["color", "size"]
    codes = enc.encode(X)
    assert codes.dtype == np.float32 and codes.shape == X.shape
    np.testing.assert_array_equal(codes[:, 3], X["size"].cat.codes)  # pandas' category order
    back = enc.decode(codes)
    pd.testing.assert_frame_equal(back[["color", "size"]], X[["color", "size"]].reset_index(drop=True))
    np.testing.assert_allclose(back.age, X.age, rtol=1e-6)
    bad = codes.copy()
    bad[0, 2] = 0.5
    with pytest.raises(ValueError, match="'color' got code 0.5"):
        enc.decode(bad)
    other = X.copy()
    other["color"] = other["color"].astype(str)
    other.loc[other.index[0], "color"] = "purple"
    with pytest.raises(ValueError, match="purple"):
        enc.encode(other)
    with pytest.raises(ValueError, match="columns"):
        enc.encode(X[["age", "color"]])
    with pytest.raises(TypeError, match="DataFrame"):
        FrameEncoder(X.to_numpy())


def test_tabular_model_explains_original_columns(mixed):
    X, y, Xt, yt = mixed
    pipe = _one_hot_pipeline(LogisticRegression(max_iter=1000)).fit(X, y)
    assert pipe.score(Xt, yt) > 0.9
    model = TabularModel(pipe, X)
    np.testing.assert_allclose(model(model.encode(Xt)), pipe.predict_proba(Xt), rtol=1e-5)
    exp = xs.explain(model, Xt.iloc[:40], method="captum:shapley_value_sampling", n_samples=10,
                     baseline="training_sample", fit_data=X, random_state=0)
    assert exp.feature_names == tuple(X.columns) and exp.attributions.shape == (40, 5)
    mean_abs = pd.Series(np.abs(exp.attributions).mean(0), index=exp.feature_names)
    # the planted columns carry the attribution; income and noise (irrelevant) next to none
    assert mean_abs[["income", "noise"]].max() < 0.1 * mean_abs[["color", "size", "age"]].min()
    # the explanation carries the categories, and shows (and saves) the inputs by their labels
    assert exp.categories == {"color": ("blue", "green", "red"), "size": ("S", "M", "L")}
    shown = decoded_frame(exp.inputs, exp.feature_names, exp.categories)
    labels = Xt.iloc[:40][["color", "size"]].astype(str).to_numpy()
    assert (shown[["color", "size"]].to_numpy() == labels).all()
    np.testing.assert_allclose(shown.age, Xt.age.iloc[:40], rtol=1e-6)
    with pytest.raises(ValueError, match="'size' holds code 3"):
        decoded_frame(np.c_[exp.inputs[:1, :3], [[3.0, 0.0]]], exp.feature_names, exp.categories)
    with pytest.raises(ValueError, match="not among feature_names"):
        xs.Explanation(exp.attributions, exp.inputs, exp.target, exp.predictions, exp.method,
                       feature_names=exp.feature_names, categories={"colour": ("a",)})
    with pytest.raises(ValueError, match="integer codes"):
        xs.explain(model, Xt.iloc[:2], method="captum:feature_ablation", baseline="training_mean",
                   fit_data=X)


def test_grouped_one_hot_attributions_equal_column_attributions(mixed):
    """An additive model: ablating an original column equals the sum over its one-hot features."""
    X, _, Xt, _ = mixed
    target = 2.0 * (X.color == "red") - 1.5 * (X["size"] == "L") + 0.1 * X.age - 0.3 * X.noise
    pipe = _one_hot_pipeline(LinearRegression()).fit(X, target)
    pre, reg = pipe[:-1], pipe[-1]
    groups = column_groups(pre, X)
    names = [X.columns[g] for g in groups]
    assert names.count("color") == 3 and names.count("size") == 3 and len(groups) == 9
    rows, reference = Xt.iloc[:10], Xt.iloc[[20]]
    model = TabularModel(pipe, X)
    raw = xs.explain(model, rows, method="captum:feature_ablation",
                     baselines=model.encode(reference)[0])
    z = pre.transform(rows)
    hot = xs.explain(reg, z, method="captum:feature_ablation", baselines=pre.transform(reference)[0])
    grouped = group_attributions(hot, groups, rows)
    assert grouped.feature_names == tuple(X.columns)
    members = np.stack([hot.attributions[:, groups == g].sum(1) for g in range(5)], 1)
    np.testing.assert_allclose(grouped.attributions, members, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(grouped.attributions.sum(1), hot.attributions.sum(1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grouped.attributions, raw.attributions, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="one integer label per feature"):
        group_attributions(hot, groups[:-1], rows)
    with pytest.raises(ValueError, match="every label"):
        group_attributions(hot, np.where(groups == 4, 5, groups), rows)
    poly = make_pipeline(
        ColumnTransformer([("p", PolynomialFeatures(2), ["age", "noise"])], remainder="drop")).fit(X)
    with pytest.raises(ValueError, match="depends on both"):
        column_groups(poly, X)


def test_xs_explain_finds_tabular_counterfactuals():
    X, y = xs.datasets.load_tabular("wine", "train", standardize=True)
    Xt, _ = xs.datasets.load_tabular("wine", "test", standardize=True)
    model = LogisticRegression(max_iter=1000).fit(X, y)
    exp = xs.explain(model, Xt.iloc[:5], method="native:nearest_unlike_neighbor", fit_data=X)
    assert isinstance(exp, xs.CounterfactualExplanation) and exp.valid.all()
    assert exp.feature_names == tuple(X.columns)
    np.testing.assert_array_equal(model.predict(pd.DataFrame(exp.counterfactuals, columns=X.columns)),
                                  exp.target)
