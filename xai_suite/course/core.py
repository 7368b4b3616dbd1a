"""Self-grading assignments: a starter file, a reference solution, and checks with hints.

An :class:`Assignment` names the function a student writes, its starter file and our
reference solution, and lists :class:`Check` s: each calls the student's function on fresh
seeded random inputs and compares it with ours or tests a property the method must have; a
failed check says what broke, with what numbers, and gives a hint. The modules of
:data:`ASSIGNMENT_MODULES` register the assignments, imported when first listed.
"""

from __future__ import annotations

import importlib
import importlib.util
import secrets
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..catalog import Registry

#: Modules that register the shipped assignments, in course order.
ASSIGNMENT_MODULES = tuple(f"xai_suite.course.assignments.{name}" for name in
                           ("ig", "smoothgrad", "lrp", "kernel_shap", "nun", "dot", "wilson"))

ASSIGNMENTS: Registry[Assignment] = Registry("assignment", builtins=ASSIGNMENT_MODULES, plugins=False)


class CheckFailed(AssertionError):
    """Raised by a check: the message names the broken property and the numbers seen."""


@dataclass(frozen=True)
class Check:
    """One graded property of the student's function.

    Attributes
    ----------
    name : str
        Short name, e.g. ``"completeness"``.
    description : str
        The property, in one sentence.
    run : callable
        ``run(fn, rng)`` calls the student's ``fn`` on inputs drawn from ``rng`` and raises
        :class:`CheckFailed` (or ``AssertionError``) when the property does not hold.
    points : int
    hint : str
        What usually breaks it; printed when the check fails.
    """

    name: str
    description: str
    run: Callable[[Callable, np.random.Generator], None]
    points: int = 1
    hint: str = ""


@dataclass(frozen=True)
class Assignment:
    """A function to write, its starter file, our reference solution and the checks.

    Attributes
    ----------
    name : str
        Used on the command line: ``xai-suite course check NAME FILE``.
    title : str
    function : str
        Name of the function the student's file must define.
    starter : str
        Text of the starter file (the signature, a docstring, ``raise NotImplementedError``).
    reference : callable
        Our solution; it passes every check.
    checks : tuple of Check
    """

    name: str
    title: str
    function: str
    starter: str
    reference: Callable
    checks: tuple[Check, ...]

    @property
    def max_score(self) -> int:
        return sum(c.points for c in self.checks)


@dataclass
class CheckResult:
    """One check's outcome on a student's function: passed or not, and why."""

    check: Check
    passed: bool
    message: str = ""

    @property
    def points(self) -> int:
        return self.check.points if self.passed else 0


@dataclass
class Report:
    """Outcome of checking one function: per-check results and the score."""

    assignment: Assignment
    seed: int
    results: list[CheckResult] = field(default_factory=list)

    @property
    def score(self) -> int:
        return sum(r.points for r in self.results)

    @property
    def max_score(self) -> int:
        return self.assignment.max_score

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    def failed(self) -> list[str]:
        """Names of the failed checks."""
        return [r.check.name for r in self.results if not r.passed]

    def __str__(self) -> str:
        a = self.assignment
        lines = [f"{a.title} ({a.name}: {a.function}), checks seeded with {self.seed}"]
        for r in self.results:
            c = r.check
            mark = "PASS" if r.passed else "FAIL"
            lines.append(f"  [{mark}] {c.name} ({r.points}/{c.points}): {c.description}")
            if not r.passed:
                lines += [f"         {line}" for line in r.message.splitlines()]
                if c.hint:
                    lines.append(f"         hint: {c.hint}")
        verdict = "full marks" if self.passed else f"{len(self.failed())} check(s) failed"
        lines.append(f"score: {self.score}/{self.max_score} ({verdict})")
        return "\n".join(lines)


def register_assignment(assignment: Assignment) -> Assignment:
    """Add an assignment to the course (its name must be new)."""
    if not assignment.checks:
        raise ValueError(f"assignment {assignment.name!r} has no checks")
    return ASSIGNMENTS.add(assignment.name, assignment)


def define_assignment(name: str, title: str, function: str, starter: str, reference: Callable,
                      *checks: Check) -> Assignment:
    """Register the :class:`Assignment` of these fields, the checks last (an assignment module's end)."""
    return register_assignment(Assignment(name, title, function, starter, reference, checks))


def list_assignments() -> list[Assignment]:
    """The course's assignments, in course order."""
    return ASSIGNMENTS.values()


def get_assignment(name: str) -> Assignment:
    """An assignment by name; an unknown name raises with the known ones."""
    return ASSIGNMENTS.get(name)


