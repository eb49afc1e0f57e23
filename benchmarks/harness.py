"""Run guidance methods through ComfyUI's real sampling path and real nodes, with instrumentation.

Every method is a chain of real ComfyUI MODEL-patch nodes (ComfyUI's RescaleCFG, APG, CFGZeroStar,
this pack's DiffIERGuider) or, for core-only DiffIER options that the UI does not expose, this
pack's ``DiffIERPatch`` applied the same way the node applies it. Sampling goes through ComfyUI's
KSampler node. Instrumentation uses only list hooks: an ``APPLY_MODEL`` wrapper counts model rows
(evaluations per sample) and its own invocations (sequential model calls: each call carries every image of
the batch, so a GPU at batch 1 pays for each), and a final post-CFG hook records each step's (σ, x, guided x̂₀).

Usage::

    from benchmarks.harness import Harness, Method
    h = Harness()                             # boots ComfyUI in-process, loads the pack
    m = Method("diffier", (("DiffIERGuider", {...}),))
    result = h.sample(model, m, positive=..., negative=..., latent=..., seed=0, steps=20, cfg=5.0)
    result.samples, result.evals_per_sample, result.calls, result.trajectory, result.diffier
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import torch

from benchmarks.instruments import ModelRows
from scripts import comfy_inprocess

__all__ = ["Method", "SampleResult", "Harness"]


@dataclasses.dataclass(frozen=True)
class Method:
    """A guidance method: MODEL-patch nodes applied in order, optionally followed by a core-only DiffIER.

    Args:
        name: label used in tables and plots.
        patches: ``((node_id, inputs), ...)``: real ComfyUI nodes with MODEL in/out, applied in order.
        core_diffier: keyword arguments of ``diffier_core.DiffIERSettings`` for options the node does not
            expose (``reduction="sum"``, ``inner_guidance="cond"``), applied after ``patches``.
        extra: optional ``ModelPatcher -> ModelPatcher`` applied last, for benchmark-only hooks that are
            no node (it must clone, as the nodes do).
    """

    name: str
    patches: tuple[tuple[str, dict[str, Any]], ...] = ()
    core_diffier: dict[str, Any] | None = None
    extra: Callable[[Any], Any] | None = None


@dataclasses.dataclass
class SampleResult:
    samples: torch.Tensor
    evals_per_sample: float          # model rows evaluated / batch (cond and uncond count one each)
    wall_s: float
    calls: int                       # sequential model calls (APPLY_MODEL wrapper invocations) of the run
    cpu_s: float                     # CPU time of this process during the run
    trajectory: list[dict[str, torch.Tensor | float]]   # per model call: sigma, x, denoised (guided, final)
    diffier: list[dict[str, Any]]    # DiffIER run summaries (core-only methods)


class Harness:
    """A booted in-process ComfyUI with this pack, able to sample any ModelPatcher with any Method.

    Args:
        session: ``(root, nodes, run_node, pack)`` of an already booted ComfyUI (tests); None: boot one.
    """

    def __init__(self, session: tuple[Any, Any, Any, Any] | None = None) -> None:
        self.root, self.nodes, self.run_node, self.pack = session or comfy_inprocess.session()

    def patch(self, model: Any, method: Method, on_run_end=None) -> Any:
        """``model`` with ``method``'s patch nodes applied (each node clones; ``model`` is untouched)."""
        m = model
        for node_id, inputs in method.patches:
            (m,) = self.run_node(node_id, model=m, **inputs)
        if method.core_diffier is not None:
            settings = self.pack.diffier_core.DiffIERSettings(**method.core_diffier)
            m = self.pack.nodes.patch.DiffIERPatch(settings, on_run_end=on_run_end).apply(m)
        if method.extra is not None:
            m = method.extra(m)
        return m

    def sample(self, model: Any, method: Method, *, positive: list, negative: list, latent: dict, seed: int,
               steps: int, cfg: float, sampler: str = "euler", scheduler: str = "normal", denoise: float = 1.0,
               record: bool = False) -> SampleResult:
        """One KSampler run of ``method`` on ``model``; ``record`` keeps the per-call trajectory."""
        diffier: list[dict[str, Any]] = []
        rows = ModelRows()
        m = rows.on(self.patch(model, method, on_run_end=diffier.append))
        trajectory: list[dict[str, Any]] = []
        if record:
            def recorder(args):
                trajectory.append({"sigma": float(args["sigma"].max()), "x": args["input"].detach().cpu(),
                                   "denoised": args["denoised"].detach().cpu()})
                return args["denoised"]
            m.set_model_sampler_post_cfg_function(recorder)
        t0, c0 = time.perf_counter(), time.process_time()
        # no autograd graph, as under ComfyUI's executor: a node whose output required grad (a chain of patches
        # seen on the SR photo model) would otherwise keep every activation of the run alive in the results
        with torch.no_grad():
            (out,) = self.run_node("KSampler", model=m, seed=seed, steps=steps, cfg=cfg, sampler_name=sampler,
                                   scheduler=scheduler, positive=positive, negative=negative, latent_image=latent,
                                   denoise=denoise)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        batch = latent["samples"].shape[0]
        return SampleResult(out["samples"], rows.rows / batch, wall, rows.calls, cpu, trajectory, diffier)

    def node_inputs(self, node_id: str) -> set[str]:
        """The input names (required and optional) of a registered node."""
        info = self.nodes.NODE_CLASS_MAPPINGS[node_id].GET_NODE_INFO_V1()["input"]
        return {name for section in ("required", "optional") for name in info.get(section, {})}
