"""nodes/common.py: the DiffIER inputs all three nodes share, their defaults taken from the core, and the combo check.

* Every widget's default is the core's (``diffier_core.config.DEFAULTS``; ``preset``: ``presets.DEFAULT_PRESET``),
  every numeric range the core's ``RANGES``: one default and one range per input, defined once.
* A node run without its optional inputs runs the core's defaults: the same image as with them set to the defaults.
* ``validate_diffier_inputs`` accepts the combos' options and absent (linked) values and names a bad combo input,
  its value and its options; the nodes' ``validate_inputs`` use it.
* ``DiffIERNode.diffier_schema`` puts the node's own inputs first, then DiffIER's, in ``sampling/diffier``.

``torch.equal`` compares runs of the same kernels on the same shapes in one process (a same-machine claim).
"""

from __future__ import annotations

import functools

import pytest
import torch
from tiny_models import make_latent, make_model

pytestmark = pytest.mark.integration

NODE_IDS = ("DiffIERGuider", "KSamplerDiffIER", "DiffIERCFGGuider")
ORDER = ["mode", "eta", "threshold", "max_iters", "start_percent", "end_percent", "inner_guidance", "preset",
         "at_cfg_1"]


@functools.cache
def tiny():
    return make_model("eps", seed=0)


def _inputs(pack_module) -> dict:
    return {i.id: i for i in pack_module.nodes.common.diffier_inputs()}


def test_every_widget_default_and_range_is_the_cores(pack_module):
    core = pack_module.diffier_core
    inputs = _inputs(pack_module)
    assert list(inputs) == ORDER
    for name in ORDER:
        expected = core.presets.DEFAULT_PRESET if name == "preset" else getattr(core.DEFAULTS, name)
        assert inputs[name].default == expected, name
    for name, (lo, hi) in core.RANGES.items():
        assert (inputs[name].min, inputs[name].max) == (lo, hi), name
    assert [n for n in ORDER if inputs[n].optional] == ["inner_guidance", "preset", "at_cfg_1"]
    assert inputs["mode"].options == list(core.MODES) and inputs["at_cfg_1"].options == list(core.AT_CFG_1)
    assert inputs["inner_guidance"].options == list(core.INNER_GUIDANCE)
    assert inputs["preset"].options == list(core.presets.PRESETS)


@pytest.mark.parametrize("node_id", NODE_IDS)
def test_absent_optional_inputs_run_the_cores_defaults(pack_module, run_node, node_id):
    defaults = pack_module.diffier_core.DEFAULTS
    required = {"mode": defaults.mode, "eta": defaults.eta, "threshold": defaults.threshold, "max_iters": 2,
                "start_percent": defaults.start_percent, "end_percent": defaults.end_percent}
    optional = {"inner_guidance": defaults.inner_guidance, "preset": "quality", "at_cfg_1": defaults.at_cfg_1}
    assert _run(run_node, node_id, **required).equal(_run(run_node, node_id, **required, **optional))
    other = _run(run_node, node_id, **required, inner_guidance="cfg")
    assert not other.equal(_run(run_node, node_id, **required))          # the input does change the image


def _run(run_node, node_id: str, **diffier) -> torch.Tensor:
    tm = tiny()
    pos, neg, latent = tm.make_cond(1, seed=1), tm.make_cond(1, seed=0), make_latent(tm, 1)
    if node_id == "KSamplerDiffIER":
        (out, _) = run_node(node_id, model=tm.patcher, seed=1, steps=3, cfg=4.0, sampler_name="euler",
                            scheduler="normal", positive=pos, negative=neg, latent_image=latent, denoise=1.0,
                            **diffier)
        return out["samples"]
    if node_id == "DiffIERGuider":
        (model,) = run_node(node_id, model=tm.patcher, **diffier)
        (out,) = run_node("KSampler", model=model, seed=1, steps=3, cfg=4.0, sampler_name="euler",
                          scheduler="normal", positive=pos, negative=neg, latent_image=latent, denoise=1.0)
        return out["samples"]
    (guider,) = run_node(node_id, model=tm.patcher, positive=pos, negative=neg, cfg=4.0, **diffier)
    (noise,) = run_node("RandomNoise", noise_seed=1)
    (sampler,) = run_node("KSamplerSelect", sampler_name="euler")
    (sigmas,) = run_node("BasicScheduler", model=tm.patcher, scheduler="normal", steps=3, denoise=1.0)
    out = run_node("SamplerCustomAdvanced", noise=noise, guider=guider, sampler=sampler, sigmas=sigmas,
                   latent_image=latent)
    return out[0]["samples"]


def test_the_combo_check_names_the_bad_input_its_value_and_options(pack_module):
    validate = pack_module.nodes.common.validate_diffier_inputs
    assert validate("paper", "cfg", "fast", "correct") is True
    assert validate(None, None, None, None) is True                       # linked or absent: checked at run time
    for args, name, value in ((("fast",), "mode", "fast"), (("paper", "both"), "inner_guidance", "both"),
                              (("paper", None, "turbo"), "preset", "turbo"),
                              (("paper", None, None, "always"), "at_cfg_1", "always")):
        message = validate(*args)
        assert f"'{name}'" in message and repr(value) in message and "one of" in message, message
    message = validate("paper", sampler_name=("eulr", ["euler", "heun"]))
    assert "'sampler_name'" in message and "'eulr'" in message and "'euler'" in message


def test_each_node_checks_its_combos_at_queue_time(comfy_nodes):
    for node_id in ("DiffIERGuider", "DiffIERCFGGuider"):
        cls = comfy_nodes.NODE_CLASS_MAPPINGS[node_id]
        assert cls.validate_inputs("consistency") is True
        assert "'mode'" in cls.validate_inputs("fast")
    ksampler = comfy_nodes.NODE_CLASS_MAPPINGS["KSamplerDiffIER"]
    assert ksampler.validate_inputs("euler", "normal", "paper") is True
    assert "'scheduler'" in ksampler.validate_inputs("euler", "sometimes", "paper")


def test_diffier_schema_puts_the_nodes_own_inputs_first(comfy_nodes):
    for node_id, own in (("DiffIERGuider", ["model"]), ("DiffIERCFGGuider", ["model", "positive", "negative", "cfg"])):
        info = comfy_nodes.NODE_CLASS_MAPPINGS[node_id].GET_NODE_INFO_V1()
        order = info["input_order"]["required"] + info["input_order"].get("optional", [])
        assert order == own + ORDER and info["category"] == "sampling/diffier"
