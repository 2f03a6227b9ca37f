from __future__ import annotations

from pathlib import Path

import pytest

from search.errors import SpaceError
from search.space import SPACES_DIR, ChoiceParam, FloatParam, IntParam, Space, load_space


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


def test_default_space_spans_the_documented_ranges():
    space = load_space("default")
    assert space.params["depth"] == IntParam(1, 4)
    assert space.params["width"] == IntParam(8, 512, log=True)
    assert space.params["dropout"] == FloatParam(0.0, 0.5)
    assert isinstance(space.params["batch_size"], ChoiceParam)
    assert min(space.params["batch_size"].values) <= 8 and max(space.params["batch_size"].values) >= 256
    assert space.params["learning_rate"] == FloatParam(1e-4, 3e-2, log=True)


def test_default_space_is_found_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_space("default").source == str(SPACES_DIR / "default.yaml")


def test_every_shipped_space_round_trips():
    for path in SPACES_DIR.glob("*.yaml"):
        space = load_space(path)
        assert Space.from_dict(space.to_dict()) == space


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ("params:\n  depth: {type: int, low: 1, high: 3}\n  colour: {type: int, low: 1, high: 3}\n",
         r"params.colour: unknown hyperparameter 'colour'. Known ones: .*depth"),
        ("params:\n  depth: {type: int, low: 4, high: 1}\n", r"params.depth: low must be below high, got low=4, high=1"),
        ("params:\n  dropout: {type: float, low: 0.0, high: 1.5}\n", r"params.dropout: must lie in \[0.0, 1.0\), got 1.5"),
        ("params:\n  batch_size: {type: choice, values: []}\n", r"params.batch_size: values is empty"),
        ("params:\n  batch_size: {type: choice, values: [8, 8]}\n", r"params.batch_size: values has duplicates"),
        ("params:\n  depth: {type: int, low: one, high: 3}\n", r"params.depth.low: .*got 'one'"),
        ("params:\n  width: {type: int, low: 0, high: 8, log: true}\n", r"params.width: log: true needs low > 0, got low=0"),
        ("params:\n  depth: {type: int, low: 1, high: 3, step: 2}\n", r"params.depth.step: unknown key"),
        ("params:\n  depth: {type: range, low: 1, high: 3}\n", r"params.depth: 'type' must be one of int, float, choice"),
        ("params:\n  activation: {type: choice, values: [relu, sigmoidish]}\n", r"expected one of relu.*got 'sigmoidish'"),
        ("params:\n  depth: {type: int, low: 1, high: 3}\nfixed: {depth: 2}\n", r"fixed.depth: 'depth' is both searched and fixed"),
        ("params:\n  depth: {type: int, low: 1, high: 3}\nextra: 1\n", r"extra: unknown key"),
        ("fixed: {epochs: 3}\n", r"params: required key is missing"),
        ("params: [1, 2\n", r"not valid YAML"),
        ("- just\n- a list\n", r"expected a mapping"),
    ],
)
def test_malformed_spaces_name_the_file_the_key_and_the_problem(tmp_path, body, match):
    path = write(tmp_path, body)
    with pytest.raises(SpaceError, match=match) as info:
        load_space(path)
    assert str(info.value).startswith(str(path))
    assert "\n" not in str(info.value)


def test_a_missing_space_lists_the_shipped_ones():
    with pytest.raises(SpaceError, match=r"space file nowhere not found.*default"):
        load_space("nowhere")


def test_int_bounds_are_inclusive_in_ray_domains():
    from ray.tune.search.sample import Domain

    from search.tuning.tuner import to_ray_space

    space = Space.from_dict({"params": {"depth": {"type": "int", "low": 1, "high": 3},
                                        "width": {"type": "int", "low": 2, "high": 4, "log": True}}})
    domains = to_ray_space(space)
    assert all(isinstance(d, Domain) for d in domains.values())
    depths = {int(v) for v in domains["depth"].sample(size=400, random_state=0)}
    widths = {int(v) for v in domains["width"].sample(size=400, random_state=0)}
    assert depths == {1, 2, 3}
    assert widths == {2, 3, 4}


def test_numbers_written_as_people_write_them_are_numbers(tmp_path):
    """PyYAML (YAML 1.1) reads ``1e-4`` as text; a space file means a number, and gets one."""
    path = tmp_path / "s.yaml"
    path.write_text("params:\n  learning_rate: {type: float, low: 1e-4, high: 3E-2, log: true}\n"
                    "  l2: {type: choice, values: [0, 1e-5, 1.5e-3]}\nfixed:\n  epochs: 10\n")
    space = load_space(path)
    assert space.params["learning_rate"] == FloatParam(1e-4, 3e-2, log=True)
    assert space.params["l2"].values == (0.0, 1e-5, 1.5e-3)


def test_a_quoted_number_is_still_named_in_one_line(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("params:\n  l2: {type: choice, values: [0.0, '1e-4']}\n")
    with pytest.raises(SpaceError, match=r"expected float, got '1e-4' \(a number is written without quotes"):
        load_space(path)
