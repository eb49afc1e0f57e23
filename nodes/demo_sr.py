"""The embedded super-resolution demo: condition, empty latent and decode nodes for the SR demo models
(``models/sr_*.safetensors``, loaded by the DiffIER Demo Model Loader). The model code and all the
image arithmetic live in ``demo_models``."""

from __future__ import annotations

from comfy_api.latest import io

from . import demo_models
from .demo import DEMO_CATEGORY


def _sr_config(model, node: str) -> dict:
    config = getattr(getattr(model, "model", None), "diffier_demo_config", None)
    if not isinstance(config, dict) or "scale" not in config:
        raise ValueError(f"{node}: the model is not an SR demo model (load sr_digits_x4.safetensors or "
                         f"sr_photos_x2.safetensors with the DiffIER Demo Model Loader)")
    return config


class DiffIERDemoSRCondition(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DiffIERDemoSRCondition",
            display_name="DiffIER Demo SR Condition",
            category=DEMO_CATEGORY,
            description="Conditioning for the super-resolution demo models: the low-resolution image (converted to "
                        "grey, resized to the model's LR size if needed, bicubic-upsampled to the HR size) goes to "
                        "the positive as the model's concat image; the negative carries zeros, the null condition "
                        "the model was trained with for classifier-free guidance.",
            inputs=[
                io.Model.Input("model", tooltip="An SR demo model from the DiffIER Demo Model Loader (its sizes are "
                                                "read, nothing is changed)."),
                io.Image.Input("image", tooltip="The low-resolution image(s) to upscale (e.g. 7×7 digits for "
                                                "sr_digits_x4, 16×16 photo patches for sr_photos_x2); one "
                                                "output per image in the batch."),
            ],
            outputs=[
                io.Conditioning.Output("positive", tooltip="Carries the upsampled LR image (the condition)."),
                io.Conditioning.Output("negative", tooltip="Carries zeros (the null condition)."),
            ],
        )

    @classmethod
    def execute(cls, model, image) -> io.NodeOutput:
        config = _sr_config(model, "DiffIER Demo SR Condition")
        cond = demo_models.sr_condition_image(demo_models.image_to_unit_gray(image), config)
        return io.NodeOutput(*demo_models.sr_conditioning(cond))


class DiffIERDemoSREmptyLatent(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DiffIERDemoSREmptyLatent",
            display_name="DiffIER Demo SR Empty Latent",
            category=DEMO_CATEGORY,
            description="An empty latent of the SR demo model's high-resolution shape (1 grey channel, pixel space).",
            inputs=[
                io.Model.Input("model", tooltip="The SR demo model (its HR size is read)."),
                io.Int.Input("batch_size", default=1, min=1, max=4096,
                             tooltip="How many images; must equal the number of LR images in the condition "
                                     "(or the condition has one image, which is repeated)."),
            ],
            outputs=[io.Latent.Output(tooltip="Zeros of shape [batch, 1, HR, HR] for the sampler.")],
        )

    @classmethod
    def execute(cls, model, batch_size) -> io.NodeOutput:
        config = _sr_config(model, "DiffIER Demo SR Empty Latent")
        return io.NodeOutput(demo_models.sr_empty_latent(batch_size, config))


class DiffIERDemoSRDecode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DiffIERDemoSRDecode",
            display_name="DiffIER Demo SR Decode",
            category=DEMO_CATEGORY,
            description="Turns the SR demo model's pixel-space latent ([-1, 1], one grey channel) into an IMAGE at "
                        "the model's HR size.",
            inputs=[io.Latent.Input("samples", tooltip="The sampled latent from an SR demo model.")],
            outputs=[io.Image.Output(tooltip="The super-resolved images (grey, as RGB).")],
        )

    @classmethod
    def execute(cls, samples) -> io.NodeOutput:
        return io.NodeOutput(demo_models.sr_decode(samples["samples"]))


DEMO_SR_NODES: list[type[io.ComfyNode]] = [DiffIERDemoSRCondition, DiffIERDemoSREmptyLatent, DiffIERDemoSRDecode]
