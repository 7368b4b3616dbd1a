"""Course assignments that grade themselves: ``xai-suite course list|init|check``.

Each assignment gives a starter file with one function to write; ``check`` runs it on
fresh random inputs against our implementation and the properties the method must have,
and prints what passed, what failed (with a hint) and a score.
"""

from .core import (
    Assignment,
    Check,
    CheckFailed,
    Report,
    check_file,
    check_function,
    get_assignment,
    init_assignment,
    list_assignments,
    register_assignment,
)

__all__ = [
    "Assignment",
    "Check",
    "CheckFailed",
    "Report",
    "check_file",
    "check_function",
    "get_assignment",
    "init_assignment",
    "list_assignments",
    "register_assignment",
]
