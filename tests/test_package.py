from __future__ import annotations

from pathlib import Path

import search


def test_public_names_are_exactly_all():
    for name in search.__all__:  # the lazy ones (RunSpec, Space, load_space) too
        assert getattr(search, name) is not None, name
    public = {name for name in vars(search) if not name.startswith("_")} - {"annotations", "TYPE_CHECKING", "Any"}
    modules = {name for name in public if type(getattr(search, name)).__name__ == "module"}
    assert sorted(search.__all__) == sorted(public - modules | {"__version__"})


def test_the_package_is_this_checkout():
    # The import package is called `search`; make sure no other `search` shadows it.
    assert Path(search.__file__).resolve().parent == Path(__file__).resolve().parent.parent / "search"


def test_the_cli_module_imports_no_tensorflow_or_ray_tune():
    import subprocess
    import sys

    code = "import sys, search.cli.commands; print(any(m in sys.modules for m in ('tensorflow', 'keras', 'ray.tune')))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_the_built_wheel_runs_a_search_from_an_empty_folder(tmp_path):
    """The wheel holds the built-in spaces: installed (not editable) in a fresh venv, it runs the default
    space from a folder with nothing in it. The fresh venv reuses this one's dependencies through a path
    file (installing TensorFlow again would take minutes); hpsearch itself comes only from the wheel."""
    import os
    import subprocess
    import sys
    import sysconfig

    repo = Path(__file__).resolve().parent.parent
    wheels = tmp_path / "wheels"
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                            str(repo), "-w", str(wheels)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-2000:]
    wheel = next(wheels.glob("hpsearch-*.whl"))
    venv = tmp_path / "fresh venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    fresh_python = venv / "bin" / "python"
    fresh_site = subprocess.run([str(fresh_python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                capture_output=True, text=True, check=True).stdout.strip()
    ours = sysconfig.get_paths()["purelib"]
    Path(fresh_site, "dependencies.pth").write_text(ours + "\n")  # its own .pth files (the editable hpsearch) stay off
    installed = subprocess.run([sys.executable, "-m", "pip", "--python", str(fresh_python), "install", "-q",
                                "--no-deps", str(wheel)], capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr[-2000:]
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = subprocess.run([str(fresh_python), "-c", "import search, search.space as s; print(search.__file__); "
                            "print(s.SPACES_DIR)"], cwd=empty, capture_output=True, text=True, env=env, timeout=120)
    package, spaces = where.stdout.strip().splitlines()[-2:]
    assert Path(package).is_relative_to(fresh_site) and Path(spaces) == Path(fresh_site) / "search" / "spaces"
    proc = subprocess.run([str(venv / "bin" / "hpsearch"), "run", "--samples", "2", "--max-epochs", "2",
                           "--top-k", "1", "--folds", "2", "--repeats", "1", "--cpus", "2", "--name", "wheel",
                           "--quiet"], cwd=empty, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (empty / "results" / "wheel" / "model" / "model.keras").is_file()
