"""What the command-line tests share: run `brainseg` in-process, and the one-line error every failure gives."""

from __future__ import annotations

import pytest

from brainseg_gui import cli


def run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    """`brainseg ARGV...` in this process: (exit status, stdout, stderr)."""
    status = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def one_error_line(err: str) -> str:
    """The single `brainseg: error: ...` line a failure prints (asserts there is exactly one)."""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("brainseg: error: "), err
    assert "Traceback" not in err
    return lines[0]
