"""Bring your own model: a KerasTuner ``build_model(hp)`` (or ``HyperModel``) as the search's network.

The contract is KerasTuner's: the function takes a ``keras_tuner.HyperParameters`` and returns a
compiled Keras model; a ``HyperModel`` may also override ``fit(hp, model, *args, **kwargs)`` to
choose fit-level values such as ``batch_size``. KerasTuner's own ``HyperParameters`` finds the space:
the model is built in the driver with the defaults, then once for each other value of each Choice
and Boolean (one at a time, and again under any value that revealed new ones), so that
hyperparameters under a conditional scope or a plain ``if`` are found too. Each trial, CV fit and
the export build the model again from the values sampled for it: a fresh ``HyperParameters`` with
those values returns them, as in KerasTuner's own trials.

The model receives the encoded feature matrix (numbers only, one row per table row) and must end
in one sigmoid unit: P(class 1).
"""

from __future__ import annotations

import functools
import importlib.util
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from search.errors import SpaceError, first_line
from search.space import ChoiceParam, Conditions, FloatParam, IntParam, Param, Space

if TYPE_CHECKING:
    import keras

REF_KEY = "hypermodel"  # in a config: the "FILE.py:NAME" whose model it configures
DEFAULT_BATCH_SIZE = 32  # Keras' own, for a hypermodel that does not choose one
DEFAULT_NAME = "build_model"
CHECK_EPOCHS = 3  # the epochs a hypermodel's own fit is checked with, before any trial
MAX_BUILDS = 48  # discovery stops exploring after this many builds
# Names the trial table or the CV use for their own columns.
RESERVED = frozenset({REF_KEY, "class_weight", "trial_id", "epochs", "best_epoch", "status", "error", "retries",
                      "node_ip", "node_id", "device", "compute_dtype", "backend", "restored_from"})


def parse_ref(ref: str) -> tuple[Path, str]:
    """``FILE.py:NAME`` (or ``FILE.py``, NAME being ``build_model``) as an absolute path and a name."""
    file, colon, name = ref.rpartition(":")
    if not colon or ref.endswith(".py"):  # no NAME given
        file, name = ref, DEFAULT_NAME
    return Path(file).expanduser().resolve(), name or DEFAULT_NAME


def absolute(ref: str) -> str:
    """``ref`` with its file as an absolute path (a submitted job's stays relative to its working dir)."""
    path, name = parse_ref(ref)
    return f"{path}:{name}"


@functools.cache
def load(ref: str) -> Any:
    """The ``keras_tuner.HyperModel`` that ``ref`` names, its module imported once per process by path."""
    import keras_tuner

    path, name = parse_ref(ref)
    if not path.is_file():
        raise SpaceError(f"--hypermodel {ref}: file {path} not found. Give FILE.py:FUNCTION, e.g. "
                         f"examples/hypermodel.py:build_model.")
    module_name = f"hpsearch_hypermodel_{abs(hash(str(path)))}"
    if str(path.parent) not in sys.path:  # its own helper modules beside it, as when it runs as a script
        sys.path.append(str(path.parent))
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    except Exception as exc:
        raise SpaceError(f"--hypermodel {ref}: importing {path.name} failed ({first_line(exc)}). "
                         f"Fix the file; it must import on its own.") from None
    found = getattr(module, name, None)
    if isinstance(found, type) and issubclass(found, keras_tuner.HyperModel):
        found = found()
    if isinstance(found, keras_tuner.HyperModel):
        return found
    if callable(found):
        wrapped = keras_tuner.HyperModel()  # a plain build_model(hp), as KerasTuner wraps one: fit is model.fit
        wrapped.build = found
        return wrapped
    known = ", ".join(n for n, v in vars(module).items() if callable(v) and not n.startswith("_")) or "none"
    raise SpaceError(f"--hypermodel {ref}: {path.name} has no function or HyperModel named {name!r} "
                     f"(callables there: {known}). Name it after the colon.")


def chooses_fit(hypermodel: Any) -> bool:
    """Whether the hypermodel overrides ``fit`` (KerasTuner's convention for fit-level values)."""
    import keras_tuner

    return type(hypermodel).fit is not keras_tuner.HyperModel.fit


