"""Search spaces: ``spaces/*.yaml`` -> a frozen, validated :class:`Space`.

No Ray and no Keras here: ``tuning.py`` translates a Space into Ray Tune's domains and
``model.py`` reads the sampled values. Bounds are inclusive, as in KerasTuner and Optuna.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from search.errors import SpaceError, message_line


def _builtin_spaces_dir() -> Path:
    """The built-in spaces: ``search/spaces/`` inside an installed wheel (pyproject maps the repository's
    top-level ``spaces/`` there), else ``spaces/`` beside the package (a checkout, an editable install)."""
    from importlib.resources import files

    packaged = Path(str(files("search") / "spaces"))
    return packaged if packaged.is_dir() else Path(__file__).resolve().parent.parent / "spaces"


SPACES_DIR = _builtin_spaces_dir().resolve()
DEFAULT_SPACE = "default"

# name -> (value type, allowed values or (min, max, max_is_inclusive)). Shared by params and fixed.
ACTIVATIONS = ("relu", "gelu", "elu", "selu", "tanh", "swish")
OPTIMIZERS = ("adam", "adamw", "rmsprop", "sgd")
KNOWN_PARAMS: dict[str, tuple[type, Any]] = {
    "depth": (int, (1, 16, True)),
    "width": (int, (1, 4096, True)),
    "dropout": (float, (0.0, 1.0, False)),
    "batch_size": (int, (1, 65536, True)),
    "learning_rate": (float, (1e-7, 10.0, True)),
    "l2": (float, (0.0, 1.0, True)),
    "activation": (str, ACTIVATIONS),
    "optimizer": (str, OPTIMIZERS),
    "batch_norm": (bool, (False, True)),
    "class_weight": (str, ("none", "balanced")),
    # numbers as periodic embeddings (search/network/mlp.py), and the scale of their initial frequencies
    "numeric_embedding": (str, ("none", "periodic")),
    "embedding_scale": (float, (1e-4, 100.0, True)),
    # the encoded columns smoothly clipped at 3 (search/network/mlp.py), before any embedding
    "numeric_clip": (str, ("none", "smooth")),
}
# numeric_columns: set by the run, not the user: how many of the encoded columns are numbers (they come first)
FIXED_ONLY = {"epochs": (int, (1, 100000, True)), "numeric_columns": (int, (0, 10**7, True))}
HINT_YAML_NUMBERS = " (a number is written without quotes, e.g. 1e-4)"


class _SpaceLoader(yaml.SafeLoader):
    """PyYAML's safe loader, reading ``1e-4`` as the number people mean: YAML 1.1 (PyYAML) wants a dot
    (``1.0e-4``) and reads ``1e-4`` as text; YAML 1.2 and JSON read it as a number."""


_SpaceLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$"), list("-+0123456789."))


@dataclass(frozen=True)
class IntParam:
    low: int
    high: int
    log: bool = False


@dataclass(frozen=True)
class FloatParam:
    low: float
    high: float
    log: bool = False


@dataclass(frozen=True)
class ChoiceParam:
    values: tuple[Any, ...]


Param = IntParam | FloatParam | ChoiceParam
# A param's conditions: (parent, the parent's values under which it is used), all of which must hold.
Conditions = tuple[tuple[str, tuple[Any, ...]], ...]


@dataclass(frozen=True)
class Space:
    """A validated search space: what is sampled (``params``) and what is held fixed."""

    name: str
    params: dict[str, Param]
    fixed: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    source: str = "<memory>"
    # A KerasTuner hypermodel's space (search/network/hypermodel.py): its "FILE.py:NAME", and the conditional
    # scopes of its params. Such a space names the user's hyperparameters, not the built-in network's.
    hypermodel: str = ""
    conditions: dict[str, Conditions] = field(default_factory=dict)
    # known-good configs (partial: the rest is sampled), run as the search's first trials
    first_trials: tuple[dict[str, Any], ...] = ()

    def in_use(self, name: str, chosen: dict[str, Any]) -> bool:
        """Whether param ``name`` is used under the values ``chosen`` so far for its parents."""
        return all(chosen.get(parent) in values for parent, values in self.conditions.get(name, ()))

    def values_of(self, row: dict[str, Any]) -> dict[str, Any]:
        """The searched values of one trial (a config, or a row read back from trials.csv): only the
        params in use under the others' values (its conditions), each as its param's type."""
        chosen: dict[str, Any] = {}
        for name, p in self.params.items():
            if not self.in_use(name, chosen):
                continue
            value = _plain(row.get(name))
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            if isinstance(p, IntParam):
                value = int(value)
            elif isinstance(p, FloatParam):
                value = float(value)
            else:  # the choice itself: a CSV reads 64 back as 64.0, True as "True"
                value = next((v for v in p.values if v == value or str(v) == str(value)), value)
            chosen[name] = value
        return chosen

    def config_of(self, row: dict[str, Any]) -> dict[str, Any]:
        """A trial's network config: the fixed values (bar ``epochs``, the search's) and its searched ones."""
        return {**{k: v for k, v in self.fixed.items() if k != "epochs"}, **self.values_of(row)}

    def to_dict(self) -> dict[str, Any]:
        """The YAML form of this space (``Space.from_dict(s.to_dict()) == s``)."""
        params: dict[str, Any] = {}
        for name, p in self.params.items():
            if isinstance(p, ChoiceParam):
                params[name] = {"type": "choice", "values": list(p.values)}
            else:
                kind = "int" if isinstance(p, IntParam) else "float"
                params[name] = {"type": kind, "low": p.low, "high": p.high, "log": p.log}
        doc = {
            "version": 1,
            "name": self.name,
            "description": self.description,
            "params": params,
            "fixed": dict(self.fixed),
        }
        if self.first_trials:
            doc["first_trials"] = [dict(point) for point in self.first_trials]
        if self.hypermodel:
            doc["hypermodel"] = self.hypermodel
            doc["conditions"] = {name: [[parent, list(values)] for parent, values in c]
                                 for name, c in self.conditions.items()}
        return doc

    @classmethod
    def from_dict(cls, raw: Any, source: str = "<memory>") -> Space:
        """Validate a parsed YAML document; every error names ``source`` and the key."""
        try:
            doc = _SpaceDoc.model_validate(raw)
        except ValidationError as exc:
            raise SpaceError(f"{source}: {_first_error(exc)}") from None
        if doc.hypermodel:  # KerasTuner checked these as the space was discovered
            return cls(doc.name, {name: _param_of(p) for name, p in doc.params.items()}, dict(doc.fixed),
                       doc.description, source, doc.hypermodel,
                       {name: tuple((parent, tuple(values)) for parent, values in c)
                        for name, c in doc.conditions.items()})
        params: dict[str, Param] = {}
        for name, p in doc.params.items():
            where = f"{source}: params.{name}"
            params[name] = _check_param(name, p, where)
        fixed: dict[str, Any] = {}
        for name, value in doc.fixed.items():
            fixed[name] = _check_value(name, value, f"{source}: fixed.{name}", {**KNOWN_PARAMS, **FIXED_ONLY})
            if name in params:
                raise SpaceError(
                    f"{source}: fixed.{name}: '{name}' is both searched and fixed. "
                    f"Keep it in params or in fixed, not both."
                )
        first = tuple(_check_first_trial(point, params, f"{source}: first_trials[{i}]")
                      for i, point in enumerate(doc.first_trials))
        return cls(doc.name, params, fixed, doc.description, source, first_trials=first)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Space):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(repr(self.to_dict()))


def load_space(ref: str | Path) -> Space:
    """Load a space by file path, or by name from the project's ``spaces/`` folder."""
    path = Path(ref)
    if not path.suffix and not path.exists():
        path = SPACES_DIR / f"{ref}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in SPACES_DIR.glob("*.yaml")))
        raise SpaceError(
            f"space file {ref} not found. Give a path to a .yaml file or one of: {known}."
        )
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_SpaceLoader)  # noqa: S506 (a SafeLoader)
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise SpaceError(f"{path}: not valid YAML ({message_line(exc)}). Fix the syntax of the file.") from None
    if not isinstance(raw, dict):
        raise SpaceError(f"{path}: expected a mapping with 'params', got {type(raw).__name__}.")
    return Space.from_dict(raw, source=str(path))


# --- the YAML schema (pydantic, at the edge only) ---------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _IntDoc(_Strict):
    type: Literal["int"]
    low: int
    high: int
    log: bool = False


class _FloatDoc(_Strict):
    type: Literal["float"]
    low: float
    high: float
    log: bool = False


class _ChoiceDoc(_Strict):
    type: Literal["choice"]
    values: list[Any]


_ParamDoc = Annotated[_IntDoc | _FloatDoc | _ChoiceDoc, Field(discriminator="type")]


class _SpaceDoc(_Strict):
    version: Literal[1] = 1
    name: str = "unnamed"
    description: str = ""
    params: dict[str, _ParamDoc]
    fixed: dict[str, Any] = Field(default_factory=dict)
    hypermodel: str = ""
    conditions: dict[str, list[tuple[str, list[Any]]]] = Field(default_factory=dict)
    first_trials: list[dict[str, Any]] = Field(default_factory=list)


def _param_of(doc: Any) -> Param:
    if isinstance(doc, _ChoiceDoc):
        return ChoiceParam(tuple(doc.values))
    return (IntParam if isinstance(doc, _IntDoc) else FloatParam)(doc.low, doc.high, doc.log)


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(part) for part in err["loc"] if part not in ("int", "float", "choice"))
    kind = err["type"]
    if kind == "extra_forbidden":
        return f"{loc}: unknown key. Allowed keys are listed in spaces/default.yaml; remove or rename it."
    if kind == "union_tag_invalid" or kind == "union_tag_not_found":
        return f"{loc}: 'type' must be one of int, float, choice, got {err.get('input')!r}."
    if kind == "missing":
        return f"{loc}: required key is missing. Add it."
    got = err.get("input")
    hint = HINT_YAML_NUMBERS if isinstance(got, str) else ""
    return f"{loc}: {err['msg'].lower()}, got {got!r}{hint}."


