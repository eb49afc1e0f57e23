"""The embedded demo's ComfyUI nodes: load a model shipped in the demo's ``weights/`` folder and drive it through
the normal ComfyUI samplers (KSampler, KSamplerDiffIER, ...). No download; the model code and all the image
arithmetic live in ``demo.models``. The nodes reach ComfyUI only through the pack's adapter."""

from __future__ import annotations

from typing import Any

import torch

from ..diffier_core import DiffIERParameterError
from ..nodes.comfy_adapter import DEMO, io, require
from . import models

DEMO_CATEGORY = "sampling/diffier/demo"
DIGIT_CHOICES = [str(d) for d in range(10)] + ["unconditional"]
DEFAULT_MODEL = "digits_diffusion.safetensors"
#: what each kind's nodes say when given another model
_LOAD_HINT = {"digits": "the digits demo model (load digits_diffusion.safetensors",
              "sr": "an SR demo model (load sr_digits_x4.safetensors or sr_photos_x2.safetensors"}


def demo_model(model: Any, node: str, kind: str) -> Any:
    """The ``BaseModel`` inside the demo MODEL ``model`` of ``kind``, or a clear error naming the node.

    Args:
        model: a MODEL (ModelPatcher) from the DiffIER Demo Model Loader.
        node: the asking node's display name, for the message.
        kind: ``digits`` or ``sr``.
    """
    inner = getattr(model, "model", None)
    found = getattr(inner, "diffier_demo_kind", None)
    if found != kind:
        came = f"the {found} demo model" if found is not None else f"a {type(inner).__name__} model"
        raise DiffIERParameterError("model", came, f"{_LOAD_HINT[kind]} with the DiffIER Demo Model Loader) for {node}")
    return inner


#: node id -> (display name, description)
TEXTS: dict[str, tuple[str, str]] = {
    "DiffIERDemoModelLoader": (
        "DiffIER Demo Model Loader",
        "Loads one of the small demo diffusion models shipped inside this node pack (demo/weights/ folder; no "
        "download). digits_diffusion: a class-conditional MNIST digit model (24×24, pixel space) trained "
        "with CFG dropout, for trying DiffIER and CFG on any machine."),
    "DiffIERDemoCondition": (
        "DiffIER Demo Condition (digit)",
        "Conditioning for the digits demo model: the learned embedding of one digit, or the null embedding "
        "(\"unconditional\") that the model was trained with for classifier-free guidance. Use a digit for "
        "positive and \"unconditional\" for negative."),
    "DiffIERDemoEmptyLatent": (
        "DiffIER Demo Empty Latent (digits)",
        "An empty latent of the digits demo model's shape (1 channel, 24×24 pixels)."),
    "DiffIERDemoDecode": (
        "DiffIER Demo Decode (digits)",
        "Turns the digits demo model's pixel-space latent into an IMAGE (28×28 MNIST framing, white on black), "
        "optionally upscaled (nearest neighbour) for viewing."),
    "DiffIERDemoSRCondition": (
        "DiffIER Demo SR Condition",
        "Conditioning for the super-resolution demo models: the low-resolution image (converted to grey, resized "
        "to the model's LR size if needed, bicubic-upsampled to the HR size) goes to the positive as the model's "
        "concat image; the negative carries zeros, the null condition the model was trained with for "
        "classifier-free guidance."),
    "DiffIERDemoSREmptyLatent": (
        "DiffIER Demo SR Empty Latent",
        "An empty latent of the SR demo model's high-resolution shape (1 grey channel, pixel space)."),
    "DiffIERDemoSRDecode": (
        "DiffIER Demo SR Decode",
        "Turns the SR demo model's pixel-space latent ([-1, 1], one grey channel) into an IMAGE at the model's HR "
        "size."),
}


class DemoNode(io.ComfyNode):
    """A demo node: node id = class name, category ``sampling/diffier/demo``, display name and description from
    :data:`TEXTS`; a subclass writes ``define_schema`` as ``cls.demo_schema(inputs, outputs)``, and ``execute``."""

    @classmethod
    def demo_schema(cls, inputs: list[Any], outputs: list[Any]) -> io.Schema:
        """The node's schema with its ``inputs`` and ``outputs``.

        Args:
            inputs: ``io.<Type>.Input`` objects, in order.
            outputs: ``io.<Type>.Output`` objects, in order.
        """
        display_name, description = TEXTS[cls.__name__]
        return io.Schema(node_id=cls.__name__, display_name=display_name, category=DEMO_CATEGORY,
                         description=description, inputs=inputs, outputs=outputs)