def uses_own_fit(config: dict[str, Any]) -> bool:
    """Whether a config's network trains with its hypermodel's own ``fit`` (Keras' loop) rather than
    with the epoch programs every other network shares (search/network/epoch_scan.py)."""
    return REF_KEY in config and chooses_fit(load(config[REF_KEY]))


def hyperparameters(values: dict[str, Any]) -> Any:
    """A fresh ``HyperParameters`` that returns ``values`` as the model registers its hyperparameters."""
    import keras_tuner

    hp = keras_tuner.HyperParameters()
    hp.values = {k: v for k, v in values.items() if k != REF_KEY}
    return hp


def build(config: dict[str, Any], n_features: int, compiled: bool = True) -> keras.Model:
    """The user's model for ``config`` (its values and ``REF_KEY``), built for ``n_features`` inputs;
    with ``compiled`` off, an uncompiled copy (for the export, which carries no optimizer)."""
    import keras

    model = ensure_built(load(config[REF_KEY]).build(hyperparameters(config)), n_features)
    return model if compiled else ensure_built(keras.models.clone_model(model), n_features)


def ensure_built(model: Any, n_features: int) -> Any:
    """Build a model left without an input shape (a ``Sequential`` without ``Input``: the usual
    KerasTuner model) on the encoded matrix's width, so that it has its weights."""
    if not model.built or not model.weights:
        model.build((None, n_features))
    return model


def fit(config: dict[str, Any], model: Any, x: np.ndarray, y: np.ndarray, *, epochs: int, callbacks: list[Any],
        initial_epoch: int = 0, class_weight: dict[int, float] | None = None,
        validation_data: tuple[np.ndarray, np.ndarray] | None = None) -> Any:
    """The hypermodel's ``fit(hp, model, x, y, **kwargs)`` for ``config``, as KerasTuner calls it
    (:func:`fit_merged`)."""
    return fit_merged(load(config[REF_KEY]), hyperparameters(config), model, x, y, epochs=epochs,
                      callbacks=callbacks, initial_epoch=initial_epoch, class_weight=class_weight,
                      validation_data=validation_data)


def fit_merged(hypermodel: Any, hp: Any, model: Any, x: np.ndarray, y: np.ndarray, *, epochs: int,
               callbacks: list[Any], initial_epoch: int = 0, class_weight: dict[int, float] | None = None,
               validation_data: tuple[np.ndarray, np.ndarray] | None = None) -> Any:
    """``HyperModel.fit(hp, model, x, y, epochs=..., callbacks=[...])`` as KerasTuner calls it, with
    ``validation_data`` too where its signature names it.

    A user's fit passes its own Keras ``fit`` arguments (``batch_size``, ``shuffle``, ``class_weight``,
    ``callbacks``, ``verbose``...) beside the ``**kwargs`` it was given; hpsearch's own are merged into
    that ``model.fit`` call rather than passed in ``kwargs``, so the two never collide: the epochs are
    the search's, its callbacks are added to the user's, ``verbose`` is 0, and the user's
    ``shuffle``, ``batch_size`` and ``class_weight`` win. The validation rows given to the user's fit
    are not evaluated by Keras every epoch: hpsearch scores them itself.
    """
    import inspect

    given: dict[str, Any] = {"epochs": epochs, "callbacks": list(callbacks)}
    try:
        names = inspect.signature(hypermodel.fit).parameters
    except (TypeError, ValueError):
        names = {}
    if validation_data is not None and "validation_data" in names:
        given["validation_data"] = validation_data
    keras_fit = model.fit

    def merged_fit(*args: Any, **theirs: Any) -> Any:
        theirs_callbacks = list(theirs.get("callbacks") or [])
        theirs["callbacks"] = theirs_callbacks + [c for c in callbacks if not any(c is t for t in theirs_callbacks)]
        theirs.update(epochs=epochs, initial_epoch=initial_epoch, verbose=0)
        theirs.setdefault("shuffle", True)
        if class_weight and theirs.get("class_weight") is None:
            theirs["class_weight"] = class_weight
        if validation_data is not None and theirs.get("validation_data") is validation_data:
            del theirs["validation_data"]
        return keras_fit(*args, **theirs)

    object.__setattr__(model, "fit", merged_fit)  # past Keras' attribute tracking: a plain instance attribute
    try:
        try:
            return hypermodel.fit(hp, model, x, y, **given)
        except TypeError as exc:  # its fit passes epochs= itself, as KerasTuner's search(x, y) without epochs allows
            if "multiple values for keyword argument 'epochs'" not in str(exc):
                raise
            del given["epochs"]  # the search's epochs still win, in merged_fit
            return hypermodel.fit(hp, model, x, y, **given)
    finally:
        object.__delattr__(model, "fit")


