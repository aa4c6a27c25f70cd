"""A loaded model: its session, its family's adapter and its labels behind one ``detect`` call."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from types import TracebackType

import numpy as np

from mfgvision.inference.adapters import Adapter, create_adapter, detect_family
from mfgvision.inference.card import load_card
from mfgvision.inference.errors import ModelLoadError
from mfgvision.inference.labels import load_labels
from mfgvision.inference.nms import MAX_DETECTIONS
from mfgvision.inference.runner import SessionRunner
from mfgvision.inference.session import RuntimeOptions, SessionInfo, create_session
from mfgvision.inference.types import InferenceResult

MODEL_FILE = "model.onnx"
#: Thresholds of a model whose card names none (the CIS's default ``prob_threshold`` too).
DEFAULT_PROB_THRESHOLD = 0.5
DEFAULT_IOU_THRESHOLD = 0.45

log = logging.getLogger(__name__)


class Model:
    """One model version, ready to run on BGR frames. Build it with :func:`load_model`."""

    def __init__(
        self,
        name: str,
        version: str,
        family: str,
        adapter: Adapter,
        session: SessionInfo,
        thresholds: tuple[float | None, float | None] = (None, None),
    ) -> None:
        self.name = name
        self.version = version
        self.family = family
        self.requested_providers = session.requested_providers
        self.warnings: list[str] = list(session.warnings)
        self._adapter = adapter
        self._runner: SessionRunner | None = SessionRunner(session.session, adapter.output_names)
        self._providers = session.providers
        #: The model card's ``prob_threshold`` and ``iou_threshold`` (None where it names none).
        self.card_thresholds = thresholds

    @property
    def adapter(self) -> Adapter:
        """The family adapter: how frames become input tensors and outputs become detections."""
        return self._adapter

    @property
    def labels(self) -> list[str]:
        return list(self._adapter.labels)

    @property
    def input_size(self) -> tuple[int, int]:
        """(width, height) of the model input."""
        return self._adapter.image_input.size

    @property
    def providers(self) -> list[str]:
        """The execution providers ONNX Runtime actually uses for this model."""
        return list(self._providers)

    def thresholds(
        self, prob_threshold: float | None = None, iou_threshold: float | None = None
    ) -> tuple[float, float, str]:
        """The thresholds to use: those given, else the model card's, else the defaults; and a
        line that says which, e.g. ``prob_threshold 0.5 (model card), iou_threshold 0.3 (given)``."""
        chosen: list[float] = []
        said: list[str] = []
        for name, given, card, default in (
            ("prob_threshold", prob_threshold, self.card_thresholds[0], DEFAULT_PROB_THRESHOLD),
            ("iou_threshold", iou_threshold, self.card_thresholds[1], DEFAULT_IOU_THRESHOLD),
        ):
            value, source = next(
                (v, src)
                for v, src in ((given, "given"), (card, "model card"), (default, "default"))
                if v is not None
            )
            chosen.append(value)
            said.append(f"{name} {value:g} ({source})")
        return chosen[0], chosen[1], ", ".join(said)

    def detect(
        self,
        frame: np.ndarray,
        prob_threshold: float = DEFAULT_PROB_THRESHOLD,
        iou_threshold: float = DEFAULT_IOU_THRESHOLD,
        max_detections: int = MAX_DETECTIONS,
    ) -> InferenceResult:
        """Run the model on one BGR uint8 frame; boxes come back in that frame's pixels. Several
        threads may call it at once: their runs take turns, in batches where the model takes
        them (:mod:`mfgvision.inference.runner`); ``timings_ms["queue"]`` is the wait for a turn."""
        runner = self._runner
        if runner is None:
            raise RuntimeError(f"model {self.name}/{self.version} is closed")
        for name, value in (("prob_threshold", prob_threshold), ("iou_threshold", iou_threshold)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within 0..1, got {value}")
        start = time.perf_counter()
        feeds, transform = self._adapter.preprocess(frame)
        preprocessed = time.perf_counter()
        run = runner.run(feeds)
        inferred = time.perf_counter()
        detections = self._adapter.postprocess(
            run.outputs, transform, prob_threshold, iou_threshold, max_detections
        )
        done = time.perf_counter()
        return InferenceResult(
            detections=detections,
            frame_width=transform.frame_width,
            frame_height=transform.frame_height,
            timings_ms={
                "preprocess": (preprocessed - start) * 1000,
                "queue": run.waited_ms,
                "infer": run.run_ms,
                "postprocess": (done - inferred) * 1000,
            },
        )

    def warmup(self) -> None:
        """One run on a blank frame of the input size, so the first real frame is not slow."""
        width, height = self.input_size
        self.detect(np.zeros((height, width, 3), dtype=np.uint8))

    def close(self) -> None:
        """Release the session; ``detect`` fails afterwards."""
        self._runner = None

    def __enter__(self) -> Model:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"Model({self.name}/{self.version}, family={self.family}, "
            f"input={self.input_size}, providers={self._providers})"
        )


def load_model(model_dir: Path | str, options: RuntimeOptions | None = None) -> Model:
    """Load ``<name>/<version>/`` (``model.onnx``, labels, optional ``model.yaml``).

    Raises ModelLoadError with the file and the reason when anything is missing or inconsistent.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelLoadError(f"{model_dir}: not a model folder (expected <name>/<version>/)")
    card = load_card(model_dir)
    labels = load_labels(model_dir)
    session = create_session(model_dir / MODEL_FILE, options or RuntimeOptions())
    try:
        family = card.family or detect_family(session.graph)
        adapter = create_adapter(family, session.graph, card, labels)
    except ModelLoadError as exc:
        raise ModelLoadError(f"{model_dir / MODEL_FILE}: {exc}") from exc
    if adapter.num_classes is not None and adapter.num_classes != len(adapter.labels):
        raise ModelLoadError(
            f"{model_dir}: the graph has {adapter.num_classes} classes but the labels list "
            f"{len(adapter.labels)} ({', '.join(adapter.labels)})"
        )
    model = Model(
        model_dir.parent.name,
        model_dir.name,
        family,
        adapter,
        session,
        (card.prob_threshold, card.iou_threshold),
    )
    model.warnings.extend(f"model.yaml: unknown key {key!r} ignored" for key in card.unknown_keys)
    for warning in model.warnings:
        log.warning("model %s/%s: %s", model.name, model.version, warning)
    log.info(
        "loaded model %s/%s family=%s input=%sx%s providers=%s",
        model.name,
        model.version,
        family,
        *model.input_size,
        ",".join(model.providers),
    )
    return model
