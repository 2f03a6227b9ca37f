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

    code = "import sys, search.cli; print(any(m in sys.modules for m in ('tensorflow', 'keras', 'ray.tune')))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