def check_function(name: str, fn: Callable, *, seed: int | None = None) -> Report:
    """Run every check of assignment ``name`` on ``fn``.

    Parameters
    ----------
    name : str
    fn : callable
        The student's function.
    seed : int, optional
        Seeds the random inputs (each check gets its own stream); ``None`` draws a new seed,
        printed in the report so a failure can be reproduced.

    Returns
    -------
    Report
    """
    assignment = get_assignment(name)
    if not callable(fn):
        raise TypeError(f"{assignment.function} must be a function; got {type(fn).__name__}")
    seed = secrets.randbelow(2**31) if seed is None else int(seed)
    report = Report(assignment, seed)
    streams = np.random.SeedSequence(seed).spawn(len(assignment.checks))
    for check, stream in zip(assignment.checks, streams, strict=True):
        message = ""
        try:
            check.run(fn, np.random.default_rng(stream))
        except NotImplementedError:
            message = f"{assignment.function} is not implemented yet (it raises NotImplementedError)"
        except AssertionError as exc:  # CheckFailed included
            message = str(exc) or "assertion failed"
        except Exception as exc:  # the student's code raised: show where
            tb = traceback.extract_tb(exc.__traceback__)
            where = next((f" (line {f.lineno} of {Path(f.filename).name})" for f in reversed(tb)
                          if "xai_suite" not in Path(f.filename).parts), "")
            message = f"raised {type(exc).__name__}: {exc}{where}"
        report.results.append(CheckResult(check, not message, message))
    return report


def load_function(path, function: str) -> Callable:
    """Import the file at ``path`` and return its function ``function``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    module_name = f"_xai_suite_course_{path.stem}_{secrets.token_hex(4)}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look modules up there
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(module_name, None)
    fn = getattr(module, function, None)
    if fn is None:
        raise AttributeError(f"{path} defines no function {function!r}: keep the starter file's "
                             "function name")
    return fn


def check_file(name: str, path, *, seed: int | None = None) -> Report:
    """Check the function of assignment ``name`` defined in the student's file ``path``."""
    return check_function(name, load_function(path, get_assignment(name).function), seed=seed)


def init_assignment(name: str, directory) -> Path:
    """Write assignment ``name``'s starter file into ``directory``; never overwrites a file.

    Returns
    -------
    pathlib.Path
        The starter file, ``directory/NAME.py``.
    """
    assignment = get_assignment(name)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{assignment.name}.py"
    if path.exists():
        raise FileExistsError(f"{path} exists; it may hold your work, so it is left alone (move it "
                              "or choose another directory)")
    path.write_text(assignment.starter)
    return path


# -- helpers for writing checks ------------------------------------------------------------
def batched(fn: Callable, shape: tuple[int, ...], name: str, one: str) -> Callable:
    """``fn`` (of (M, D) rows) as the student's ``name``, which takes only batches (M, *shape)."""

    def guarded(X):
        X = np.asarray(X, dtype=float)
        if X.ndim != len(shape) + 1 or X.shape[1:] != tuple(shape):
            raise ValueError(f"{name} takes a batch of shape (M, {', '.join(map(str, shape))}); got shape "
                             f"{X.shape} (call {name}(x[None]) for {one})")
        return fn(X.reshape(len(X), int(np.prod(shape))))

    return guarded


def as_array(value, what: str) -> np.ndarray:
    """``value`` (array, tensor, list, number) as a float64 array, or CheckFailed saying why not."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise CheckFailed(f"{what} must be numbers (an array or tensor); got {type(value).__name__}") from exc
    if not np.isfinite(arr).all():
        raise CheckFailed(f"{what} contains NaN or infinite values")
    return arr


def assert_close(got, want, *, what: str, atol: float = 1e-6, rtol: float = 1e-5) -> None:
    """CheckFailed unless ``got`` has ``want``'s shape and values (to ``atol + rtol |want|``)."""
    got, want = as_array(got, what), np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        raise CheckFailed(f"{what} has shape {got.shape}; expected {want.shape}")
    err = np.abs(got - want)
    bad = err > atol + rtol * np.abs(want)
    if bad.any():
        i = np.unravel_index(int(np.argmax(err - rtol * np.abs(want))), err.shape)
        where = f" at index {tuple(int(j) for j in i)}" if got.ndim else ""
        raise CheckFailed(f"{what}: {int(bad.sum())} of {bad.size} values differ; largest "
                          f"difference {err[i]:.3g}{where} (got {got[i]:.6g}, expected {want[i]:.6g})")
