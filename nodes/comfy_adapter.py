"""The one place where ComfyUI-DiffIER touches ComfyUI internals (docs/COMPATIBILITY.md lists them).

Every ComfyUI function, class attribute, wrapper type and args-dict key the pack relies on is a
:class:`TouchPoint` in :data:`TOUCH_POINTS`, and the pack reaches ComfyUI only through the functions of
this module. :func:`check_touch_points` runs once when the pack is loaded: if something moved, it logs
ONE error naming the ComfyUI version, every missing symbol, what it is for and what to upgrade, instead
of the pack failing at sampling time with a ``KeyError`` or ``AttributeError``. Later, a feature whose
touch points are missing raises :class:`ComfyUIMismatchError` with the same information when a node
uses it (:func:`require`); optional touch points fall back (see ``FALLBACKS``).

The DiffIER hook gets each guided step from :func:`guided_step` in one call: the step's tensors, its run, the
model's noise scales and the inner model evaluation, each read through the touch points below.

Newer ComfyUI APIs are used where present (:func:`input_extras`, :func:`schema_extras`) and silently
left out where not.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields, is_dataclass
from typing import Any, Generic, Protocol, TypeVar

import torch

from ..diffier_core import DiffIERError
from ..diffier_core.correction import EvaluateFn

log = logging.getLogger("DiffIER")

__all__ = ["TouchPoint", "TOUCH_POINTS", "POST_CFG_KEYS", "PAIRED_BATCH_MODELS", "TESTED_VERSIONS",
           "MINIMUM_VERSION", "SOURCE_CHECKED", "ComfyUIMismatchError", "NoiseConventionError", "comfyui_version",
           "check_touch_points", "missing", "require", "available", "GuidedStep", "guided_step", "patch_model",
           "store_run", "outer_sample_context", "noise_scaling", "noise_scales", "affine_noise_scales",
           "window_sigmas", "common_ksampler", "sampler_names", "scheduler_names", "cfg_guider", "input_extras",
           "schema_extras", "ComfyExtension", "io"]

#: ComfyUI versions the integration tests ran against (docs/COMPATIBILITY.md).
TESTED_VERSIONS = ("0.3.52", "0.3.75")
#: The oldest tested version; older ones lack parts of the V3 node API.
MINIMUM_VERSION = TESTED_VERSIONS[0]
#: Newest ComfyUI whose source the touch points were checked against (not run: it is not installable here).
SOURCE_CHECKED = "0.38.1"

#: Keys of the args dict ComfyUI passes to a post-CFG function (comfy.samplers.cfg_function) that DiffIER reads.
POST_CFG_KEYS = ("denoised", "cond", "uncond", "cond_scale", "sigma", "input", "model", "model_options")

#: Where the per-run records live in ``model_options`` (ComfyUI copies this dict into every step's args).
TRANSFORMER_OPTIONS = "transformer_options"
RUNS_KEY = "diffier_runs"

# Feature names: what stops working (or falls back) when one of its touch points is missing.
HOOK = "the DiffIER post-CFG hook (all three nodes)"
SEED = "seeding DiffIER's inner-loop noise from the sampler's seed"
INNER = "consistency mode's inner model evaluation"
INTERRUPT = "stopping the inner loop on /interrupt"
KSAMPLER = "KSampler (DiffIER)"
GUIDER = "DiffIER CFG Guider"
NODE_API = "registering the nodes (V3 node API)"
DEMO = "the demo model loader nodes"
PAIRED = "evaluating cond and uncond together for models whose network splits every batch into that pair"

#: ``comfy.model_base`` classes whose network splits every batch into an (uncond, cond) pair (``Hunyuan3Dv2_1``:
#: ``comfy/ldm/hunyuan3dv2_1/hunyuandit.py`` chunks its context in two): their inner evaluation runs both
#: branches even where DiffIER needs only the conditional one.
PAIRED_BATCH_MODELS = ("Hunyuan3Dv2_1",)

#: What the pack does instead when an optional feature is missing.
FALLBACKS = {
    SEED: "the inner-loop noise is seeded with 0 (still reproducible, but the same for every seed)",
    INTERRUPT: "the inner loop runs to its end after an interrupt; ComfyUI stops at the next step",
    PAIRED: "this ComfyUI has no such model, so there is nothing to pair",
}
#: Features whose touch points name model classes that older ComfyUI versions do not have: absent, nothing is
#: missing, so the load-time check does not report them.
ABSENT_OK = (PAIRED,)


@dataclass(frozen=True)
class TouchPoint:
    """One thing the pack needs from ComfyUI.

    Attributes:
        module: the module to import (``nodes`` is ComfyUI's top-level ``nodes.py``).
        attr: dotted attribute path inside the module ("" for the module itself).
        feature: what needs it (one of the feature names of this module).
        params: parameter names the callable must accept (checked with ``inspect.signature``).
        literals: names its source must contain, quoted (args-dict keys ComfyUI builds there) or as
            ``self.<name>`` (instance attributes set there).
    """

    module: str
    attr: str
    feature: str
    params: tuple[str, ...] = ()
    literals: tuple[str, ...] = ()

    @property
    def symbol(self) -> str:
        """The dotted name, e.g. ``comfy.samplers.calc_cond_batch``."""
        return f"{self.module}.{self.attr}" if self.attr else self.module

    @property
    def required(self) -> bool:
        """False where the pack falls back (see ``FALLBACKS``)."""
        return self.feature not in FALLBACKS


_IO_NAMES = ("ComfyNode", "Schema", "NodeOutput", "Model", "Conditioning", "Latent", "Guider", "String", "Int",
             "Float", "Combo", "Image", "Boolean")

TOUCH_POINTS: tuple[TouchPoint, ...] = (
    TouchPoint("comfy.model_patcher", "ModelPatcher.clone", HOOK),
    TouchPoint("comfy.model_patcher", "ModelPatcher.set_model_sampler_post_cfg_function", HOOK,
               params=("post_cfg_function",)),
    TouchPoint("comfy.model_patcher", "ModelPatcher.get_model_object", HOOK, params=("name",)),
    TouchPoint("comfy.samplers", "cfg_function", HOOK, literals=("sampler_post_cfg_function", *POST_CFG_KEYS)),
    TouchPoint("comfy.model_base", "BaseModel.__init__", HOOK, literals=("model_sampling",)),
    TouchPoint("comfy.model_sampling", "EPS.noise_scaling", HOOK, params=("sigma", "noise", "latent_image")),
    TouchPoint("comfy.model_sampling", "CONST.noise_scaling", HOOK, params=("sigma", "noise", "latent_image")),
    TouchPoint("comfy.model_sampling", "ModelSamplingDiscrete.percent_to_sigma", HOOK, params=("percent",)),
    TouchPoint("comfy.model_patcher", "ModelPatcher.add_wrapper_with_key", SEED, params=("wrapper_type", "key")),
    TouchPoint("comfy.patcher_extension", "WrappersMP.OUTER_SAMPLE", SEED),
    TouchPoint("comfy.patcher_extension", "WrapperExecutor.__init__", SEED, literals=("class_obj",)),
    TouchPoint("comfy.samplers", "CFGGuider.outer_sample", SEED,
               params=("noise", "latent_image", "sampler", "sigmas", "denoise_mask", "callback", "disable_pbar",
                       "seed")),
    TouchPoint("comfy.samplers", "CFGGuider.__init__", SEED, literals=("model_patcher", "model_options")),
    TouchPoint("comfy.samplers", "calc_cond_batch", INNER,
               params=("model", "conds", "x_in", "timestep", "model_options")),
    TouchPoint("comfy.model_management", "throw_exception_if_processing_interrupted", INTERRUPT),
    TouchPoint("comfy.samplers", "KSampler.SAMPLERS", KSAMPLER),
    TouchPoint("comfy.samplers", "KSampler.SCHEDULERS", KSAMPLER),
    TouchPoint("nodes", "common_ksampler", KSAMPLER,
               params=("model", "seed", "steps", "cfg", "sampler_name", "scheduler", "positive", "negative",
                       "latent", "denoise")),
    TouchPoint("comfy.samplers", "CFGGuider.set_conds", GUIDER, params=("positive", "negative")),
    TouchPoint("comfy.samplers", "CFGGuider.set_cfg", GUIDER, params=("cfg",)),
    TouchPoint("comfy_api.latest", "ComfyExtension", NODE_API),
    *(TouchPoint("comfy_api.latest", f"io.{name}", NODE_API) for name in _IO_NAMES),
    TouchPoint("comfy.model_base", "BaseModel", DEMO),
    TouchPoint("comfy.supported_models_base", "BASE", DEMO),
    TouchPoint("comfy.latent_formats", "LatentFormat", DEMO),
    TouchPoint("comfy.ops", "disable_weight_init", DEMO),
    TouchPoint("comfy.utils", "load_torch_file", DEMO),
    TouchPoint("comfy.model_patcher", "ModelPatcher", DEMO),
    TouchPoint("comfy.model_management", "get_torch_device", DEMO),
    TouchPoint("comfy.model_management", "unet_offload_device", DEMO),
    *(TouchPoint("comfy.model_base", name, PAIRED) for name in PAIRED_BATCH_MODELS),
)


# -- the load-time check ---------------------------------------------------------------------------
def comfyui_version() -> str:
    """``__version__`` of ComfyUI's ``comfyui_version.py``, or ``"unknown"`` where there is none."""
    try:
        return str(importlib.import_module("comfyui_version").__version__)
    except (ImportError, AttributeError):
        return "unknown"


def _version_tuple(version: str) -> tuple[int, ...] | None:
    try:
        return tuple(int(part) for part in version.split("."))
    except ValueError:
        return None


def _resolve(point: TouchPoint) -> tuple[Any, str | None]:
    """``(object, None)``, or ``(None, why it is missing)``."""
    try:
        obj: Any = importlib.import_module(point.module)
    except ImportError as exc:
        return None, f"module {point.module} cannot be imported ({exc})"
    path = point.module
    for part in point.attr.split(".") if point.attr else ():
        path = f"{path}.{part}"
        if not hasattr(obj, part):
            return None, f"{path} is missing"
        obj = getattr(obj, part)
    return obj, None


def _signature_problem(point: TouchPoint, obj: Any) -> str | None:
    try:
        parameters = inspect.signature(obj).parameters
    except (TypeError, ValueError):
        return None  # not introspectable (a builtin): nothing to check
    absent = [name for name in point.params if name not in parameters]
    return f"{point.symbol} no longer takes {absent}" if absent else None


def _source_problem(point: TouchPoint, obj: Any) -> str | None:
    try:
        source = inspect.getsource(obj)
    except (OSError, TypeError):
        return None  # no source to read (compiled install): the runtime checks still apply
    absent = [key for key in point.literals
              if f'"{key}"' not in source and f"'{key}'" not in source and f"self.{key}" not in source]
    return f"{point.symbol} no longer uses {absent}" if absent else None


def _problem(point: TouchPoint) -> str | None:
    obj, why = _resolve(point)
    if why is not None:
        return why
    if point.params:
        why = _signature_problem(point, obj)
    if why is None and point.literals:
        why = _source_problem(point, obj)
    return why


def _advice(version: str) -> str:
    found, oldest = _version_tuple(version), _version_tuple(MINIMUM_VERSION)
    if found is not None and oldest is not None and found < oldest:
        return f"update ComfyUI to {MINIMUM_VERSION} or newer"
    return (f"update ComfyUI-DiffIER (checked against ComfyUI {', '.join(TESTED_VERSIONS)} and the source of "
            f"{SOURCE_CHECKED}); if this ComfyUI is a release and no DiffIER update helps, report this message")


def _message(version: str, problems: Mapping[str, list[str]]) -> str:
    parts = []
    for feature, why in problems.items():
        consequence = FALLBACKS.get(feature, "unavailable")
        parts.append(f"{'; '.join(why)} (needed for {feature}: {consequence})")
    return (f"DiffIER: ComfyUI {version} does not provide what this pack needs: {' | '.join(parts)}. "
            f"What to do: {_advice(version)}.")


_status: dict[str, list[str]] = {}


def check_touch_points(points: Iterable[TouchPoint] = TOUCH_POINTS) -> dict[str, list[str]]:
    """Check every touch point; log one error if any is missing. Returns ``{feature: [problem, ...]}``.

    Args:
        points: the touch points to check (default: all of them).
    """
    problems: dict[str, list[str]] = {}
    for point in points:
        why = _problem(point)
        if why is not None:
            problems.setdefault(point.feature, []).append(why)
    _status.clear()
    _status.update(problems)
    _paired_classes.cache_clear()
    reported = {feature: why for feature, why in problems.items() if feature not in ABSENT_OK}
    if reported:
        log.error(_message(comfyui_version(), reported))
    return problems


def missing(feature: str) -> list[str]:
    """What is missing for ``feature`` (as found by the last :func:`check_touch_points`)."""
    return list(_status.get(feature, []))


def available(feature: str) -> bool:
    """Whether every touch point of ``feature`` was found."""
    return not _status.get(feature)


class ComfyUIMismatchError(DiffIERError):
    """This ComfyUI does not provide what a feature of the pack needs (touch points of :data:`TOUCH_POINTS`).

    Args:
        feature: the feature that cannot run (one of the feature names of this module).
        problems: what is missing or changed, one entry per touch point.
    """

    def __init__(self, feature: str, problems: list[str]) -> None:
        super().__init__(feature, problems, f"ComfyUI {MINIMUM_VERSION} or newer with the touch points of "
                         "docs/COMPATIBILITY.md", _message(comfyui_version(), {feature: problems}))


class NoiseConventionError(DiffIERError):
    """A model sampling's ``noise_scaling`` is not the affine map ``x = a(σ)·x0 + b(σ)·ε`` DiffIER corrects in.

    Args:
        sampling: the model sampling object.
        got: what its ``noise_scaling`` did.
        message: the full text.
    """

    def __init__(self, sampling: Any, got: str, message: str) -> None:
        super().__init__(f"{type(sampling).__name__}.noise_scaling", got, "x = a(σ)·x0 + b(σ)·ε", message)


def require(feature: str) -> None:
    """Raise a clear :class:`ComfyUIMismatchError` if ``feature``'s touch points are missing in this ComfyUI."""
    if _status.get(feature):
        raise ComfyUIMismatchError(feature, _status[feature])


# -- the node API (V3) ---------------------------------------------------------------------------
try:
    from comfy_api.latest import ComfyExtension, io
except ImportError as _exc:  # ComfyUI too old for V3 nodes: say so once, clearly, then fail the import
    _problems = [f"module comfy_api.latest cannot be imported ({_exc})"]
    log.error(_message(comfyui_version(), {NODE_API: _problems}))
    raise ComfyUIMismatchError(NODE_API, _problems) from _exc


@functools.cache
def _accepted(cls: type) -> frozenset[str]:
    if is_dataclass(cls):
        return frozenset(f.name for f in fields(cls))
    try:
        return frozenset(inspect.signature(cls).parameters)
    except (TypeError, ValueError):
        return frozenset()


def input_extras(input_cls: type, **options: Any) -> dict[str, Any]:
    """The ``options`` that this ComfyUI's ``input_cls`` accepts (e.g. ``advanced=True``, new in later 0.3.x).

    Args:
        input_cls: an ``io.<Type>.Input`` class.
        options: keyword arguments of newer ComfyUI versions.
    """
    return {k: v for k, v in options.items() if k in _accepted(input_cls)}


def schema_extras(**options: Any) -> dict[str, Any]:
    """The ``options`` that this ComfyUI's ``io.Schema`` has (e.g. ``search_aliases``, newer than 0.3.75)."""
    return {k: v for k, v in options.items() if k in _accepted(io.Schema)}


# -- sampling -------------------------------------------------------------------------------------
class SamplingRun(Protocol):
    """What the adapter reads of a sampling run's record (``nodes.patch.DiffIERRun``)."""

    model_sampling: Any  # whose noise_scaling gives each step's signal and noise scales


RunT = TypeVar("RunT", bound=SamplingRun)


@dataclass(frozen=True)
class GuidedStep(Generic[RunT]):
    """One guided step as the DiffIER hook needs it, read from ComfyUI's post-CFG args by :func:`guided_step`.

    Attributes:
        x: the step's noisy input x_t, ``[B, ...]``.
        denoised: the guided clean estimate ComfyUI's CFG produced, same shape.
        sigma: the step's σ per sample.
        cond_scale: the CFG scale (1: ComfyUI skipped the negative pass).
        run: the sampling run's record (stored by the outer-sample wrapper, or opened by the hook's fallback).
        paired_batch: the model's class name if its network splits every batch into an (uncond, cond) pair
            (:data:`PAIRED_BATCH_MODELS`: its inner evaluation always runs both branches), else ``""``.
        scales: ``scales()`` → the signal and noise scales (a(σ), b(σ)) per sample, read off the run's model
            sampling without a host sync (:func:`noise_scales`).
        evaluator: ``evaluator(inner_guidance)`` → x' ↦ the model's clean estimate at (x', σ) in one
            ``calc_cond_batch`` pass: the conditional branch (``cond``) or cond+uncond CFG at the step's scale
            (``cfg``); it stops on /interrupt.
    """

    x: torch.Tensor
    denoised: torch.Tensor
    sigma: torch.Tensor
    cond_scale: float
    run: RunT
    paired_batch: str
    scales: Callable[[], tuple[torch.Tensor, torch.Tensor]]
    evaluator: Callable[[str], EvaluateFn]


def guided_step(args: Mapping[str, Any], key: str, open_run: Callable[[Any, torch.Tensor], RunT]) -> GuidedStep[RunT]:
    """The step of ComfyUI's post-CFG ``args`` with its run, or a clear error naming the missing keys.

    Args:
        args: what ``comfy.samplers.cfg_function`` passes to a post-CFG function (keys: :data:`POST_CFG_KEYS`).
        key: the key the run was stored under (:func:`store_run`).
        open_run: ``open_run(model_sampling, sigma)`` → a run, for sampling that did not go through ComfyUI's
            outer-sample wrapper (called where no run is stored).
    """
    absent = [name for name in POST_CFG_KEYS if name not in args]
    if absent:
        raise ComfyUIMismatchError(HOOK, [f"comfy.samplers.cfg_function no longer passes {absent} to post-CFG "
                                          "functions"])
    model, sigma, model_options = args["model"], args["sigma"], args["model_options"]
    stored = model_options.get(TRANSFORMER_OPTIONS, {}).get(RUNS_KEY, {}).get(key)
    run = stored if stored is not None else open_run(model.model_sampling, sigma)
    paired = _paired_model(model)

    def scales() -> tuple[torch.Tensor, torch.Tensor]:
        return noise_scales(run.model_sampling, sigma)

    def evaluator(inner_guidance: str) -> EvaluateFn:
        require(INNER)
        import comfy.model_management
        import comfy.samplers

        guided = inner_guidance == "cfg"
        both = guided or (paired != "" and args["uncond"] is not None)
        conds = [args["cond"], args["uncond"] if both else None]
        cond_scale = float(args["cond_scale"])
        interruptible = available(INTERRUPT)

        def evaluate(x_prime: torch.Tensor) -> torch.Tensor:
            if interruptible:  # /interrupt stops the inner loop too
                comfy.model_management.throw_exception_if_processing_interrupted()
            cond, uncond = comfy.samplers.calc_cond_batch(model, conds, x_prime, sigma, model_options)
            result: torch.Tensor = uncond + (cond - uncond) * cond_scale if guided else cond
            return result

        return evaluate

    return GuidedStep(args["input"], args["denoised"], sigma, float(args["cond_scale"]), run, paired, scales,
                      evaluator)


@functools.cache
def _paired_classes() -> tuple[type, ...]:
    """The classes of :data:`PAIRED_BATCH_MODELS` this ComfyUI has."""
    found = (_resolve(point)[0] for point in TOUCH_POINTS if point.feature == PAIRED)
    return tuple(cls for cls in found if isinstance(cls, type))


def _paired_model(model: Any) -> str:
    """The class name of ``model`` if it is one of :data:`PAIRED_BATCH_MODELS`, else ``""``."""
    return type(model).__name__ if isinstance(model, _paired_classes()) else ""


def patch_model(model: Any, post_cfg: Callable[[dict[str, Any]], torch.Tensor], outer_sample: Callable[..., Any],
                key: str) -> Any:
    """A clone of ``model`` with ``post_cfg`` as post-CFG hook and ``outer_sample`` as outer-sample wrapper.

    Args:
        model: the user's ModelPatcher (never changed).
        post_cfg: ``fn(args) -> denoised``, appended to ComfyUI's post-CFG list.
        outer_sample: a ``WrappersMP.OUTER_SAMPLE`` wrapper; left out (with the seed fallback) where missing.
        key: the wrapper's key.
    """
    require(HOOK)
    m = model.clone()
    m.set_model_sampler_post_cfg_function(post_cfg)
    if available(SEED):
        import comfy.patcher_extension

        m.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.OUTER_SAMPLE, key, outer_sample)
    return m