class DiffIERDemoModelLoader(DemoNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        names = models.list_models()
        default = DEFAULT_MODEL if DEFAULT_MODEL in names else None
        return cls.demo_schema(
            [io.Combo.Input("model_name", options=names, default=default,
                            tooltip="A .safetensors demo model from the pack's demo/weights/ folder.")],
            [io.Model.Output(tooltip="The demo diffusion model, usable with any sampler node.")])

    @classmethod
    def execute(cls, model_name: str) -> io.NodeOutput:
        require(DEMO)
        return io.NodeOutput(models.load_demo_model(model_name).patcher)


class DiffIERDemoCondition(DemoNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return cls.demo_schema(
            [io.Model.Input("model", tooltip="The digits demo model (its embedding table is read, not changed)."),
             io.Combo.Input("digit", options=DIGIT_CHOICES, default="3",
                            tooltip="Which digit to generate; \"unconditional\" gives the null embedding "
                                    "(the usual negative).")],
            [io.Conditioning.Output(tooltip="Conditioning for the sampler's positive or negative input.")])

    @classmethod
    def execute(cls, model: Any, digit: str) -> io.NodeOutput:
        inner = demo_model(model, "DiffIER Demo Condition", "digits")
        label = models.NULL_CLASS if digit == "unconditional" else int(digit)
        return io.NodeOutput(models.digits_conditioning(inner, label))


class DiffIERDemoEmptyLatent(DemoNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return cls.demo_schema(
            [io.Int.Input("batch_size", default=16, min=1, max=4096, tooltip="How many digits to generate at once.")],
            [io.Latent.Output(tooltip="Zeros of shape [batch, 1, 24, 24] for the sampler.")])

    @classmethod
    def execute(cls, batch_size: int) -> io.NodeOutput:
        return io.NodeOutput(models.digits_empty_latent(batch_size))


class DiffIERDemoDecode(DemoNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return cls.demo_schema(
            [io.Latent.Input("samples", tooltip="The sampled latent from the digits demo model."),
             io.Int.Input("scale", default=4, min=1, max=16,
                          tooltip="Integer upscale factor for viewing (1 = 28×28).")],
            [io.Image.Output(tooltip="The digits as a ComfyUI IMAGE batch.")])

    @classmethod
    def execute(cls, samples: dict[str, torch.Tensor], scale: int) -> io.NodeOutput:
        return io.NodeOutput(models.digits_decode(samples["samples"], scale))


class DiffIERDemoSRCondition(DemoNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return cls.demo_schema(
            [io.Model.Input("model", tooltip="An SR demo model from the DiffIER Demo Model Loader (its sizes are "
                                             "read, nothing is changed)."),
             io.Image.Input("image", tooltip="The low-resolution image(s) to upscale (e.g. 7×7 digits for "
                                             "sr_digits_x4, 16×16 photo patches for sr_photos_x2); one output per "
                                             "image in the batch.")],
            [io.Conditioning.Output("positive", tooltip="Carries the upsampled LR image (the condition)."),
             io.Conditioning.Output("negative", tooltip="Carries zeros (the null condition).")])

    @classmethod
    def execute(cls, model: Any, image: torch.Tensor) -> io.NodeOutput:
        config = demo_model(model, "DiffIER Demo SR Condition", "sr").diffier_demo_config
        cond = models.sr_condition_image(models.image_to_unit_gray(image), config)
        return io.NodeOutput(*models.sr_conditioning(cond))


class DiffIERDemoSREmptyLatent(DemoNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return cls.demo_schema(
            [io.Model.Input("model", tooltip="The SR demo model (its HR size is read)."),
             io.Int.Input("batch_size", default=1, min=1, max=4096,
                          tooltip="How many images; must equal the number of LR images in the condition (or the "
                                  "condition has one image, which is repeated).")],
            [io.Latent.Output(tooltip="Zeros of shape [batch, 1, HR, HR] for the sampler.")])

    @classmethod
    def execute(cls, model: Any, batch_size: int) -> io.NodeOutput:
        config = demo_model(model, "DiffIER Demo SR Empty Latent", "sr").diffier_demo_config
        return io.NodeOutput(models.sr_empty_latent(batch_size, config))


class DiffIERDemoSRDecode(DemoNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return cls.demo_schema(
            [io.Latent.Input("samples", tooltip="The sampled latent from an SR demo model.")],
            [io.Image.Output(tooltip="The super-resolved images (grey, as RGB).")])

    @classmethod
    def execute(cls, samples: dict[str, torch.Tensor]) -> io.NodeOutput:
        return io.NodeOutput(models.sr_decode(samples["samples"]))


DEMO_NODES: list[type[io.ComfyNode]] = [DiffIERDemoModelLoader, DiffIERDemoCondition, DiffIERDemoEmptyLatent,
                                        DiffIERDemoDecode, DiffIERDemoSRCondition, DiffIERDemoSREmptyLatent,
                                        DiffIERDemoSRDecode]
