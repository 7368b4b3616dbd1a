"""Generate the API reference (a page per public module) and a page per registry entry.

Run by the mkdocs-gen-files plugin at every ``mkdocs build``: nothing it writes is kept in git.
"""

import importlib
import inspect
import pkgutil
import re

import griffe
import mkdocs_gen_files

import xai_suite as xs

PACKAGES = ["xai_suite", "xai_suite_timeseries", "xai_suite_tabular", "xai_suite_image", "xai_suite_llm"]
YES_NO = {True: "yes", False: "no"}
#: Packages that ship but are not API: the benchmark scripts (their command lines are documented
#: by ``python -m xai_suite.bench.scripts.NAME --help`` and ``xai-suite bench --help``).
NOT_API = ("xai_suite.bench.scripts",)


def markdown(rst: str) -> str:
    """numpydoc's inline reST (````code````, ``:role:`name```) as Markdown."""
    return re.sub(r":[a-z]+:`~?([^`]+)`", r"`\1`", rst.replace("``", "`"))


def class_doc(cls, defaults: dict) -> str:
    """The class's docstring as it is at run time (with the shared parameters its mixins
    document), its Parameters section as a table with each default."""
    out = []
    for section in griffe.Docstring(inspect.cleandoc(cls.__doc__ or ""), parser="numpy").parse():
        if section.kind.value == "parameters":
            rows = ["| parameter | type | default | description |", "|---|---|---|---|"]
            for p in section.value:
                default = f"`{defaults[p.name]!r}`" if p.name in defaults else "required"
                cells = [f"`{p.name}`", markdown(str(p.annotation or "")), default, markdown(p.description)]
                # a cell holds one line, and "|" would end it (inside code too): "a|b" reads "a/b"
                rows.append("| " + " | ".join(c.replace("\n", " ").replace("|", "/") for c in cells) + " |")
            out.append("### Parameters\n\n" + "\n".join(rows))
        elif isinstance(section.value, str):
            out.append(markdown(section.value))
    return "\n\n".join(out) + "\n"


def public_modules() -> list[str]:
    """Every module of the packages whose dotted name has no private part, less :data:`NOT_API`."""
    names = []
    for package in PACKAGES:
        names.append(package)
        path = importlib.import_module(package).__path__
        for info in pkgutil.walk_packages(path, prefix=package + "."):
            private = any(part.startswith("_") for part in info.name.split("."))
            if not private and not info.name.startswith(NOT_API):
                names.append(info.name)
    return sorted(names)


def write_reference() -> None:
    modules = public_modules()
    with mkdocs_gen_files.open("reference/index.md", "w") as fh:
        fh.write("# API reference\n\nThe core (`xai_suite`) and the modality adapters, module by module. "
                 "Explainer classes are documented on their "
                 "[registry entries' pages](../explainers/index.md).\n\n")
        for name in modules:
            fh.write(f"- [`{name}`]({name}.md)\n")
    for name in modules:
        with mkdocs_gen_files.open(f"reference/{name}.md", "w") as fh:
            fh.write(f"# `{name}`\n\n::: {name}\n")


def write_explainers() -> None:
    table = xs.list_explainers(available_only=False)
    with mkdocs_gen_files.open("explainers/index.md", "w") as fh:
        fh.write("# Explainers\n\nEvery registered entry (`xai-suite list`), with its own page.\n\n"
                 "| entry | family | modalities | models | summary |\n|---|---|---|---|---|\n")
        for row in table.itertuples():
            page = f"{row.library}/{row.name}.md"
            fh.write(f"| [`{row.qualified_name}`]({page}) | {row.family} | {row.modalities} | "
                     f"{row.model_kinds} | {row.summary} |\n")
    for row in table.itertuples():
        info = xs.explainer_info(row.qualified_name)
        tags = info.tags
        with mkdocs_gen_files.open(f"explainers/{row.library}/{row.name}.md", "w") as fh:
            fh.write(f"# `{info.qualified_name}`\n\n{info.summary}.\n\n")
            if info.reference:
                fh.write(f"**Reference:** {info.reference}\n\n")
            fh.write("| tag | value |\n|---|---|\n")
            fh.write(f"| family | {tags.family} |\n| modalities | {', '.join(tags.modalities)} |\n"
                     f"| model kinds | {', '.join(tags.model_kinds)} |\n")
            for tag in ("needs_baseline", "needs_fit", "stochastic", "has_convergence_delta",
                        "batch_invariant", "multi_input"):
                fh.write(f"| {tag.replace('_', ' ')} | {YES_NO[bool(getattr(tags, tag))]} |\n")
            if info.requires:
                fh.write(f"| requires | {', '.join(info.requires)} |\n")
            if tags.notes:
                fh.write(f"\n!!! note\n    {tags.notes}\n")
            fh.write(f"\n## `{info.cls.__module__}.{info.cls.__qualname__}`\n\n"
                     + class_doc(info.cls, info.params))


if __name__ in ("__main__", "<run_path>"):  # run by mkdocs-gen-files (runpy), not on import
    write_reference()
    write_explainers()