def outer_sample_context(executor: Any) -> tuple[Any, dict[str, Any]]:
    """``(model_sampling, model_options)`` of the guider an outer-sample wrapper runs in."""
    guider = executor.class_obj
    return guider.model_patcher.get_model_object("model_sampling"), guider.model_options


def store_run(model_options: dict[str, Any], key: str, run: SamplingRun) -> None:
    """Put ``run`` where every step's post-CFG args will find it (a fresh dict: options may be shared)."""
    transformer_options = model_options.setdefault(TRANSFORMER_OPTIONS, {})
    runs = dict(transformer_options.get(RUNS_KEY, {}))
    runs[key] = run
    transformer_options[RUNS_KEY] = runs


def noise_scaling(sampling: Any, sigma: torch.Tensor, noise: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
    """``model_sampling.noise_scaling(σ, noise, latent)`` as float32 of ``noise``'s shape: the model's own x_σ.

    ``sigma`` comes as ``[B, 1]`` next to ``[B, N]`` tensors, the way ComfyUI's own ``scale_latent_inpaint`` passes a
    per-sample σ. A call that fails or returns another shape is a :class:`DiffIERError` naming the class.
    """
    try:
        out = sampling.noise_scaling(sigma, noise, latent)
        return torch.broadcast_to(torch.as_tensor(out), noise.shape).float()
    except (RuntimeError, TypeError, ValueError) as exc:
        raise NoiseConventionError(sampling, f"failed: {exc}", f"DiffIER: {type(sampling).__name__}.noise_scaling(σ "
                                   f"of shape {list(sigma.shape)}, noise and latent of shape {list(noise.shape)}) "
                                   f"failed: {exc}") from exc


def noise_scales(sampling: Any, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Signal scale a(σ) and noise scale b(σ) per sample of the model's ``x = a x₀ + b ε``, shape ``[B]`` each.

    Read off the model's own ``noise_scaling`` on σ's device without a host sync: a = noise_scaling(σ, ε = 0,
    x₀ = 1), b = noise_scaling(σ, ε = 1, x₀ = 0). That the map is affine is checked once per run
    (:func:`affine_noise_scales`).
    """
    s = sigma.detach().float().reshape(-1, 1)
    signal = noise_scaling(sampling, s, torch.zeros_like(s), torch.ones_like(s)).reshape(-1)
    noise = noise_scaling(sampling, s, torch.ones_like(s), torch.zeros_like(s)).reshape(-1)
    return signal, noise


#: random (ε, x₀) pairs per σ in the affine check, and its tolerance in float32 ulps of the terms' magnitude
AFFINE_PROBES = 16
AFFINE_ULPS = 16


def affine_noise_scales(sampling: Any, sigmas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(a, b)`` at every σ of ``sigmas`` (shape ``[S]`` each), after checking that ``noise_scaling`` is affine there.

    For random ε and x₀ (from a fixed generator: ComfyUI's global RNG is left alone) ``noise_scaling(σ, ε, x₀)`` must
    equal a·x₀ + b·ε, and ``noise_scaling(σ, 0, 0)`` must be 0, within ``AFFINE_ULPS`` float32 ulps of
    |a·x₀| + |b·ε|; a, b and the results must be finite. Otherwise a :class:`DiffIERError` names the model-sampling
    class and what was found. One host sync (a run-start check, not a per-step one).
    """
    s = sigmas.detach().float().reshape(-1, 1)
    generator = torch.Generator().manual_seed(0)
    eps, x0 = (torch.randn(s.shape[0], AFFINE_PROBES, generator=generator).to(s.device) for _ in range(2))
    a, b = noise_scales(sampling, s)
    got = noise_scaling(sampling, s, eps.clone(), x0.clone())
    zero = noise_scaling(sampling, s, torch.zeros_like(eps), torch.zeros_like(x0))
    signal, noise = a[:, None] * x0, b[:, None] * eps
    tolerance = AFFINE_ULPS * torch.finfo(torch.float32).eps * (signal.abs() + noise.abs())
    error = torch.maximum((got - (signal + noise)).abs(), zero.abs())
    bad = ~(error <= tolerance) | ~torch.isfinite(a)[:, None] | ~torch.isfinite(b)[:, None]
    if bool(bad.any()):
        raise NoiseConventionError(sampling, "not affine", _not_affine(sampling, s, a, b, got, signal + noise, zero,
                                                                       tolerance, bad))
    return a, b


def _not_affine(sampling: Any, sigma: torch.Tensor, a: torch.Tensor, b: torch.Tensor, got: torch.Tensor,
                expected: torch.Tensor, zero: torch.Tensor, tolerance: torch.Tensor, bad: torch.Tensor) -> str:
    """The error text of :func:`affine_noise_scales` for the first σ and element where the map is not affine."""
    row, col = (int(i) for i in bad.nonzero()[0])
    return (f"DiffIER: the noise convention of {type(sampling).__name__} is not affine: at σ = "
            f"{float(sigma[row]):.4g}, noise_scaling(σ, ε, x0) gives {float(got[row, col]):.6g} where a·x0 + b·ε = "
            f"{float(expected[row, col]):.6g} (a = {float(a[row]):.6g}, b = {float(b[row]):.6g}, allowed "
            f"difference {float(tolerance[row, col]):.3g}) and noise_scaling(σ, 0, 0) = {float(zero[row, col]):.3g}; "
            "DiffIER needs x = a(σ)·x0 + b(σ)·ε, as every ComfyUI model sampling so far has")


def window_sigmas(sampling: Any, start_percent: float, end_percent: float) -> tuple[float, float]:
    """σ at sampling progress ``start_percent`` and ``end_percent`` (0 = the start), from the model's sampling."""
    return float(sampling.percent_to_sigma(start_percent)), float(sampling.percent_to_sigma(end_percent))


def common_ksampler(model: Any, seed: int, steps: int, cfg: float, sampler_name: str, scheduler: str,
                    positive: Any, negative: Any, latent: dict[str, Any], denoise: float) -> dict[str, Any]:
    """The LATENT that ComfyUI's own KSampler path (``nodes.common_ksampler``) returns."""
    require(KSAMPLER)
    import nodes as comfy_nodes  # ComfyUI's top-level module (this pack's own package is `.nodes`)

    out: dict[str, Any]
    (out,) = comfy_nodes.common_ksampler(model, seed, steps, cfg, sampler_name, scheduler, positive, negative,
                                         latent, denoise=denoise)
    return out


def sampler_names() -> list[str]:
    """``comfy.samplers.KSampler.SAMPLERS`` of this ComfyUI."""
    require(KSAMPLER)
    import comfy.samplers

    return list(comfy.samplers.KSampler.SAMPLERS)


def scheduler_names() -> list[str]:
    """``comfy.samplers.KSampler.SCHEDULERS`` of this ComfyUI."""
    require(KSAMPLER)
    import comfy.samplers

    return list(comfy.samplers.KSampler.SCHEDULERS)


def cfg_guider(model: Any, positive: Any, negative: Any, cfg: float) -> Any:
    """A ``comfy.samplers.CFGGuider`` for ``model`` with the conds and CFG scale set."""
    require(GUIDER)
    import comfy.samplers

    guider = comfy.samplers.CFGGuider(model)
    guider.set_conds(positive, negative)
    guider.set_cfg(cfg)
    return guider


check_touch_points()
