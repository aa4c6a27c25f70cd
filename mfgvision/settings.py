"""Typed settings per module, built from module-twin desired properties.

Desired properties are validated as a whole: a patch that fails validation is refused and the last good
settings stay in force. The original system's flat upper-case keys (``CAMERA_URI``, ``PROB_THRES``,
``CAMERA_RTSP``, ...) are accepted as aliases so an existing deployment's twin keeps working. Secrets are
never accepted from the twin: they come from the environment.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

CameraType = Literal["folder", "video", "rtsp", "http", "usb", "basler", "allied", "genicam"]

_SECRET_KEY = re.compile(
    r"(pass(word)?|pwd|secret|token|conn(ection)?_?str(ing)?|sharedaccesskey|api_?key)$|_key$", re.I
)

_LEGACY_KEYS = {
    "CAMERA_ID": "camera_id",
    "CAMERA_URI": "camera_uri",
    "CAMERA_LOCATION": "camera_location",
    "CAMERA_POSITION": "camera_position",
    "CAMERA_FPS": "camera_fps",
    "CAMERA_TRIGGER": "camera_trigger",
    "INFERENCE_FPS": "inference_fps",
    "MODEL_NAME": "model_name",
    "MODEL_VERSION": "model_version",
    "PROB_THRES": "prob_threshold",
    "IOU_THRES": "iou_threshold",
    "STORE_RAW_FRAMES": "store_raw_frames",
    "STORE_ALL_INFERENCES": "store_all_inferences",
}
_LEGACY_CAMERA_TYPES = {
    "Read from file": "folder",
    "RTSP Camera": "rtsp",
    "Basler GVSP": "basler",
    "Allied Vision GVSP": "allied",
}
_LEGACY_CAMERA_FLAGS = {
    "CAMERA_FILE": "folder",
    "CAMERA_RTSP": "rtsp",
    "CAMERA_GVSP_BASLER": "basler",
    "CAMERA_GVSP_ALLIED": "allied",
}
_IGNORED_LEGACY_KEYS = {
    "TARGET_DIM",
    "MODEL_ACV",
    "MODEL_YOLOV5",
    "MODEL_TYPE",
    "MODEL_FILE",
    "LABEL_FILE",
}


class SettingsError(ValueError):
    """Desired properties that cannot be applied; the message says which keys and why."""


def _is_true(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise SettingsError(f"expected true or false, got {value!r}")


def _translate_legacy(data: dict[str, Any]) -> dict[str, Any]:
    """Map the original system's flat keys onto ours; reject secrets."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key.startswith("$"):
            continue
        if _SECRET_KEY.search(key):
            raise SettingsError(
                f"'{key}' looks like a secret; secrets are not accepted in desired properties, "
                "set them in the module's environment instead"
            )
        if key in _LEGACY_KEYS:
            if value == "" and key in ("CAMERA_FPS", "INFERENCE_FPS"):
                value = 1.0
            out[_LEGACY_KEYS[key]] = value
        elif key == "CAMERA_TYPE":
            if value not in _LEGACY_CAMERA_TYPES:
                raise SettingsError(
                    f"CAMERA_TYPE {value!r} is not one of {list(_LEGACY_CAMERA_TYPES)}"
                )
            out["camera_type"] = _LEGACY_CAMERA_TYPES[value]
        elif key in _LEGACY_CAMERA_FLAGS:
            if _is_true(value):
                out["camera_type"] = _LEGACY_CAMERA_FLAGS[key]
        elif key == "RETRAIN_INTERVAL":
            out["_legacy_retrain_frames"] = value
        elif key not in _IGNORED_LEGACY_KEYS:
            out[key] = value
    frames = out.pop("_legacy_retrain_frames", None)
    if frames not in (None, ""):
        fps = float(out.get("camera_fps") or 1.0)
        out.setdefault("retrain_interval_s", float(frames) / max(fps, 1e-6))
    return out


class ModuleSettings(BaseModel):
    """Base for every module's settings: unknown keys are errors (typos must not pass silently)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @model_validator(mode="before")
    @classmethod
    def _legacy(cls, data: Any) -> Any:
        return _translate_legacy(data) if isinstance(data, dict) else data


class CisSettings(ModuleSettings):
    """Capture, inference and store settings of one camera's CIS module."""

    camera_type: CameraType = "folder"
    camera_uri: str = Field("samples/line1", description="folder, file, stream URL or USB index")
    camera_id: str = Field("camera1", pattern=r"^[A-Za-z0-9_.\-]{1,40}$")
    camera_location: str = Field("line1", min_length=1, max_length=40)
    camera_position: str = Field("top", min_length=1, max_length=40)
    camera_fps: float = Field(
        10.0, ge=0, le=1000, description="pace of file sources, frames/s; 0 = as fast as inference"
    )
    camera_loop: bool = Field(True, description="start over at the end of a folder or video file")
    camera_trigger: bool = Field(False, description="a trigger paces the camera: infer every frame")
    inference_fps: float = Field(1.0, ge=0, le=1000, description="0 = as fast as the model allows")
    model_name: str = Field("demo-defects", pattern=r"^[A-Za-z0-9_.\-]{1,80}$")
    model_version: str = Field("1", pattern=r"^[A-Za-z0-9_.\-]{1,40}$")
    prob_threshold: float = Field(0.5, ge=0, le=1)
    iou_threshold: float = Field(0.45, ge=0, le=1)
    providers: list[str] | None = Field(None, description="ONNX Runtime providers; empty = auto")
    fp16: bool = True
    store_raw_frames: bool = True
    store_all_inferences: bool = True
    retrain_interval_s: float = Field(
        600.0, ge=0, description="keep one retraining frame per interval"
    )
    retrain_below_probability: float = Field(
        0.0, ge=0, le=1, description="also keep frames whose best detection is below this"
    )
    jpeg_quality: int = Field(90, ge=30, le=100)

    @property
    def camera_name(self) -> str:
        return f"{self.camera_location}-{self.camera_position}"


def parse_settings(model: type[ModuleSettings], desired: dict[str, Any]) -> ModuleSettings:
    """Validate desired properties into settings; raise SettingsError with a readable message."""
    try:
        return model.model_validate(desired)
    except SettingsError:
        raise
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
            for err in exc.errors()
        )
        raise SettingsError(problems) from None


def merge_patch(current: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Apply a desired-properties patch (JSON merge-patch: null deletes a key)."""
    merged = dict(current)
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged
