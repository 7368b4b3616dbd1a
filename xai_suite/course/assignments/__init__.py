"""The shipped assignments, one module each (see :data:`xai_suite.course.core.ASSIGNMENT_MODULES`)."""
