"""What every bad-input test checks of a ``pvd-ti`` run: exit code 2, no traceback, one
``Error:`` line saying what is wrong."""

from __future__ import annotations

from click.testing import CliRunner, Result

from taichi_pvd_cli.main import main


def invoke(*args) -> Result:
    """Run ``pvd-ti ARGS...`` in this process (arguments converted to strings)."""
    return CliRunner().invoke(main, [str(a) for a in args])


def error_line(output: str, *fragments: str) -> str:
    """The one ``Error:`` line of ``output``, which holds every fragment (and no traceback)."""
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, output
    for fragment in fragments:
        assert fragment in errors[0], f"{fragment!r} not in {errors[0]!r}"
    return errors[0]


def assert_user_error(result: Result, *fragments: str) -> str:
    """Exit code 2 and one ``Error:`` line holding every fragment; returns that line."""
    assert result.exit_code == 2, result.output + repr(result.exception)
    return error_line(result.output, *fragments)