def _check_param(name: str, doc: Any, where: str) -> Param:
    if name not in KNOWN_PARAMS:
        known = ", ".join(sorted(KNOWN_PARAMS))
        raise SpaceError(f"{where}: unknown hyperparameter '{name}'. Known ones: {known}.")
    kind, _ = KNOWN_PARAMS[name]
    if isinstance(doc, _ChoiceDoc):
        if not doc.values:
            raise SpaceError(f"{where}: values is empty. List at least one value.")
        values = tuple(_check_value(name, v, where, KNOWN_PARAMS) for v in doc.values)
        if len(set(values)) != len(values):
            raise SpaceError(f"{where}: values has duplicates, got {list(doc.values)}. List each once.")
        return ChoiceParam(values)
    if kind not in (int, float):
        raise SpaceError(f"{where}: '{name}' takes type: choice, got type: {doc.type}.")
    if isinstance(doc, _FloatDoc) and kind is int:
        raise SpaceError(f"{where}: '{name}' is an integer; use type: int, got type: float.")
    if doc.low >= doc.high:
        raise SpaceError(
            f"{where}: low must be below high, got low={doc.low}, high={doc.high}. "
            f"Swap them, or move '{name}' to fixed."
        )
    if doc.log and doc.low <= 0:
        raise SpaceError(
            f"{where}: log: true needs low > 0, got low={doc.low}. Raise low or set log: false."
        )
    _check_value(name, doc.low, where, KNOWN_PARAMS)
    _check_value(name, doc.high, where, KNOWN_PARAMS)
    if kind is int:
        return IntParam(int(doc.low), int(doc.high), doc.log)
    return FloatParam(float(doc.low), float(doc.high), doc.log)


def _check_first_trial(point: dict[str, Any], params: dict[str, Param], where: str) -> dict[str, Any]:
    """A first trial's values: each names a searched param and lies in its range or among its choices."""
    checked: dict[str, Any] = {}
    for name, value in point.items():
        p = params.get(name)
        if p is None:
            raise SpaceError(f"{where}: '{name}' is not a searched param of this space. "
                             f"Name only params listed under 'params'.")
        value = _check_value(name, value, f"{where}.{name}", KNOWN_PARAMS)
        inside = value in p.values if isinstance(p, ChoiceParam) else p.low <= value <= p.high
        if not inside:
            allowed = list(p.values) if isinstance(p, ChoiceParam) else f"[{p.low}, {p.high}]"
            raise SpaceError(f"{where}.{name}: {value!r} lies outside the param's values {allowed}. "
                             f"Pick a value inside them.")
        checked[name] = value
    return checked


def _check_value(name: str, value: Any, where: str, rules: dict[str, tuple[type, Any]]) -> Any:
    """One value against its hyperparameter's type and range; returns it as a Python builtin."""
    if name not in rules:
        raise SpaceError(f"{where}: unknown key '{name}'. Known ones: {', '.join(sorted(rules))}.")
    kind, allowed = rules[name]
    if kind is bool:
        if not isinstance(value, bool):
            raise SpaceError(f"{where}: expected true or false, got {value!r}.")
        return value
    if kind is str:
        if value not in allowed:
            raise SpaceError(f"{where}: expected one of {', '.join(allowed)}, got {value!r}.")
        return value
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not is_number or (kind is int and isinstance(value, float) and not value.is_integer()):
        hint = HINT_YAML_NUMBERS if isinstance(value, str) else ""
        raise SpaceError(f"{where}: expected {kind.__name__}, got {value!r}{hint}.")
    low, high, high_inclusive = allowed
    too_high = value > high if high_inclusive else value >= high
    if value < low or too_high or (isinstance(value, float) and not math.isfinite(value)):
        bracket = "]" if high_inclusive else ")"
        raise SpaceError(f"{where}: must lie in [{low}, {high}{bracket}, got {value!r}.")
    return kind(value)
