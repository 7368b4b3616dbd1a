"""The course framework: every reference passes its checks, known-wrong solutions fail with a
message naming the broken property, and the command line lists, writes starters and grades."""

import math
import subprocess
import sys
import textwrap

import pytest
from scipy.stats import norm

from xai_suite.cli import main
from xai_suite.course import check_file, check_function, get_assignment, init_assignment, list_assignments
from xai_suite.course.core import assert_close

SEEDS = (0, 1, 2)


@pytest.mark.parametrize("name", [a.name for a in list_assignments()])
def test_every_reference_gets_full_marks(name):
    a = get_assignment(name)
    for seed in SEEDS:
        report = check_function(name, a.reference, seed=seed)
        assert report.passed, str(report)
        assert report.score == a.max_score > 0


@pytest.mark.parametrize("name", [a.name for a in list_assignments()])
def test_every_starter_scores_zero_and_says_it_is_not_implemented(name, tmp_path):
    path = init_assignment(name, tmp_path)
    report = check_file(name, path, seed=0)
    assert report.score == 0
    assert "not implemented yet" in str(report)


def _wald(successes, n, confidence=0.95):
    z = norm.ppf(0.5 + confidence / 2)
    p = successes / n
    half = z * math.sqrt(p * (1 - p) / n)
    return max(0.0, p - half), min(1.0, p + half)


def test_the_wald_interval_fails_the_wilson_checks_with_a_hint():
    report = check_function("wilson", _wald, seed=0)
    assert not report.passed
    assert {"textbook", "edges"} <= set(report.failed())
    text = str(report)
    assert "is empty" in text and "Wald" in text
    assert text.strip().endswith("check(s) failed)")


def test_a_crashing_solution_is_reported_with_its_line(tmp_path):
    path = tmp_path / "mine.py"
    path.write_text("def wilson_interval(k, n, confidence=0.95):\n    return 1 / 0\n")
    report = check_file("wilson", path, seed=0)
    assert report.score == 0
    assert "raised ZeroDivisionError" in str(report) and "line 2 of mine.py" in str(report)


def test_same_seed_same_inputs():
    calls = []

    def spy(k, n, confidence=0.95):
        calls.append((k, n, confidence))
        return get_assignment("wilson").reference(k, n, confidence)

    check_function("wilson", spy, seed=5)
    first, calls[:] = list(calls), []
    check_function("wilson", spy, seed=5)
    assert calls == first
    check_function("wilson", spy, seed=6)
    assert calls != first


def test_errors_name_what_was_expected(tmp_path):
    with pytest.raises(KeyError, match="known: .*wilson"):
        get_assignment("nope")
    path = tmp_path / "wrong_name.py"
    path.write_text("def wilson(k, n):\n    return 0, 1\n")
    with pytest.raises(AttributeError, match="defines no function 'wilson_interval'"):
        check_file("wilson", path)
    with pytest.raises(FileNotFoundError):
        check_file("wilson", tmp_path / "missing.py")
    with pytest.raises(AssertionError, match=r"shape \(3,\); expected \(2,\)"):
        assert_close([1, 2, 3], [1, 2], what="x")


def test_init_never_overwrites_a_students_file(tmp_path):
    path = init_assignment("wilson", tmp_path)
    path.write_text("my work")
    with pytest.raises(FileExistsError, match="may hold your work"):
        init_assignment("wilson", tmp_path)
    assert path.read_text() == "my work"


def test_command_line_list_init_check(tmp_path, capsys):
    assert main(["course", "list"]) == 0
    assert "wilson_interval()" in capsys.readouterr().out
    assert main(["course", "init", "wilson", str(tmp_path)]) == 0
    starter = tmp_path / "wilson.py"
    assert main(["course", "check", "wilson", str(starter), "--seed", "0"]) == 1
    assert "score: 0/" in capsys.readouterr().out
    solved = tmp_path / "solved.py"
    solved.write_text(textwrap.dedent("""
        from xai_suite.course.assignments.wilson import reference as wilson_interval
    """))
    assert main(["course", "check", "wilson", str(solved), "--seed", "0"]) == 0
    assert "full marks" in capsys.readouterr().out
    assert main(["course", "init", "wilson", str(tmp_path)]) == 2
    assert "left alone" in capsys.readouterr().err


def test_the_installed_command_grades(tmp_path):
    path = init_assignment("wilson", tmp_path)
    res = subprocess.run([sys.executable, "-m", "xai_suite.cli", "course", "check", "wilson", str(path),
                          "--seed", "1"], capture_output=True, text=True, check=False)
    assert res.returncode == 1 and "checks seeded with 1" in res.stdout
