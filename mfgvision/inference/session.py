"""ONNX Runtime session creation: provider choice, TensorRT engine cache, thread count."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnxruntime as ort

from mfgvision.inference.errors import ModelLoadError
from mfgvision.inference.graph import GraphInfo, TensorInfo

TENSORRT = "TensorrtExecutionProvider"
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
PREFERRED_ORDER = (TENSORRT, CUDA, CPU)


@dataclass
class RuntimeOptions:
    """How to run a model.

    ``providers`` None picks TensorRT -> CUDA -> CPU among those this onnxruntime build offers.
    ``fp16`` lets TensorRT build FP16 engines. ``trt_cache_dir`` None keeps engines in
    ``<model dir>/trt_cache``. ``spin_wait`` False stops idle intra-op threads from spinning, which
    leaves the CPU to the threads working beside inference (capture, writer) on small machines.
    """

    providers: list[str] | None = None
    intra_op_threads: int | None = None
    fp16: bool = True
    trt_cache_dir: Path | None = None
    spin_wait: bool = True

    @classmethod
    def cpu_only(cls) -> RuntimeOptions:
        """Options for checking a model: CPU, so no GPU memory or TensorRT engine build is spent."""
        return cls(providers=[CPU])


@dataclass
class SessionInfo:
    """A created session with what was asked of it and what went differently."""

    session: ort.InferenceSession
    graph: GraphInfo
    requested_providers: list[str]
    warnings: list[str]

    @property
    def providers(self) -> list[str]:
        return list(self.session.get_providers())


def requested_providers(options: RuntimeOptions) -> list[str]:
    """The providers to ask for: the explicit list, else the preferred ones this build offers."""
    if options.providers is not None:
        return list(options.providers)
    available = ort.get_available_providers()
    return [p for p in PREFERRED_ORDER if p in available]


def create_session(model_path: Path, options: RuntimeOptions) -> SessionInfo:
    """Open ``model_path`` with ONNX Runtime; raise ModelLoadError when it cannot be loaded."""
    if not model_path.is_file():
        raise ModelLoadError(f"{model_path}: model file not found")
    if options.intra_op_threads is not None and options.intra_op_threads < 1:
        raise ModelLoadError(f"intra_op_threads must be >= 1, got {options.intra_op_threads}")

    asked = requested_providers(options)
    warnings: list[str] = []
    providers = _provider_list(asked, model_path.parent, options, warnings)

    session_options = ort.SessionOptions()
    if options.intra_op_threads is not None:
        session_options.intra_op_num_threads = options.intra_op_threads
    if not options.spin_wait:
        session_options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        session = ort.InferenceSession(str(model_path), session_options, providers=providers)
    except Exception as exc:  # ORT raises several unrelated types for unreadable graphs
        raise ModelLoadError(f"{model_path}: cannot be loaded by ONNX Runtime: {exc}") from exc

    in_use = session.get_providers()
    for provider in asked:
        if provider != CPU and provider not in in_use:
            warnings.append(
                f"{provider} was requested but is not in use (this onnxruntime offers "
                f"{', '.join(ort.get_available_providers())}); running on {', '.join(in_use)}"
            )
    meta = session.get_modelmeta()
    graph = GraphInfo(
        inputs=tuple(TensorInfo.from_node_arg(a) for a in session.get_inputs()),
        outputs=tuple(TensorInfo.from_node_arg(a) for a in session.get_outputs()),
        metadata=dict(meta.custom_metadata_map),
    )
    return SessionInfo(session, graph, asked, warnings)


def _provider_list(
    asked: list[str], model_dir: Path, options: RuntimeOptions, warnings: list[str]
) -> list[str | tuple[str, dict[str, Any]]]:
    """The providers handed to ORT: only those it offers, with options, always ending on CPU."""
    available = set(ort.get_available_providers())
    providers: list[str | tuple[str, dict[str, Any]]] = []
    for name in asked:
        if name not in available:
            continue
        if name == TENSORRT:
            providers.append((name, _tensorrt_options(model_dir, options, warnings)))
        else:
            providers.append(name)
    if CPU not in asked:
        providers.append(CPU)
    return providers


def _tensorrt_options(
    model_dir: Path, options: RuntimeOptions, warnings: list[str]
) -> dict[str, Any]:
    trt: dict[str, Any] = {"trt_fp16_enable": options.fp16}
    cache_dir = Path(options.trt_cache_dir or model_dir / "trt_cache")
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        warnings.append(f"TensorRT engine cache disabled, cannot create {cache_dir}: {exc}")
        return trt
    trt["trt_engine_cache_enable"] = True
    trt["trt_engine_cache_path"] = str(cache_dir)
    return trt
