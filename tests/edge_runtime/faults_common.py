"""What the fault suites share: the hang guard, the in-process run and the promises every case keeps (a documented
exit code, no traceback, at most one ``error:`` line, pure JSON lines on stdout)."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from edge_runtime.cli import main
from edge_runtime.errors import ExitCode
from tests.edge_runtime import fault_cases as fc
from tests.edge_runtime.conftest import write_parts

GOOD_LEVELS = [10, 220]  # one ok, one defective with the tiny model


HANG_LIMIT_S = 60


@pytest.fixture(autouse=True)
def no_hang():
    """Fail a case that takes longer than HANG_LIMIT_S instead of hanging the suite (a blocked read included)."""

    def expired(signum, frame):
        raise TimeoutError(f"fault case still running after {HANG_LIMIT_S} s: a hang")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, HANG_LIMIT_S)
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)


def invoke(args: list[str], *, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, [*args, "--json"], env=env)


def check(result: Result, code: int, *, error_lines: int) -> list[dict]:
    """The common promises; returns the records (stdout must be pure JSON lines)."""
    text = result.stdout + result.stderr
    assert result.exit_code == code, (result.exit_code, result.stderr[-800:])
    assert "Traceback" not in text, text[-2000:]
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == error_lines, result.stderr
    if error_lines and code not in (ExitCode.OUTPUT_ERROR,):
        assert result.stderr.strip().splitlines()[-1] == errors[0]
        # no summary after a setup error; every item unreadable (exit 3) ends its summary with the line
        assert "summary:" not in result.stderr or errors[0].startswith("error: no verdict:")
    return [json.loads(line) for line in result.stdout.splitlines()]


def image_case(tmp_path: Path, name: str, writer: fc.Writer, tiny_model: Path) -> None:
    """One bad entry among two good images: three records, the run goes on, exit 0."""
    folder = tmp_path / "parts"
    write_parts(folder, GOOD_LEVELS)
    writer(folder / f"bad_{name}")
    recs = check(invoke(["--model", str(tiny_model), "--source", str(folder)]), ExitCode.OK, error_lines=0)
    assert len(recs) == 3
    bad = next(r for r in recs if Path(r["source"]).name.startswith("bad_"))
    assert bad["error"] is None or (bad["label"] is None and bad["score"] is None and bad["source"] in bad["error"])
    if bad["error"] is None:
        assert 0.0 <= bad["score"] <= 1.0 and bad["label"] in ("ok", "defective")
    good = sorted((r for r in recs if r is not bad), key=lambda r: r["source"])
    assert [r["defective"] for r in good] == [False, True]


def _ids(cases: list[tuple]) -> list[str]:
    return [c[0] for c in cases]
