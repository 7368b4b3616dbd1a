import subprocess
import sys
import textwrap

import pytest

import xai_suite as xs
from xai_suite.base import GradientExplainer
from xai_suite.cli import main
from xai_suite.testing import reference_problem

COLUMNS = ["name", "qualified_name", "library", "family", "modalities", "model_kinds",
           "needs_baseline", "stochastic", "recommended", "available", "summary", "reference"]


def test_list_explainers_columns_and_captum_coverage():
    df = xs.list_explainers()
    assert list(df.columns) == COLUMNS
    captum = set(df[df.library == "captum"].name)
    expected = {"saliency", "input_x_gradient", "integrated_gradients", "smoothgrad", "vargrad",
                "deeplift", "deeplift_shap", "gradient_shap", "guided_backprop", "deconvolution",
                "grad_cam", "guided_grad_cam", "feature_ablation", "feature_permutation",
                "occlusion", "shapley_value_sampling", "kernel_shap", "lime", "lrp"}
    assert expected <= captum
    assert df.qualified_name.is_unique
    assert (df.qualified_name == df.library + ":" + df.name).all()


def test_filters():
    tab = xs.list_explainers(modality="tabular")
    assert "captum:grad_cam" not in set(tab.qualified_name)
    assert "captum:saliency" in set(tab.qualified_name)
    fam = xs.list_explainers(family="perturbation")
    assert set(fam.family) == {"perturbation"}
    sk = xs.list_explainers(model_kind="sklearn")
    assert set(sk.family) <= {"perturbation", "surrogate", "counterfactual", "control"} and len(sk) >= 5
    assert set(xs.list_explainers(library="native").name) >= {"integrated_gradients"}
    with pytest.raises(ValueError, match="modality must be one of 'tabular'.*; got 'audio'"):
        xs.list_explainers(modality="audio")
    with pytest.raises(ValueError, match="family must be one of"):
        xs.list_explainers(family="gradients")


def test_alias_points_to_the_recommended_entry():
    assert xs.explainer_info("integrated_gradients").qualified_name == "native:integrated_gradients"
    assert xs.explainer_info("captum:integrated_gradients").library == "captum"
    assert xs.explainer_info("saliency").qualified_name == "captum:saliency"
    df = xs.list_explainers()
    rec = df[df.recommended]
    assert rec.name.is_unique and set(rec.name) == set(df.name)


def test_unknown_name_lists_close_matches():
    with pytest.raises(KeyError, match="did you mean.*'integrated_gradients'"):
        xs.explainer_info("integrated_gradient")
    with pytest.raises(KeyError, match="captum:occlusion"):
        xs.create_explainer("captum:oclusion", None)


def test_unknown_parameter_lists_close_matches():
    model, *_ = reference_problem("tabular")
    with pytest.raises(TypeError, match="'n_step' \\(did you mean 'n_steps'"):
        xs.create_explainer("integrated_gradients", model, n_step=10)
    with pytest.raises(TypeError, match="unknown parameter"):
        xs.explain(model, reference_problem("tabular")[3], method="saliency", baseline="zeros")


def test_info_lists_parameters_and_defaults():
    info = xs.explainer_info("captum:integrated_gradients")
    assert info.params["n_steps"] == 50 and info.params["quadrature"] == "gausslegendre"
    assert info.params["baseline"] == "zeros"
    text = str(info)
    assert "n_steps=50" in text and "gradient" in text and "Sundararajan" in text


def test_register_explainer_refuses_duplicates_and_bad_metadata(registry_snapshot):
    @xs.register_explainer("my_grad", library="mylib", modalities="tabular", model_kinds="torch")
    class MyGrad(GradientExplainer):
        """My gradient."""

        def __init__(self, model, *, scale: float = 1.0):
            self.model = model
            self.scale = scale

    assert xs.explainer_info("my_grad") is MyGrad.info
    assert MyGrad.info.tags.family == "gradient" and MyGrad.info.summary == "My gradient."
    with pytest.raises(ValueError, match="already registered"):
        xs.register_explainer("my_grad", library="mylib", modalities="tabular",
                              model_kinds="torch")(MyGrad)
    with pytest.raises(ValueError, match="modality must be one of"):
        xs.register_explainer("x", library="l", modalities="audio", model_kinds="torch")(MyGrad)
    with pytest.raises(TypeError, match="subclasses"):
        xs.register_explainer("x", library="l", modalities="tabular", model_kinds="torch")(dict)

    class Clashing(GradientExplainer):  # xs.explain(model, x, method=...) names the entry
        def __init__(self, model, *, method: str = "a", target: int = 0):
            self.model, self.method, self.target = model, method, target

    with pytest.raises(ValueError, match="'method', 'target' clash with the arguments of xs.explain"):
        xs.register_explainer("x", library="l", modalities="tabular", model_kinds="torch")(Clashing)


