"""diffier_core.config: defaults, ranges and every bad-parameter error."""

import math

import pytest
from pack_loader import import_core

core = import_core()


def test_defaults_are_the_papers():
    c = core.DiffIERConfig()
    assert (c.mode, c.eta, c.threshold, c.max_iters) == ("consistency", 0.05, 1e-3, 4)
    assert c.enabled


@pytest.mark.parametrize("kwargs, name", [
    ({"eta": -0.1}, "eta"), ({"eta": 1.5}, "eta"), ({"eta": math.nan}, "eta"), ({"eta": math.inf}, "eta"),
    ({"eta": "0.05"}, "eta"), ({"eta": True}, "eta"),
    ({"threshold": -1e-3}, "threshold"), ({"threshold": 2.0}, "threshold"), ({"threshold": None}, "threshold"),
    ({"max_iters": -1}, "max_iters"), ({"max_iters": 101}, "max_iters"), ({"max_iters": 2.5}, "max_iters"),
    ({"max_iters": True}, "max_iters"),
    ({"mode": "fast"}, "mode"), ({"reduction": "max"}, "reduction"), ({"inner_guidance": "x"}, "inner_guidance"),
])
def test_bad_parameter_names_parameter_value_and_range(kwargs, name):
    with pytest.raises(core.DiffIERParameterError) as info:
        core.DiffIERConfig(**kwargs)
    err = info.value
    assert isinstance(err, ValueError) and isinstance(err, core.DiffIERError)
    assert err.name == name
    assert f"'{name}'" in str(err) and repr(err.value) in str(err)
    assert ("[" in str(err)) or ("one of" in str(err))


@pytest.mark.parametrize("kwargs", [{"eta": 0.0}, {"max_iters": 0}])
def test_zero_turns_off(kwargs):
    assert not core.DiffIERConfig(**kwargs).enabled


def test_window():
    assert core.validate_window(0.2, 0.8) == (0.2, 0.8)
    with pytest.raises(core.DiffIERParameterError, match="start_percent.*end_percent"):
        core.validate_window(0.9, 0.1)
    with pytest.raises(core.DiffIERParameterError, match="end_percent"):
        core.validate_window(0.0, 1.5)
