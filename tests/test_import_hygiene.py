"""Import rules (docs/architecture.md): the UI side never imports torch, the engine never textual."""

import pkgutil
import subprocess
import sys

TORCH_FREE = [
    "tui.app",
    "engine.worker.protocol",
    "engine.worker.client",
    "engine.training.config",
    "engine.errors",
    "engine.data.textio",
    "engine.data.sources",
    "engine.data.tokenizers",
    "engine.models.registry",
    "engine.runs.folders",
    "engine.device",
    "corpora",
    "seqplay.cli",
    "seqplay.commands.data",
]


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_torch_free_modules_do_not_import_torch():
    mods = TORCH_FREE
    code = "import importlib, sys\n"
    code += "".join(f"importlib.import_module({m!r})\n" for m in mods)
    code += "bad = [m for m in ('torch',) if m in sys.modules]\nprint(','.join(bad))\n"
    res = run_python(code)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "", f"torch imported by one of {mods}"


def all_modules(package: str) -> list[str]:
    """Every module of a package, sub-packages included, by its full dotted name."""
    pkg = __import__(package)
    return sorted(m.name for m in pkgutil.walk_packages(pkg.__path__, package + "."))


def test_walk_sees_nested_modules():
    mods = all_modules("engine")
    assert "engine.models.transformer" in mods and "engine.insight.gradients" in mods
    assert "engine.training.trainer" in mods and "tui.app" in all_modules("tui")


def test_engine_imports_cleanly_and_never_textual():
    mods = all_modules("engine")
    code = "import importlib, sys\n"
    code += "".join(f"importlib.import_module({m!r})\n" for m in mods)
    code += "print('textual' in sys.modules)\n"
    res = run_python(code)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1] == "False", "an engine module imports textual"


def test_tui_imports_cleanly_and_never_torch():
    mods = all_modules("tui")
    code = "import importlib, sys\n"
    code += "".join(f"importlib.import_module({m!r})\n" for m in mods)
    code += "print('torch' in sys.modules)\n"
    res = run_python(code)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1] == "False", "a tui module imports torch"


def test_help_and_data_commands_do_not_import_torch():
    code = (
        "import sys\nfrom seqplay.cli import main\n"
        "for args in (['--help'], ['corpora'], ['inspect', 'copy:n=20', '-t', 'char']):\n"
        "    try:\n        main(args)\n    except SystemExit as e:\n        assert not e.code, e.code\n"
        "print('TORCH' if 'torch' in sys.modules else 'CLEAN')\n"
    )
    res = run_python(code)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1] == "CLEAN"
