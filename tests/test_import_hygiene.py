"""Import rules (docs/architecture.md): the UI side never imports torch, the engine never textual."""

import importlib.util
import subprocess
import sys

TORCH_FREE = [
    "tui.app",
    "engine.protocol",
    "engine.client",
    "engine.config",
    "engine.errors",
    "engine.textio",
    "engine.data",
    "engine.tokenizers",
    "engine.models.registry",
    "engine.runs",
    "engine.device",
    "corpora",
    "seqplay.cli",
    "seqplay.commands.data",
]


def existing(modules):
    out = []
    for name in modules:
        try:
            if importlib.util.find_spec(name) is not None:
                out.append(name)
        except ModuleNotFoundError:
            pass
    return out


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_torch_free_modules_do_not_import_torch():
    mods = existing(TORCH_FREE)
    assert "engine.data" in mods and "engine.tokenizers" in mods
    code = "import importlib, sys\n"
    code += "".join(f"importlib.import_module({m!r})\n" for m in mods)
    code += "bad = [m for m in ('torch',) if m in sys.modules]\nprint(','.join(bad))\n"
    res = run_python(code)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "", f"torch imported by one of {mods}"


def test_engine_does_not_import_textual():
    import pkgutil

    import engine

    mods = ["engine." + m.name for m in pkgutil.walk_packages(engine.__path__, "") if not m.name.startswith("_")]
    code = "import importlib, sys\nfailed = []\n"
    code += f"for m in {mods!r}:\n    try:\n        importlib.import_module(m)\n    except Exception as e:\n        failed.append((m, str(e)))\n"
    code += "print('textual' in sys.modules)\n"
    res = run_python(code)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1] == "False", "an engine module imports textual"


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