def discover_space(ref: str, x: np.ndarray, y: np.ndarray) -> Space:
    """The hypermodel's search space, found by building it (see the module docstring) on ``x``, a
    sample of the encoded rows; every fault of ``build_model`` is a one-line SpaceError, before any trial."""
    import keras_tuner

    hypermodel = load(ref)
    found = keras_tuner.HyperParameters()
    queue: list[dict[str, Any]] = [{}]
    tried: set[tuple[tuple[str, str], ...]] = set()
    while queue and len(tried) < MAX_BUILDS:
        values = queue.pop(0)
        hp = hyperparameters(values)
        known = {p.name for p in found.space}
        model = _build_checked(ref, hypermodel, hp, x.shape[1], first=not tried)
        if not tried and chooses_fit(hypermodel):
            _fit_checked(ref, hypermodel, hp, model, x, y)
        first = not tried
        tried.add(tuple(sorted((k, repr(v)) for k, v in values.items())))
        found.merge(hp, overwrite=False)
        # try each other value of a choice once: all choices after the first build, then only new ones
        for p in hp.space:
            if (not first and p.name in known) or not hp.is_active(p):
                continue
            for value in _other_values(p, hp.values.get(p.name)):
                key = tuple(sorted((k, repr(v)) for k, v in {**values, p.name: value}.items()))
                if key not in tried:
                    queue.append({**values, p.name: value})
    return _as_space(ref, found)


def _build_checked(ref: str, hypermodel: Any, hp: Any, n_features: int, first: bool) -> Any:
    import keras

    where = f"--hypermodel {ref}"
    try:
        model = hypermodel.build(hp)
    except Exception as exc:
        raise SpaceError(f"{where}: build_model failed ({first_line(exc)}). "
                         f"Run it with keras_tuner.HyperParameters() to see why.") from None
    if not isinstance(model, keras.Model):
        raise SpaceError(f"{where}: build_model returned {type(model).__name__}, not a Keras model. "
                         f"Return the compiled keras.Model.")
    if not getattr(model, "compiled", False) or model.optimizer is None:
        raise SpaceError(f"{where}: build_model returned a model that is not compiled. Call "
                         f"model.compile(optimizer=..., loss='binary_crossentropy') before returning it.")
    if not first:
        return model
    try:
        ensure_built(model, n_features)
        out = model(np.zeros((2, n_features), np.float32))
    except Exception as exc:
        raise SpaceError(f"{where}: the model does not take the encoded matrix of {n_features} numbers per row "
                         f"({first_line(exc)}). Leave out the Input layer: Keras then sizes the first layer.") from None
    if tuple(out.shape) != (2, 1):
        raise SpaceError(f"{where}: the model's output has shape {tuple(out.shape)[1:]} per row, not (1,). End "
                         f"it with keras.layers.Dense(1, activation='sigmoid'): P(class 1).")
    if getattr(getattr(model, "loss", None), "from_logits", False):
        raise SpaceError(f"{where}: the model is compiled with a loss from_logits=True, so its output is not "
                         f"P(class 1). End it with keras.layers.Dense(1, activation='sigmoid') and leave "
                         f"from_logits off.")
    _check_safe_reload(where, model)
    return model


def _check_safe_reload(where: str, model: Any) -> None:
    """The export must load with ``safe_mode=True`` in plain Keras: a custom layer or a lambda would not."""
    import tempfile

    import keras

    with tempfile.TemporaryDirectory(prefix="hpsearch-hypermodel-") as folder:
        try:
            model.save(Path(folder) / "check.keras")
            keras.saving.load_model(Path(folder) / "check.keras", safe_mode=True, compile=False)
        except Exception as exc:
            raise SpaceError(f"{where}: the model does not reload in Keras' safe mode ({first_line(exc)}). "
                             f"Build it from Keras' own layers (no Lambda, no custom class).") from None