def test_missing_optional_dependency_names_the_extra(registry_snapshot):
    @xs.register_explainer("needs_llm", library="mylib", modalities="text",
                           model_kinds="hf_causal_lm", requires=("transformers_not_installed",))
    class NeedsLLM(GradientExplainer):
        def __init__(self, model):
            self.model = model

    assert "mylib:needs_llm" not in set(xs.list_explainers().qualified_name)
    row = xs.list_explainers(available_only=False).set_index("qualified_name").loc["mylib:needs_llm"]
    assert not row.available
    with pytest.raises(ImportError, match="transformers_not_installed"):
        xs.create_explainer("mylib:needs_llm", None)


def test_navigation_table():
    nav = xs.navigation_table()
    ig = nav[nav.name == "integrated_gradients"].iloc[0]
    assert ig.native == "tab, ts, img*" and ig.captum == "tab, ts, img"
    cam = nav[nav.name == "grad_cam"].iloc[0]
    assert cam.captum == "ts, img*"


def test_cli_list_formats(capsys):
    assert main(["list", "--format", "csv", "--modality", "tabular"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("family,name,")
    assert "grad_cam" not in out and "integrated_gradients" in out
    assert main(["list", "--library", "captum", "--family", "propagation"]) == 0
    out = capsys.readouterr().out
    assert "| propagation | lrp | tab, img |" in out  # native:lrp is the recommended one
    assert main(["list", "--entries", "--format", "csv"]) == 0
    assert "native:integrated_gradients" in capsys.readouterr().out


def test_cli_errors_and_info(capsys):
    assert main(["info", "intgrated_gradients"]) == 2
    assert "did you mean" in capsys.readouterr().err
    assert main(["list", "--library", "nope"]) == 1
    assert main(["info", "native:integrated_gradients"]) == 0
    assert "n_baseline_samples=1" in capsys.readouterr().out
    assert main(["baselines", "--modality", "tabular"]) == 0
    out = capsys.readouterr().out
    assert "training_mean" in out and "blur" not in out


def test_import_loads_no_backend():
    code = ("import sys, xai_suite as xs; xs.list_explainers(); "
            "print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'captum', 'shap', 'lime', 'transformers', 'TSInterpret', 'aeon'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


PLUGIN_PYPROJECT = """
[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"

[project]
name = "{name}"
version = "0.1"

[project.entry-points."xai_suite.{group}"]
{ep} = "{module}"
"""


def _install_plugin(tmp_path, name, group, module, source):
    src = tmp_path / f"src_{name}"
    (src / module).mkdir(parents=True)
    (src / module / "__init__.py").write_text(textwrap.dedent(source))
    (src / "pyproject.toml").write_text(
        PLUGIN_PYPROJECT.format(name=name, group=group, ep=name, module=module))
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(target), str(src)],
        check=True, capture_output=True, text=True,
    )
    return target


def test_third_party_plugin_is_listed_and_broken_plugin_warns(tmp_path):
    good = _install_plugin(tmp_path, "tiny-xai-plugin", "explainers", "tiny_xai_plugin", """
        import torch
        from xai_suite import register_explainer
        from xai_suite.base import Attribution, GradientExplainer

        @register_explainer("doubled_gradient", library="tiny", modalities=("tabular",),
                            model_kinds=("torch",))
        class Doubled(GradientExplainer):
            '''Twice the input gradient.'''

            def __init__(self, model, *, factor: float = 2.0):
                self.model = model
                self.factor = factor

            def _attribute(self, call, *, baselines, feature_mask):
                x = call.x.clone().requires_grad_(True)
                out = call.model.forward(x).gather(1, call.target_t[:, None]).sum()
                return Attribution(self.factor * torch.autograd.grad(out, x)[0])
        """)
    _install_plugin(tmp_path, "broken-xai-plugin", "adapters", "broken_xai_plugin",
                    "import transformers_is_not_installed_here\n")
    code = textwrap.dedent("""
        import warnings
        warnings.simplefilter("always")
        with warnings.catch_warnings(record=True) as caught:
            import xai_suite as xs
            df = xs.list_explainers(library="tiny")
        print("LISTED", list(df.qualified_name))
        print("WARNED", any("broken-xai-plugin" in str(w.message) for w in caught))
        from xai_suite.testing import check_explainer
        print("CHECKS", check_explainer("tiny:doubled_gradient"))
        try:
            xs.explainer_info("tiny:nothing")
        except KeyError as exc:
            print("ERROR", exc)
    """)
    env = {"PYTHONPATH": str(good), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert "LISTED ['tiny:doubled_gradient']" in out.stdout
    assert "WARNED True" in out.stdout
    assert "CHECKS ['result_and_metadata'" in out.stdout
    assert "broken-xai-plugin" in out.stdout and "failed to load" in out.stdout
