"""hpsearch: find the best Keras binary classifier for a table, with Ray Tune and ASHA."""

from __future__ import annotations

import importlib
import os
import sys
from typing import TYPE_CHECKING, Any

from search.errors import ClusterError, DataError, HpsearchError, SearchError, SpaceError, SpecError

if TYPE_CHECKING:
    from collections.abc import Callable

    from search.api import Result, load, run
    from search.pipeline import RunOutcome
    from search.space import Space, load_space
    from search.spec import RunSpec

# The driver's Keras (encoding, export, predict) runs on TensorFlow: the exported model takes strings,
# which Keras on JAX cannot. KERAS_BACKEND beats ~/.keras/keras.json, which a JAX user may have set to
# "jax". Trials choose their own backend (--backend); Ray workers get theirs in their environment.
if "keras" not in sys.modules:
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")

# Imported when first asked for: every Ray worker imports this package to reach search.tuning.trainable,
# and the spec and space modules bring pandas, pydantic and YAML, which a worker never uses.
_LAZY = {"RunSpec": "search.spec", "Space": "search.space", "load_space": "search.space", "run": "search.api",
         "load": "search.api", "Result": "search.api"}

__version__ = "0.1.0"
__all__ = [
    "ClusterError",
    "DataError",
    "HpsearchError",
    "Result",
    "RunSpec",
    "SearchError",
    "Space",
    "SpaceError",
    "SpecError",
    "__version__",
    "load",
    "load_space",
    "run",
    "run_search",
]


def run_search(spec: RunSpec, on_progress: Any = None) -> RunOutcome:
    """Run one search end to end; see :func:`search.pipeline.run_search`."""
    from search.pipeline import run_search as _run_search

    return _run_search(spec, on_progress)


def _lazy_face(package: str, face: dict[str, str]) -> Callable[[str], Any]:
    """A package's ``__getattr__``: the module of a name (``face[name]``, relative to ``package``) is
    imported when the name is first asked for, so a Ray worker that imports a package to run one task
    loads only that task's modules, and ``import search`` stays cheap (docs/architecture.md)."""

    def attribute(name: str) -> Any:
        if name not in face:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{face[name]}"), name)
        setattr(sys.modules[package], name, value)
        return value

    return attribute


__getattr__ = _lazy_face(__name__, {name: module.removeprefix("search.") for name, module in _LAZY.items()})