def _fit_checked(ref: str, hypermodel: Any, hp: Any, model: Any, x: np.ndarray, y: np.ndarray) -> None:
    """Run the hypermodel's own ``fit`` for two epochs on the sample, to find its fit-level
    hyperparameters and to check that it trains the epochs it is given (ASHA and the CV choose them)."""
    import keras

    ended: list[int] = []
    counter = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs=None: ended.append(epoch))
    try:
        fit_merged(hypermodel, hp, model, x, y, epochs=CHECK_EPOCHS, callbacks=[counter], validation_data=(x, y))
    except Exception as exc:
        raise SpaceError(f"--hypermodel {ref}: its fit(hp, model, *args, **kwargs) failed ("
                         f"{first_line(exc)}). Pass *args and **kwargs on to model.fit, as KerasTuner does.") from None
    if len(ended) != CHECK_EPOCHS:
        raise SpaceError(f"--hypermodel {ref}: its fit(hp, model, *args, **kwargs) trained {len(ended)} epochs "
                         f"where it was given epochs={CHECK_EPOCHS} (hpsearch's ASHA and CV choose the epochs). "
                         f"Pass **kwargs on to model.fit, or loop over range(kwargs['epochs']) and call each of "
                         f"kwargs['callbacks'] on_epoch_end.")


def _other_values(p: Any, current: Any) -> list[Any]:
    """The values to build with besides ``current``: every choice, and an Int's largest (the most layers of
    a ``for i in range(hp.Int(...))``)."""
    kind = type(p).__name__
    if kind == "Boolean":
        return [v for v in (False, True) if v != current]
    if kind == "Choice":
        return [v for v in p.values if v != current]
    if kind == "Int":
        return [v for v in (int(p.max_value),) if v != current]
    return []


def _as_space(ref: str, found: Any) -> Space:
    """KerasTuner's hyperparameters as a :class:`Space`: Int and Float as ranges (or as choices where they
    have a step), Choice and Boolean as choices, Fixed as fixed values; their conditions kept."""
    params: dict[str, Param] = {}
    fixed: dict[str, Any] = {}
    conditions: dict[str, Conditions] = {}
    for p in found.space:
        if p.name in RESERVED:
            raise SpaceError(f"--hypermodel {ref}: the hyperparameter name {p.name!r} is one hpsearch uses for its "
                             f"own columns. Rename it.")
        if p.name in params or p.name in fixed:
            continue  # the same name under another condition: KerasTuner keeps one value for both
        kind = type(p).__name__
        if kind == "Fixed":
            fixed[p.name] = p.value
            continue
        params[p.name] = _param(p, kind)
        if p.conditions:
            conditions[p.name] = tuple((c.name, tuple(c.values)) for c in p.conditions)
    path, name = parse_ref(ref)
    return Space(name=f"{path.name}:{name}", params=params, fixed={**fixed, REF_KEY: f"{path}:{name}"},
                 description=f"KerasTuner hypermodel {name} in {path}", source=str(path),
                 hypermodel=f"{path}:{name}", conditions=conditions)


def _param(p: Any, kind: str) -> Param:
    if kind == "Boolean":
        return ChoiceParam((False, True))
    if kind == "Choice":
        return ChoiceParam(tuple(p.values))
    log = p.sampling == "log"
    step = p.step
    if kind == "Int":
        if not step or (step == 1 and not log):
            return IntParam(int(p.min_value), int(p.max_value), log)
        return ChoiceParam(tuple(int(v) for v in _steps(p.min_value, p.max_value, step, log)))
    if step:
        return ChoiceParam(tuple(float(v) for v in _steps(p.min_value, p.max_value, step, log)))
    return FloatParam(float(p.min_value), float(p.max_value), log)


def _steps(low: float, high: float, step: float, log: bool) -> list[float]:
    """The values a stepped Int or Float takes: low, low + step, ... (low, low x step, ... when log)."""
    values, value = [], low
    while value <= high * (1 + 1e-9) and len(values) < 10_000:
        values.append(value)
        value = value * step if log else value + step
        if (log and step <= 1) or not math.isfinite(value):
            break
    return values
