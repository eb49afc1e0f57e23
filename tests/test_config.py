"""diffier_core.config: the one settings shape, its defaults (defined once), ranges and every bad-setting error."""

import dataclasses
import math

import pytest
from pack_loader import import_core

core = import_core()


def test_defaults_are_the_papers_and_the_nodes():
    c = core.DiffIERSettings()
    assert (c.mode, c.eta, c.threshold, c.max_iters) == ("consistency", 0.05, 1e-3, 4)
    assert (c.start_percent, c.end_percent, c.inner_guidance, c.stride, c.at_cfg_1, c.reduction) == (
        0.0, 1.0, "cond", 1, "skip", "mean")
    assert c.enabled and c.full_window
    assert core.DEFAULTS == c


@pytest.mark.parametrize("kwargs, name", [
    ({"eta": -0.1}, "eta"), ({"eta": 1.5}, "eta"), ({"eta": math.nan}, "eta"), ({"eta": math.inf}, "eta"),
    ({"eta": "0.05"}, "eta"), ({"eta": True}, "eta"),
    ({"threshold": -1e-3}, "threshold"), ({"threshold": 2.0}, "threshold"), ({"threshold": None}, "threshold"),
    ({"max_iters": -1}, "max_iters"), ({"max_iters": 101}, "max_iters"), ({"max_iters": 2.5}, "max_iters"),
    ({"max_iters": True}, "max_iters"),
    ({"mode": "fast"}, "mode"), ({"reduction": "max"}, "reduction"), ({"inner_guidance": "x"}, "inner_guidance"),
    ({"start_percent": -0.1}, "start_percent"), ({"end_percent": 1.5}, "end_percent"),
    ({"end_percent": math.nan}, "end_percent"), ({"stride": 0}, "stride"), ({"stride": 1.5}, "stride"),
    ({"stride": True}, "stride"), ({"at_cfg_1": "always"}, "at_cfg_1"), ({"at_cfg_1": None}, "at_cfg_1"),
])
def test_bad_setting_names_setting_value_and_range(kwargs, name):
    with pytest.raises(core.DiffIERParameterError) as info:
        core.DiffIERSettings(**kwargs)
    err = info.value
    assert isinstance(err, ValueError) and isinstance(err, core.DiffIERError)
    assert err.name == name and err.got is err.value and err.expected == err.allowed
    assert f"'{name}'" in str(err) and repr(err.value) in str(err)
    assert ("[" in str(err)) or ("one of" in str(err)) or (">=" in str(err))


@pytest.mark.parametrize("kwargs", [{"eta": 0.0}, {"max_iters": 0}])
def test_zero_turns_off(kwargs):
    assert not core.DiffIERSettings(**kwargs).enabled


def test_window():
    settings = core.DiffIERSettings(start_percent=0.2, end_percent=0.8)
    assert (settings.start_percent, settings.end_percent) == (0.2, 0.8) and not settings.full_window
    assert core.DiffIERSettings(start_percent=1, end_percent=1).start_percent == 1.0    # an int becomes a float
    with pytest.raises(core.DiffIERParameterError, match="start_percent.*end_percent"):
        core.DiffIERSettings(start_percent=0.9, end_percent=0.1)
    with pytest.raises(core.DiffIERParameterError, match="end_percent"):
        core.DiffIERSettings(start_percent=0.0, end_percent=1.5)


def test_settings_are_frozen_and_validated_again_when_replaced():
    settings = core.DiffIERSettings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.eta = 0.5
    with pytest.raises(core.DiffIERParameterError, match="'eta'"):
        dataclasses.replace(settings, eta=2.0)
    with pytest.raises(TypeError):
        core.DiffIERSettings(etaa=0.1)          # a misspelt keyword is not silently ignored
