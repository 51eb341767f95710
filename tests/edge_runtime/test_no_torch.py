"""The runtime must work where torch cannot be imported (CONVENTIONS.md, rule 1)."""

import subprocess
import sys
import textwrap

from tests.conftest import REPO

BLOCK_TORCH = textwrap.dedent(
    """
    import sys
    class _NoTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError("torch is blocked for this test")
    sys.meta_path.insert(0, _NoTorch())
    """
)


def run_without_torch(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", BLOCK_TORCH + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )


def test_blocker_really_blocks_torch():
    r = run_without_torch("import torch")
    assert r.returncode != 0 and "blocked" in r.stderr


def test_edge_runtime_imports_without_torch():
    r = run_without_torch(
        """
        import edge_runtime, edge_runtime.model, edge_runtime.metrics, edge_runtime.cli_support
        assert "torch" not in sys.modules
        print("ok")
        """
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"


def test_every_runtime_module_imports_without_torch():
    """Not only the modules a plain run loads: the station's (--log, --serve), the live sources', the heatmap's.
    Modules of an extra that is not installed are skipped, as their own import says."""
    r = run_without_torch(
        """
        import importlib, pkgutil, edge_runtime
        done = []
        for info in pkgutil.walk_packages(edge_runtime.__path__, "edge_runtime."):
            try:
                importlib.import_module(info.name)
            except ImportError as exc:
                if "torch" in str(exc):
                    raise
                continue  # an extra not installed here (the station's web view needs starlette)
            done.append(info.name)
        assert "torch" not in sys.modules, "a runtime module imported torch"
        print(len(done))
        """
    )
    assert r.returncode == 0, r.stderr
    assert int(r.stdout.strip()) >= 40  # every module was imported, not a handful


def test_training_without_torch_names_the_extra():
    r = run_without_torch("import train.main")
    assert r.returncode != 0
    assert "'.[train]'" in r.stderr


def test_the_export_api_without_torch_names_the_extra():
    """The README's `export.main.export_onnx(...)` on the base install was "ModuleNotFoundError: No module named
    'torch'" from export/cam.py; train.main named the extra already."""
    r = run_without_torch("from export.main import export_onnx")
    assert r.returncode != 0
    assert "MissingExtraError: torch is not installed" in r.stderr and "'.[train]'" in r.stderr, r.stderr


def test_edge_infer_help_and_a_real_run_work_without_torch(tiny_model, tmp_path):
    from tests.edge_runtime.conftest import write_parts

    write_parts(tmp_path / "parts", [10, 220])
    args = ["--model", str(tiny_model), "--source", str(tmp_path / "parts"), "--json"]
    r = run_without_torch(
        f"""
        import json
        from click.testing import CliRunner
        from edge_runtime.cli import main
        help_ = CliRunner().invoke(main, ["--help"])
        assert help_.exit_code == 0 and "--camera" in help_.output, help_.output
        res = CliRunner().invoke(main, {args!r})
        assert res.exit_code == 0, res.output
        assert [json.loads(x)["defective"] for x in res.stdout.splitlines()] == [False, True]
        assert "torch" not in sys.modules
        print("ok")
        """
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"


def test_training_scripts_run_with_python_m_name_the_missing_extra_in_one_line():
    """In the runtime-only install `python -m train.loc_head`, `python -m export.ship` and `python -m
    export.quant_study` ended in a traceback (MissingExtraError, No module named 'torch'), exit 1, where
    train-model and export-onnx give one line and exit 8."""
    for module in ("train.loc_head", "export.ship", "export.quant_study"):
        r = run_without_torch(f"import runpy; sys.argv = ['-m', '--help']; runpy.run_module({module!r}, "
                              "run_name='__main__', alter_sys=True)")  # fmt: skip
        assert r.returncode == 8, (module, r.stderr)
        assert r.stderr.strip().splitlines() == [
            "error: torch is not installed; install the extra in the defect-edge checkout with: "
            "pip install -c constraints.txt '.[train]'"
        ], (module, r.stderr)
