"""The embedded demo: load a model shipped in the pack's ``models/`` folder and drive it through the normal
ComfyUI sampler (KSampler, KSamplerDiffIER, ...). No download; the model code lives in ``demo_models``."""

from __future__ import annotations

from comfy_api.latest import io

from . import demo_models

DEMO_CATEGORY = "sampling/diffier/demo"
DIGIT_CHOICES = [str(d) for d in range(10)] + ["unconditional"]


def _digits_model(model, node: str):
    inner = getattr(model, "model", None)
    if not hasattr(inner, "class_embedding"):
        raise ValueError(f"{node}: the model is not the digits demo model (load digits_diffusion.safetensors "
                         f"with the DiffIER Demo Model Loader)")
    return inner


class DiffIERDemoModelLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DiffIERDemoModelLoader",
            display_name="DiffIER Demo Model Loader",
            category=DEMO_CATEGORY,
            description="Loads one of the small demo diffusion models shipped inside this node pack (models/ "
                        "folder; no download). digits_diffusion: a class-conditional MNIST digit model (24×24, "
                        "pixel space) trained with CFG dropout, for trying DiffIER and CFG on any machine.",
            inputs=[io.Combo.Input("model_name", options=demo_models.list_models(),
                                   default="digits_diffusion.safetensors"
                                   if "digits_diffusion.safetensors" in demo_models.list_models() else None,
                                   tooltip="A .safetensors demo model from the pack's models/ folder.")],
            outputs=[io.Model.Output(tooltip="The demo diffusion model, usable with any sampler node.")],
        )

    @classmethod
    def execute(cls, model_name) -> io.NodeOutput:
        return io.NodeOutput(demo_models.load_demo_model(model_name).patcher)


class DiffIERDemoCondition(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DiffIERDemoCondition",
            display_name="DiffIER Demo Condition (digit)",
            category=DEMO_CATEGORY,
            description="Conditioning for the digits demo model: the learned embedding of one digit, or the null "
                        "embedding (\"unconditional\") that the model was trained with for classifier-free "
                        "guidance. Use a digit for positive and \"unconditional\" for negative.",
            inputs=[
                io.Model.Input("model", tooltip="The digits demo model (its embedding table is read, not changed)."),
                io.Combo.Input("digit", options=DIGIT_CHOICES, default="3",
                               tooltip="Which digit to generate; \"unconditional\" gives the null embedding "
                                       "(the usual negative)."),
            ],
            outputs=[io.Conditioning.Output(tooltip="Conditioning for the sampler's positive or negative input.")],
        )

    @classmethod
    def execute(cls, model, digit) -> io.NodeOutput:
        inner = _digits_model(model, "DiffIER Demo Condition")
        label = demo_models.NULL_CLASS if digit == "unconditional" else int(digit)
        return io.NodeOutput(demo_models.digits_conditioning(inner, label))


class DiffIERDemoEmptyLatent(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DiffIERDemoEmptyLatent",
            display_name="DiffIER Demo Empty Latent (digits)",
            category=DEMO_CATEGORY,
            description="An empty latent of the digits demo model's shape (1 channel, 24×24 pixels).",
            inputs=[io.Int.Input("batch_size", default=16, min=1, max=4096,
                                 tooltip="How many digits to generate at once.")],
            outputs=[io.Latent.Output(tooltip="Zeros of shape [batch, 1, 24, 24] for the sampler.")],
        )

    @classmethod
    def execute(cls, batch_size) -> io.NodeOutput:
        return io.NodeOutput(demo_models.digits_empty_latent(batch_size))


class DiffIERDemoDecode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DiffIERDemoDecode",
            display_name="DiffIER Demo Decode (digits)",
            category=DEMO_CATEGORY,
            description="Turns the digits demo model's pixel-space latent into an IMAGE (28×28 MNIST framing, "
                        "white on black), optionally upscaled (nearest neighbour) for viewing.",
            inputs=[
                io.Latent.Input("samples", tooltip="The sampled latent from the digits demo model."),
                io.Int.Input("scale", default=4, min=1, max=16,
                             tooltip="Integer upscale factor for viewing (1 = 28×28)."),
            ],
            outputs=[io.Image.Output(tooltip="The digits as a ComfyUI IMAGE batch.")],
        )

    @classmethod
    def execute(cls, samples, scale) -> io.NodeOutput:
        return io.NodeOutput(demo_models.digits_decode(samples["samples"], scale))


DEMO_NODES: list[type[io.ComfyNode]] = [DiffIERDemoModelLoader, DiffIERDemoCondition, DiffIERDemoEmptyLatent,
                                        DiffIERDemoDecode]
