"""Typed settings per module, built from module-twin desired properties.

Desired properties are validated as a whole: a patch that fails validation is refused and the last good
settings stay in force. The original system's flat upper-case keys (``CAMERA_URI``, ``PROB_THRES``,
``CAMERA_RTSP``, ...) are accepted as aliases so an existing deployment's twin keeps working. Secrets are
never accepted from the twin: they come from the environment.
"""

from __future__ import annotations

import functools
import itertools
import math
import re
from collections.abc import Iterator
from pathlib import PurePath
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from mfgvision.secrets import find_secret, is_secret_key

CameraType = Literal["folder", "video", "rtsp", "http", "usb", "basler", "allied", "genicam"]

#: Limits on every desired value, at any depth, before any field is looked at.
MAX_TEXT = 1024
MAX_KEY = 100
MAX_ITEMS = 64
#: Deepest nesting of a desired value: a zone point in a camera entry,
#: ``cameras[i].zones.<name>[j][x]``, is six levels down.
MAX_DEPTH = 6
MAX_INT = 2**63 - 1
#: Most cameras one CIS module runs.
MAX_CAMERAS = MAX_ITEMS
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
#: A camera's location or position: any name without a folder separator; image file and blob names
#: take it sanitised (``store.images.sanitise_name_part``: other than letters, digits, ``_`` and
#: ``.`` becomes ``_``).
NAME_PART = r"^[^/\\]*[^/\\\s][^/\\]*$"
_SECRET_HINT = (
    "secrets are not accepted in desired properties, set them in the module's environment"
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

#: Where a problem is (keys, and indexes of list items) and what it is.
Loc = tuple[str | int, ...]
Problem = tuple[Loc, str]


class SettingsError(ValueError):
    """Desired properties that cannot be applied; the message says which keys and why.

    ``problems`` maps each offending top-level key of the desired document to its reason
    (``settings`` when no single key is to blame).
    """

    def __init__(self, message: str, problems: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.problems: dict[str, str] = problems or {"settings": message}


def _value_problems(value: Any, loc: Loc = ()) -> Iterator[Problem]:
    """What makes a desired value unacceptable whatever its key: secrets, control characters,
    overlong texts, huge or non-finite numbers, deep or large objects."""
    if len(loc) > MAX_DEPTH:
        yield loc, f"nested more than {MAX_DEPTH} levels deep"
    elif isinstance(value, dict):
        if len(value) > MAX_ITEMS:
            yield loc, f"more than {MAX_ITEMS} entries"
            return
        for key, item in value.items():
            if not loc and str(key).startswith("$"):
                continue
            yield from _key_problems(key, (*loc, str(key)[:MAX_KEY]))
            yield from _value_problems(item, (*loc, str(key)[:MAX_KEY]))
    elif isinstance(value, (list, tuple)):
        if len(value) > MAX_ITEMS:
            yield loc, f"more than {MAX_ITEMS} entries"
            return
        for index, item in enumerate(value):
            yield from _value_problems(item, (*loc, index))
    elif isinstance(value, str):
        yield from _text_problems(value, loc, MAX_TEXT)
        secret = find_secret(value)
        if secret:
            yield loc, f"carries {secret}; {_SECRET_HINT}"
    elif isinstance(value, float) and not math.isfinite(value):
        yield loc, "must be a finite number"
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
        yield loc, "integer out of range"


def _key_problems(key: Any, loc: Loc) -> Iterator[Problem]:
    if not isinstance(key, str):
        yield loc, "keys must be texts"
        return
    yield from _text_problems(key, loc, MAX_KEY)
    if is_secret_key(key) or find_secret(key):
        yield loc, f"looks like a secret; {_SECRET_HINT}"


def _text_problems(text: str, loc: Loc, limit: int) -> Iterator[Problem]:
    if len(text) > limit:
        yield loc, f"longer than {limit} characters"
    if _CONTROL.search(text):
        yield loc, "contains control characters"


def _is_true(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ValueError(f"expected true or false, got {value!r}")


def _frames(value: Any) -> float:
    """A legacy frame count: a number or numeric text, finite and not negative."""
    try:
        number = float(value) if isinstance(value, (int, float, str)) else math.nan
    except ValueError:
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number) or number < 0:
        raise ValueError(f"expected a number of frames, got {value!r}")
    return number


class _Legacy:
    """The original system's flat keys mapped onto ours; a new key always wins over a legacy one."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.out: dict[str, Any] = {}
        self.problems: list[Problem] = []
        self.warnings: list[str] = []

    def translate(self) -> dict[str, Any]:
        for key, value in self.data.items():
            if key.startswith("$") or key in _IGNORED_LEGACY_KEYS:
                continue
            if key in _LEGACY_KEYS:
                if value == "" and key in ("CAMERA_FPS", "INFERENCE_FPS"):
                    value = 1.0
                self._set(key, _LEGACY_KEYS[key], value)
            elif (
                key != "CAMERA_TYPE"
                and key not in _LEGACY_CAMERA_FLAGS
                and key != "RETRAIN_INTERVAL"
            ):
                self.out[key] = value
        self._camera_type()
        self._retrain_interval()
        return self.out

    def _set(self, legacy: str, key: str, value: Any) -> None:
        if key in self.data:
            self.warnings.append(f"{legacy} ignored: {key} is set")
        else:
            self.out[key] = value

    def _camera_type(self) -> None:
        flags = []
        for key in _LEGACY_CAMERA_FLAGS:
            if key in self.data:
                try:
                    if _is_true(self.data[key]):
                        flags.append(key)
                except ValueError as exc:
                    self.problems.append(((key,), str(exc)))
        if len(flags) > 1:
            self.problems.append(((flags[-1],), f"more than one of {flags} is true"))
            return
        if "CAMERA_TYPE" in self.data:
            value = self.data["CAMERA_TYPE"]
            if not isinstance(value, str) or value not in _LEGACY_CAMERA_TYPES:
                self.problems.append(
                    (("CAMERA_TYPE",), f"{value!r} is not one of {list(_LEGACY_CAMERA_TYPES)}")
                )
                return
            for flag in flags:
                self.warnings.append(f"{flag} ignored: CAMERA_TYPE is set")
            self._set("CAMERA_TYPE", "camera_type", _LEGACY_CAMERA_TYPES[value])
        elif flags:
            self._set(flags[0], "camera_type", _LEGACY_CAMERA_FLAGS[flags[0]])

    def _retrain_interval(self) -> None:
        value = self.data.get("RETRAIN_INTERVAL")
        if value in (None, ""):
            return
        try:
            frames = _frames(value)
        except ValueError as exc:
            self.problems.append((("RETRAIN_INTERVAL",), str(exc)))
            return
        try:
            fps = float(self.out.get("camera_fps") or 1.0)
        except (TypeError, ValueError):
            fps = 1.0  # camera_fps itself is reported by its own validation
        fps = fps if math.isfinite(fps) and fps > 0 else 1.0
        self._set("RETRAIN_INTERVAL", "retrain_interval_s", frames / fps)


def _refuse(title: str, problems: list[Problem]) -> ValidationError:
    return ValidationError.from_exception_data(
        title,
        [
            InitErrorDetails(
                type=PydanticCustomError("value_error", "{message}", {"message": message}),
                loc=loc,
                input=None,
            )
            for loc, message in problems
        ],
    )


class ModuleSettings(BaseModel):
    """Base for every module's settings: unknown keys are errors (typos must not pass silently),
    every value is checked for secrets and sane limits, legacy keys are translated (a legacy key
    that a new key overrides is listed in ``warnings``)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    _warnings: list[str] = PrivateAttr(default_factory=list)

    @model_validator(mode="wrap")
    @classmethod
    def _checked(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        if not isinstance(data, dict):
            return handler(data)
        problems = list(_value_problems(data))
        legacy = _Legacy(data)
        if not problems:
            data = legacy.translate()
            problems = legacy.problems
        if problems:
            raise _refuse(cls.__name__, problems)
        settings = handler(data)
        settings._warnings = legacy.warnings
        return settings

    @property
    def warnings(self) -> list[str]:
        """Legacy keys ignored because a new key is set."""
        return list(self._warnings)


#: Camera types read from files, and machine-vision cameras (GenICam features, triggers).
FILE_CAMERAS: tuple[CameraType, ...] = ("folder", "video")
MACHINE_VISION_CAMERAS: tuple[CameraType, ...] = ("basler", "allied", "genicam")


def form(
    group: str,
    order: int,
    *,
    unit: str | None = None,
    advanced: bool = False,
    cameras: tuple[CameraType, ...] | None = None,
) -> dict[str, Any]:
    """How the twin tool's form shows a setting, as ``json_schema_extra`` of its field: its section,
    its place (sections follow their first setting), its unit, whether it is folded under
    "Advanced", and the camera types it applies to (every type when None)."""
    hints: dict[str, Any] = {"group": group, "order": order}
    if unit:
        hints["unit"] = unit
    if advanced:
        hints["advanced"] = True
    if cameras:
        hints["shown_when"] = {"camera_type": list(cameras)}
    return {"x-form": hints}


CAMERA = "Camera"
INSPECTION = "Inspection"
STORAGE = "Storage and retraining"
ALERTS = "Alerts"
DRIFT = "Drift"
RULES = "Zones and rules"


class CameraSettings(ModuleSettings):
    """One camera's own settings (every ``camera_*`` key): what the frame sources take."""

    camera_type: CameraType = Field(
        "folder",
        title="Camera type",
        description="folder of images, video file, RTSP/HTTP stream, USB, Basler, Allied Vision "
        "or any GenICam camera",
        json_schema_extra=form(CAMERA, 20),
    )
    camera_uri: str = Field(
        "samples/line1",
        max_length=MAX_TEXT,
        title="Source",
        description="folder or file (under the assets folder), stream URL or USB index",
        json_schema_extra=form(CAMERA, 21),
    )
    camera_id: str = Field(
        "camera1",
        pattern=r"^[A-Za-z0-9_.\-]{1,40}$",
        title="Camera id",
        description="names the camera in rows, messages and the dashboard",
        json_schema_extra=form(CAMERA, 24),
    )
    camera_location: str = Field(
        "line1",
        pattern=NAME_PART,
        max_length=40,
        title="Location",
        description="first part of image and blob names (e.g. Line 1 becomes Line_1)",
        json_schema_extra=form(CAMERA, 22),
    )
    camera_position: str = Field(
        "top",
        pattern=NAME_PART,
        max_length=40,
        title="Position",
        description="second part of image and blob names",
        json_schema_extra=form(CAMERA, 23),
    )
    camera_fps: float = Field(
        10.0,
        ge=0,
        le=1000,
        title="File frame rate",
        description="pace of file sources; 0 = as fast as inference",
        json_schema_extra=form(CAMERA, 25, unit="frames/s", cameras=FILE_CAMERAS),
    )
    camera_loop: bool = Field(
        True,
        title="Loop the file",
        description="start over at the end of a folder or video file",
        json_schema_extra=form(CAMERA, 26, cameras=FILE_CAMERAS),
    )
    camera_trigger: bool = Field(
        False,
        title="Triggered camera",
        description="a trigger paces the camera: infer every frame",
        json_schema_extra=form(CAMERA, 40, advanced=True),
    )
    camera_trigger_mode: Literal["off", "software", "hardware"] = Field(
        "off",
        title="Trigger",
        description="machine-vision cameras: free-run, software or hardware trigger",
        json_schema_extra=form(CAMERA, 27, cameras=MACHINE_VISION_CAMERAS),
    )
    camera_trigger_source: str = Field(
        "Line1",
        pattern=r"^[A-Za-z0-9_]{1,40}$",
        title="Trigger input line",
        description="input line of the hardware trigger",
        json_schema_extra=form(CAMERA, 41, advanced=True, cameras=MACHINE_VISION_CAMERAS),
    )
    camera_trigger_activation: Literal[
        "RisingEdge", "FallingEdge", "AnyEdge", "LevelHigh", "LevelLow"
    ] = Field(
        "RisingEdge",
        title="Trigger activation",
        description="edge or level of the hardware trigger",
        json_schema_extra=form(CAMERA, 42, advanced=True, cameras=MACHINE_VISION_CAMERAS),
    )
    camera_exposure_us: float | None = Field(
        None,
        gt=0,
        le=1e8,
        title="Exposure time",
        description="empty = the camera's own",
        json_schema_extra=form(CAMERA, 28, unit="µs", cameras=MACHINE_VISION_CAMERAS),
    )
    camera_gain_db: float | None = Field(
        None,
        ge=-20,
        le=60,
        title="Gain",
        description="empty = the camera's own",
        json_schema_extra=form(CAMERA, 29, unit="dB", cameras=MACHINE_VISION_CAMERAS),
    )
    camera_pixel_format: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_]{1,40}$",
        title="Pixel format",
        description="GenICam pixel format, e.g. Mono8, BayerRG8; empty = the camera's own",
        json_schema_extra=form(CAMERA, 43, advanced=True, cameras=MACHINE_VISION_CAMERAS),
    )
    camera_roi_x: int | None = Field(
        None,
        ge=0,
        le=65535,
        title="ROI left offset",
        description="empty = unchanged",
        json_schema_extra=form(
            CAMERA, 44, unit="px", advanced=True, cameras=MACHINE_VISION_CAMERAS
        ),
    )
    camera_roi_y: int | None = Field(
        None,
        ge=0,
        le=65535,
        title="ROI top offset",
        description="empty = unchanged",
        json_schema_extra=form(
            CAMERA, 45, unit="px", advanced=True, cameras=MACHINE_VISION_CAMERAS
        ),
    )
    camera_roi_width: int | None = Field(
        None,
        gt=0,
        le=65535,
        title="ROI width",
        description="empty = unchanged",
        json_schema_extra=form(
            CAMERA, 46, unit="px", advanced=True, cameras=MACHINE_VISION_CAMERAS
        ),
    )
    camera_roi_height: int | None = Field(
        None,
        gt=0,
        le=65535,
        title="ROI height",
        description="empty = unchanged",
        json_schema_extra=form(
            CAMERA, 47, unit="px", advanced=True, cameras=MACHINE_VISION_CAMERAS
        ),
    )
    camera_frame_rate: float | None = Field(
        None,
        gt=0,
        le=10000,
        title="Acquisition frame rate",
        description="set on the camera; empty = its own",
        json_schema_extra=form(
            CAMERA, 48, unit="frames/s", advanced=True, cameras=MACHINE_VISION_CAMERAS
        ),
    )
    camera_features: dict[
        Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,63}$")],
        bool | int | float | Annotated[str, StringConstraints(max_length=256)],
    ] = Field(
        default_factory=dict,
        max_length=MAX_ITEMS,
        title="Further GenICam features",
        description="written in order when the camera opens, as a JSON object, "
        'e.g. {"BalanceWhiteAuto": "Continuous"}',
        json_schema_extra=form(CAMERA, 49, advanced=True, cameras=MACHINE_VISION_CAMERAS),
    )
    camera_gentl_producer: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,99}\.cti$",
        title="GenTL producer",
        description="file name of the GenTL producer (.cti) for genicam cameras, looked up only "
        "in the folders of GENICAM_GENTL64_PATH; empty = every producer there",
        json_schema_extra=form(CAMERA, 50, advanced=True, cameras=("genicam",)),
    )
    camera_rtsp_transport: Literal["tcp", "udp"] = Field(
        "tcp",
        title="RTSP transport",
        description="transport of the RTSP stream",
        json_schema_extra=form(CAMERA, 30, cameras=("rtsp",)),
    )
    camera_timeout_s: float = Field(
        10.0,
        ge=0.5,
        le=300,
        title="Camera timeout",
        description="open and read timeout of a camera or stream",
        json_schema_extra=form(CAMERA, 51, unit="s", advanced=True),
    )

    @model_validator(mode="after")
    def _camera_path(self) -> CameraSettings:
        if self.camera_type in ("folder", "video") and ".." in PurePath(self.camera_uri).parts:
            raise _refuse(
                type(self).__name__, [(("camera_uri",), "a camera path must not contain '..'")]
            )
        return self

    @property
    def camera_name(self) -> str:
        return f"{self.camera_location}-{self.camera_position}"

    @property
    def trigger_paced(self) -> bool:
        """A trigger decides when frames come, so every frame is inferred and none dropped."""
        return self.camera_trigger or self.camera_trigger_mode != "off"


#: A zone's or rule's name: letters, digits, ``_ . -``, starting with a letter or digit.
RULE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,39}$"
MAX_ZONES = 32
MAX_ZONE_POINTS = 64
MAX_RULES = 32
#: Classes (and zones) one rule names, at most.
MAX_RULE_ITEMS = 16
RuleKind = Literal["defect", "count", "absent", "required_with"]
#: What a rule that fires gives, unless it says otherwise: NG for the part, or an alarm (the
#: verdict stays as the other rules make it).
DEFAULT_YIELDS: dict[str, str] = {
    "defect": "NG",
    "count": "NG",
    "absent": "NG",
    "required_with": "alarm",
}
RuleName = Annotated[str, StringConstraints(pattern=RULE_NAME)]
ClassName = Annotated[str, StringConstraints(min_length=1, max_length=100)]
ZonePoint = Annotated[list[Annotated[float, Field(ge=0)]], Field(min_length=2, max_length=2)]


class Rule(BaseModel):
    """One inspection rule (docs/configuration.md, "Zones and rules"): which detections it looks at
    (classes, probability, zones and how a detection belongs to a zone) and when it fires."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    kind: RuleKind = Field(
        description="defect: any of these classes fires it; count: their number must be within "
        "min..max; absent: any of them fires it; required_with: each of them needs one of "
        "with_classes overlapping it"
    )
    classes: list[ClassName] = Field(
        min_length=1, max_length=MAX_RULE_ITEMS, description="the classes the rule looks at"
    )
    zones: list[RuleName] = Field(
        default_factory=list,
        max_length=MAX_RULE_ITEMS,
        description="zones it looks in, each on its own; empty = the whole frame",
    )
    min_probability: float = Field(
        0.0, ge=0, le=1, description="only detections at or above this probability count"
    )
    min: int | None = Field(None, ge=0, le=10000, description="count: fewest allowed")
    max: int | None = Field(None, ge=0, le=10000, description="count: most allowed")
    with_classes: list[ClassName] = Field(
        default_factory=list,
        max_length=MAX_RULE_ITEMS,
        description="required_with: the classes one of which must overlap each detection",
    )
    membership: Literal["centre", "overlap"] = Field(
        "centre",
        description="a detection is in a zone when its box's centre is (centre) or when at least "
        "overlap_fraction of its box's area is (overlap)",
    )
    overlap_fraction: float = Field(
        0.5, gt=0, le=1, description="share of a box's area that makes it belong (overlap)"
    )
    yields: Literal["NG", "alarm"] = Field(
        "NG",
        description="NG: the part is NG when the rule fires; alarm: an alarm, the verdict unchanged "
        "(default: NG, for required_with alarm)",
    )

    @model_validator(mode="before")
    @classmethod
    def _default_yields(cls, data: Any) -> Any:
        if isinstance(data, dict) and "yields" not in data and data.get("kind") in DEFAULT_YIELDS:
            return {**data, "yields": DEFAULT_YIELDS[data["kind"]]}
        return data

    @model_validator(mode="after")
    def _fits_its_kind(self) -> Rule:
        if self.kind == "count":
            if self.min is None and self.max is None:
                raise ValueError("a count rule needs min, max or both")
            if self.min is not None and self.max is not None and self.min > self.max:
                raise ValueError("min must not be above max")
        elif self.min is not None or self.max is not None:
            raise ValueError("min and max belong to count rules only")
        if self.kind == "required_with" and not self.with_classes:
            raise ValueError("a required_with rule needs with_classes")
        if self.kind != "required_with" and self.with_classes:
            raise ValueError("with_classes belongs to required_with rules only")
        return self


class CisSettings(CameraSettings):
    """Capture, inference and store settings of one camera's CIS module; the camera's own keys come
    first and stay flat in the twin."""

    inference_fps: float = Field(
        1.0,
        ge=0,
        le=1000,
        title="Inference rate",
        description="0 = as fast as the model allows",
        json_schema_extra=form(INSPECTION, 11, unit="frames/s"),
    )
    model_name: str = Field(
        "demo-defects",
        pattern=r"^[A-Za-z0-9_.\-]{1,80}$",
        title="Model",
        description="model to serve: the folder <model_name>/<model_version> in the model volume",
        json_schema_extra=form(INSPECTION, 12),
    )
    model_version: str = Field(
        "1",
        pattern=r"^[A-Za-z0-9_.\-]{1,40}$",
        title="Model version",
        description="version folder of that model",
        json_schema_extra=form(INSPECTION, 13),
    )
    prob_threshold: float = Field(
        0.5,
        ge=0,
        le=1,
        title="Probability threshold",
        description="a detection is kept only when its probability is above this; a part is NG "
        "when at least one is kept",
        json_schema_extra=form(INSPECTION, 10),
    )
    iou_threshold: float = Field(
        0.45,
        ge=0,
        le=1,
        title="Overlap (IoU) threshold",
        description="NMS: a box overlapping a better box of its class by more than this is "
        "dropped; never changes the verdict",
        json_schema_extra=form(INSPECTION, 14, advanced=True),
    )
    providers: list[str] | None = Field(
        None,
        max_length=8,
        title="ONNX Runtime providers",
        description="comma-separated, e.g. CUDAExecutionProvider; empty = automatic",
        json_schema_extra=form(INSPECTION, 15, advanced=True),
    )
    fp16: bool = Field(
        True,
        title="Half precision (FP16)",
        description="lets TensorRT build half-precision engines",
        json_schema_extra=form(INSPECTION, 16, advanced=True),
    )
    store_raw_frames: bool = Field(
        True,
        title="Store raw frames",
        description="keep the camera's own image beside the annotated one of a detection",
        json_schema_extra=form(STORAGE, 61),
    )
    store_all_inferences: bool = Field(
        True,
        title="Store every inference",
        description="off = only inferences with a detection, an NG verdict or an alarm are stored",
        json_schema_extra=form(STORAGE, 60),
    )
    retrain_interval_s: float = Field(
        600.0,
        ge=0,
        le=604800,
        title="Retraining frame every",
        description="keep one retraining frame per interval",
        json_schema_extra=form(STORAGE, 62, unit="s"),
    )
    retrain_below_probability: float = Field(
        0.0,
        ge=0,
        le=1,
        title="Also keep frames below",
        description="keep frames whose best detection is below this probability",
        json_schema_extra=form(STORAGE, 63),
    )
    retrain_drift_gap_s: float = Field(
        60.0,
        ge=0,
        le=86400,
        title="Drift frames at most every",
        description="while a drift alert is raised, keep one frame per this many seconds for "
        "retraining, the first at once; 0 = off",
        json_schema_extra=form(STORAGE, 63, unit="s"),
    )
    jpeg_quality: int = Field(
        90,
        ge=30,
        le=100,
        title="JPEG quality",
        description="JPEG quality of the images the module encodes",
        json_schema_extra=form(STORAGE, 64, advanced=True),
    )
    alert_probability: float = Field(
        0.0,
        ge=0,
        le=1,
        title="Alert at probability",
        description="send an alerts message for an inference with a detection at or above this "
        "probability; 0 = off (a rule yielding an alarm sends one whatever this is)",
        json_schema_extra=form(ALERTS, 70),
    )
    upload_receipts: bool = Field(
        True,
        title="Wait for upload receipts",
        json_schema_extra=form(STORAGE, 69, advanced=True),
        description="keep each upload request until ImageUpload's receipt arrives on the "
        "`uploadReceipts` input, and send it again without one; off when no route brings receipts back",
    )
    # Drift detection (docs/drift.md): what is checked, how often, and each figure's threshold.
    drift_every_s: float = Field(
        5.0,
        ge=0,
        le=3600,
        title="Drift check every",
        description="seconds between drift checks of an inferred frame (camera position, image "
        "quality, model behaviour); 0 = off",
        json_schema_extra=form(DRIFT, 80, unit="s"),
    )
    drift_consecutive: int = Field(
        3,
        ge=1,
        le=100,
        title="Checks to raise or clear",
        description="a drift alert is raised after this many checks in a row past its threshold, "
        "and cleared after as many in a row below its clear threshold",
        json_schema_extra=form(DRIFT, 81, advanced=True),
    )
    drift_clear_ratio: float = Field(
        0.7,
        gt=0,
        lt=1,
        title="Clear below (fraction of threshold)",
        description="a raised drift alert clears below this fraction of its threshold",
        json_schema_extra=form(DRIFT, 82, advanced=True),
    )
    drift_shift_px: float = Field(
        20.0,
        gt=0,
        le=10000,
        title="Camera moved: shift",
        description="shift of the image centre against the reference frame, in frame pixels",
        json_schema_extra=form(DRIFT, 83, unit="px", advanced=True),
    )
    drift_rotation_deg: float = Field(
        1.0,
        gt=0,
        le=180,
        title="Camera moved: rotation",
        description="rotation against the reference frame, either way",
        json_schema_extra=form(DRIFT, 84, unit="°", advanced=True),
    )
    drift_scale: float = Field(
        0.03,
        gt=0,
        le=1,
        title="Camera moved: scale",
        description="relative change of scale (zoom, focus) against the reference frame",
        json_schema_extra=form(DRIFT, 85, advanced=True),
    )
    drift_sharpness: float = Field(
        0.4,
        gt=0,
        le=1,
        title="Blur: sharpness loss",
        description="relative loss of sharpness (variance of the Laplacian) against the reference",
        json_schema_extra=form(DRIFT, 86, advanced=True),
    )
    drift_brightness: float = Field(
        0.25,
        gt=0,
        le=10,
        title="Brightness change",
        description="relative change of mean brightness against the reference, either way",
        json_schema_extra=form(DRIFT, 87, advanced=True),
    )
    drift_contrast: float = Field(
        0.3,
        gt=0,
        le=10,
        title="Contrast change",
        description="relative change of contrast (standard deviation of grey) against the "
        "reference, either way",
        json_schema_extra=form(DRIFT, 88, advanced=True),
    )
    drift_saturation: float = Field(
        0.3,
        gt=0,
        le=10,
        title="Saturation change",
        description="relative change of mean colour saturation against the reference, either way",
        json_schema_extra=form(DRIFT, 89, advanced=True),
    )
    drift_confidence_psi: float = Field(
        0.25,
        gt=0,
        le=10,
        title="Confidence shift (PSI)",
        description="population stability index of the top confidences, recent window against "
        "the baseline",
        json_schema_extra=form(DRIFT, 90, advanced=True),
    )
    drift_class_rate: float = Field(
        0.1,
        gt=0,
        le=1,
        title="Class rate change",
        description="change of the share of inferences reporting a class, either way",
        json_schema_extra=form(DRIFT, 91, advanced=True),
    )
    drift_ng_rate: float = Field(
        0.1,
        gt=0,
        le=1,
        title="NG rate change",
        description="change of the share of NG verdicts, either way",
        json_schema_extra=form(DRIFT, 92, advanced=True),
    )
    drift_baseline: int = Field(
        500,
        ge=20,
        le=10000,
        title="Model baseline (inferences)",
        description="the first this many inferences after set-up (or start) are the model's "
        "baseline",
        json_schema_extra=form(DRIFT, 93, advanced=True),
    )
    drift_window: int = Field(
        500,
        ge=20,
        le=10000,
        title="Model window (inferences)",
        description="the last this many inferences are compared with the baseline",
        json_schema_extra=form(DRIFT, 94, advanced=True),
    )

    zones: dict[
        RuleName, Annotated[list[ZonePoint], Field(min_length=3, max_length=MAX_ZONE_POINTS)]
    ] = Field(
        default_factory=dict,
        max_length=MAX_ZONES,
        title="Zones",
        description="named polygons the rules look in, as a JSON object: name -> [[x, y], ...] "
        "(3 to 64 points in drawing order, a simple polygon), normalised 0..1 of the frame, or in "
        "pixels of zones_frame when that is set",
        json_schema_extra=form(RULES, 100),
    )
    zones_frame: list[Annotated[int, Field(ge=1, le=65535)]] | None = Field(
        None,
        min_length=2,
        max_length=2,
        title="Zones drawn on a frame of",
        description="width, height: the zones' points are pixels of a frame this size (each "
        "inside it); empty = the points are normalised 0..1",
        json_schema_extra=form(RULES, 101, unit="px"),
    )
    rules: dict[RuleName, Rule] = Field(
        default_factory=dict,
        max_length=MAX_RULES,
        title="Rules",
        description="what makes a part NG or raises an alarm, as a JSON object: name -> rule "
        "(kind, classes, zones, ...); empty = NG when anything is detected",
        json_schema_extra=form(RULES, 102),
    )

    cameras: list[dict[str, Any]] | None = Field(
        None,
        max_length=MAX_CAMERAS,
        title="Cameras",
        description="several cameras in one module: one object per camera with its own camera_id "
        "and camera_* keys, and any inspection setting of its own; a key an entry leaves out is "
        "the module's. None or empty = one camera, set by the module's own keys",
        json_schema_extra=form(CAMERA, 19, advanced=True),
    )

    _each: list[CisSettings] = PrivateAttr(default_factory=list)

    @model_validator(mode="after")
    def _resolve_cameras(self) -> CisSettings:
        """Each entry of ``cameras`` over the module's own keys, validated as one camera is; the
        camera ids unique."""
        own = self.model_dump(exclude={"cameras"})
        problems: list[Problem] = []
        resolved: list[CisSettings] = []
        first: dict[str, int] = {}
        for index, entry in enumerate(self.cameras or []):
            loc: Loc = ("cameras", index)
            wrong = [(key, _not_per_camera(key)) for key in entry if key not in CAMERA_ENTRY_KEYS]
            problems += [((*loc, key), reason) for key, reason in wrong]
            if wrong:
                continue
            try:
                camera = CisSettings.model_validate({**own, **entry})
            except ValidationError as exc:
                problems += [((*loc, *err["loc"]), _reason(err)) for err in exc.errors()]
                continue
            seen = first.setdefault(camera.camera_id, index)
            if seen != index:
                problems.append(
                    (
                        (*loc, "camera_id"),
                        f"{camera.camera_id} is already the id of cameras[{seen}]",
                    )
                )
            resolved.append(camera)
        if problems:
            raise _refuse(type(self).__name__, problems)
        self._each = resolved
        return self

    def each_camera(self) -> list[CisSettings]:
        """The settings of every camera the module runs: one per entry of ``cameras`` (the
        module's keys where the entry sets none), else the module's own."""
        return list(self._each) or [self]

    @field_validator("providers")
    @classmethod
    def _known_providers(cls, providers: list[str] | None) -> list[str] | None:
        unknown = sorted(set(providers or ()) - _onnx_providers())
        if unknown:
            raise ValueError(f"unknown ONNX Runtime providers {unknown}")
        return providers

    @model_validator(mode="after")
    def _zones_and_rules(self) -> CisSettings:
        problems: list[Problem] = []
        width, height = self.zones_frame or (1, 1)
        where = "the zones_frame" if self.zones_frame else "0..1"
        for name, points in self.zones.items():
            outside = [i for i, (x, y) in enumerate(points) if x > width or y > height]
            problems += [(("zones", name, i), f"outside {where}") for i in outside]
            if not outside:
                from mfgvision.geometry import polygon_problem  # numpy, only where zones are set

                problem = polygon_problem(points)
                if problem:
                    problems.append((("zones", name), problem))
        for name, rule in self.rules.items():
            problems += [
                (("rules", name, "zones", i), f"unknown zone {zone!r}")
                for i, zone in enumerate(rule.zones)
                if zone not in self.zones
            ]
        if problems:
            raise _refuse(type(self).__name__, problems)
        return self

    @property
    def camera(self) -> CameraSettings:
        """The camera's own settings, as the frame sources take them."""
        return CameraSettings.model_construct(
            **{name: getattr(self, name) for name in CameraSettings.model_fields}
        )


#: Settings of the whole module, never of one of its cameras: how its models run (one session per
#: model serves every camera), whether ImageUpload's receipts come back, and the cameras themselves.
MODULE_KEYS = frozenset({"providers", "fp16", "upload_receipts", "cameras"})
#: What an entry of ``cameras`` may set.
CAMERA_ENTRY_KEYS = frozenset(CisSettings.model_fields) - MODULE_KEYS


def _not_per_camera(key: str) -> str:
    if key in MODULE_KEYS:
        return "a setting of the whole module, not of one camera"
    return "not a setting of a camera"


@functools.cache
def _onnx_providers() -> frozenset[str]:
    """Every provider name ONNX Runtime knows (installed here or not)."""
    import onnxruntime

    return frozenset(onnxruntime.get_all_providers())


UploadTargetKind = Literal["auto", "blob", "adls", "local"]
_CONTAINER_NAME = r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$"
_IMAGE_KINDS = ("annotated", "raw", "retrain")


class ImageUploadSettings(ModuleSettings):
    """ImageUpload module: where stored images go and how failures are retried.

    The storage connection string is never a setting: it comes from the environment
    (``MFGVISION_STORAGE_CONNECTION_STRING``).
    """

    target: UploadTargetKind = Field(
        "auto",
        description="auto = Blob Storage when a connection string is set, else the local folder",
    )
    containers: dict[str, str] = Field(
        default_factory=dict,
        max_length=len(_IMAGE_KINDS),
        description="container per image kind (annotated, raw, retrain) instead of the message's",
    )
    max_attempts: int = Field(
        8, ge=1, le=1000, description="failures of one image (outages not counted) before parking"
    )
    backoff_initial_s: float = Field(2.0, gt=0, le=3600, description="first retry delay")
    backoff_max_s: float = Field(300.0, gt=0, le=86400, description="cap of the retry delay")
    failed_retry_s: float = Field(
        3600.0, ge=0, le=604800, description="retry parked images after this long; 0 = never"
    )
    report_every_s: float = Field(10.0, ge=1, le=3600, description="seconds between status reports")

    @model_validator(mode="after")
    def _check(self) -> ImageUploadSettings:
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("backoff_max_s must not be below backoff_initial_s")
        for kind, name in self.containers.items():
            if kind not in _IMAGE_KINDS:
                raise ValueError(f"containers: unknown image kind {kind!r}, use {_IMAGE_KINDS}")
            if not re.match(_CONTAINER_NAME, name):
                raise ValueError(f"containers: {name!r} is not a valid container name")
        return self


class FileCleanupSettings(ModuleSettings):
    """FileCleanup module: image retention by age and by disk watermark, and database row retention."""

    image_retention_hours: float = Field(
        168.0, ge=0, le=87600, description="delete images older than this; 0 = no age limit"
    )
    high_watermark_pct: float = Field(
        90.0, gt=0, le=100, description="above this disk use, delete oldest images first"
    )
    low_watermark_pct: float = Field(80.0, gt=0, le=100, description="... until below this")
    min_age_s: float = Field(
        300.0,
        ge=0,
        le=2592000,
        description="never delete an image younger than this (its upload may be due)",
    )
    tmp_max_age_s: float = Field(
        3600.0,
        ge=60,
        le=2592000,
        description="remove leftover .*.tmp files of crashed writes older than this",
    )
    db_retention_days: float = Field(
        90.0, ge=0, le=3650, description="delete database rows older than this; 0 = keep them"
    )
    interval_s: float = Field(300.0, ge=1, le=86400, description="pause between passes")
    dry_run: bool = Field(False, description="report what would be deleted, delete nothing")

    @model_validator(mode="after")
    def _check(self) -> FileCleanupSettings:
        if self.low_watermark_pct >= self.high_watermark_pct:
            raise ValueError("low_watermark_pct must be below high_watermark_pct")
        return self


class ModelRepoSettings(ModuleSettings):
    """ModelRepo module: how often the model volume is validated again."""

    interval_s: float = Field(
        300.0, ge=5, le=86400, description="seconds between validation passes"
    )
    golden_tolerance: float = Field(
        0.05, ge=0, le=1, description="largest probability change allowed on a golden image"
    )


_MQTT_TOPIC_PART = r"^[^#+/\x00][^#+\x00]{0,199}$"


class MqttSettings(ModuleSettings):
    """LineBridge's MQTT connection: every result as JSON, each camera's state retained, triggers
    from a command topic. The password is never a setting: it comes from the environment
    (``MFGVISION_MQTT_PASSWORD``)."""

    enabled: bool = Field(False, description="publish results to an MQTT broker")
    host: str = Field("127.0.0.1", min_length=1, max_length=253, description="broker host name")
    port: int = Field(1883, ge=1, le=65535, description="broker port (8883 is usual with TLS)")
    tls: bool = Field(False, description="connect with TLS, checking the broker's certificate")
    ca_file: str = Field(
        "", max_length=1024, description="CA bundle for TLS; empty = the system's trusted CAs"
    )
    username: str = Field(
        "", max_length=256, description="user name; its password from MFGVISION_MQTT_PASSWORD"
    )
    client_id: str = Field(
        "", max_length=128, description="MQTT client id; empty = mfgvision-<module id>"
    )
    prefix: str = Field(
        "mfgvision", pattern=_MQTT_TOPIC_PART, description="first level of every topic"
    )
    qos: Literal[0, 1, 2] = Field(1, description="QoS of inspection and state messages")
    triggers: bool = Field(
        False, description="take triggers from <prefix>/<location>/<position>/<camera_id>/trigger"
    )
    queue_size: int = Field(
        10000, ge=10, le=1_000_000, description="messages held while the broker is away"
    )
    backoff_max_s: float = Field(
        30.0, ge=1, le=3600, description="cap of the reconnection delay (it doubles from 1 s)"
    )


#: Bits of a Modbus defect mask (one holding register).
MASK_BITS = 16


def block_size(counters: bool) -> int:
    """Registers in one camera's block: verdict, defects, [inspections, NG count], sequence."""
    return 7 if counters else 3


class ModbusSettings(BaseModel):
    """A PLC reached over Modbus TCP: where it is, each camera's register block and trigger coil,
    and which bit of the defect mask each defect class sets."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    host: str = Field(min_length=1, max_length=253, description="the PLC's host name or address")
    port: int = Field(502, ge=1, le=65535, description="the PLC's Modbus TCP port")
    unit_id: int = Field(1, ge=0, le=255, description="unit (slave) id of every request")
    timeout_s: float = Field(1.0, gt=0, le=30, description="how long one request may take")
    cameras: dict[str, int] = Field(
        min_length=1,
        description="each camera_id's base holding register (0-based protocol address)",
    )
    counters: bool = Field(
        True, description="also write the inspections and NG counters (32-bit, two registers each)"
    )
    word_order: Literal["big", "little"] = Field(
        "big", description="big: a 32-bit counter's high word first; little: low word first"
    )
    defect_bits: dict[str, int] = Field(
        default_factory=dict, description="defect class name -> bit (0..15) of the defect mask"
    )
    other_bit: int = Field(
        15,
        ge=0,
        lt=MASK_BITS,
        description="the bit set for a defect class without a bit of its own",
    )
    trigger_coils: dict[str, int] = Field(
        default_factory=dict,
        description="camera_id -> coil the PLC sets to make that camera inspect (0-based address)",
    )
    poll_ms: int = Field(50, ge=5, le=10000, description="how often the trigger coils are read")
    trigger_timeout_s: float = Field(
        5.0, gt=0, le=600, description="how long a trigger waits for its inspection"
    )
    queue_size: int = Field(1000, ge=1, le=100000, description="blocks waiting to be written")
    backoff_initial_s: float = Field(0.5, gt=0, le=60, description="first reconnection delay")
    backoff_max_s: float = Field(10.0, gt=0, le=600, description="cap of the reconnection delay")

    @model_validator(mode="after")
    def _check(self) -> ModbusSettings:
        size = block_size(self.counters)
        spans = sorted((base, camera) for camera, base in self.cameras.items())
        for base, camera in spans:
            if not 0 <= base <= 0x10000 - size:
                raise ValueError(f"cameras: {camera}'s block of {size} registers does not fit")
        for (base, camera), (next_base, other) in itertools.pairwise(spans):
            if next_base < base + size:
                raise ValueError(f"cameras: the blocks of {camera} and {other} overlap")
        for name, bit in self.defect_bits.items():
            if not 0 <= bit < MASK_BITS or bit == self.other_bit:
                raise ValueError(f"defect_bits: {name} needs a bit 0..15 other than other_bit")
        for camera, coil in self.trigger_coils.items():
            if camera not in self.cameras:
                raise ValueError(f"trigger_coils: {camera} has no register block in cameras")
            if not 0 <= coil <= 0xFFFF:
                raise ValueError(f"trigger_coils: {camera}'s coil is not an address 0..65535")
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("backoff_max_s must not be below backoff_initial_s")
        return self


#: The variables of one camera an OPC UA client may write, in the order one update writes them: the
#: sequence number (else the verdict) goes last.
OPCUA_CLIENT_FIELDS = (
    "inspection_id",
    "defects",
    "inspections",
    "ng_count",
    "updated_at",
    "verdict",
    "sequence",
)


OpcUaNodeId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT)]


class OpcUaCameraNodes(BaseModel):
    """One camera's variables on the plant's OPC UA server, by node id; a field left out is not
    written."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    verdict: OpcUaNodeId = Field(description="the verdict (see verdict_as)")
    inspection_id: OpcUaNodeId | None = Field(None, description="the inspection's unique_id")
    defects: OpcUaNodeId | None = Field(
        None, description="defect class names: a String array, or one String joined with ','"
    )
    inspections: OpcUaNodeId | None = Field(None, description="parts inspected since the start")
    ng_count: OpcUaNodeId | None = Field(None, description="NG parts since the start")
    sequence: OpcUaNodeId | None = Field(
        None, description="the part's number, 1.. (written last of every update)"
    )
    updated_at: OpcUaNodeId | None = Field(None, description="the inspection's time (UTC)")

    @field_validator(*OPCUA_CLIENT_FIELDS)
    @classmethod
    def _node_id(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from asyncua import ua  # imported only where an OPC UA client is configured: it is large

        try:
            ua.NodeId.from_string(value)
        except (ValueError, ua.UaError):
            raise ValueError("not an OPC UA node id such as ns=2;s=Line1.Cam1.Verdict") from None
        return value


class OpcUaClientSettings(BaseModel):
    """The plant's own OPC UA server (a PLC's, Kepware's, Ignition's) that LineBridge writes each
    camera's verdict and counters to. The password is never a setting: it comes from the
    environment (``MFGVISION_OPCUA_CLIENT_PASSWORD``)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    endpoint: str = Field(
        pattern=r"^opc\.tcp://[^/@\s]+(/[^@\s]*)?$",
        max_length=MAX_TEXT,
        description="opc.tcp://host:port[/path], no user part",
    )
    username: str = Field(
        "",
        max_length=256,
        description="user name; empty = anonymous; its password from MFGVISION_OPCUA_CLIENT_PASSWORD",
    )
    security: Literal["none", "Basic256Sha256_Sign", "Basic256Sha256_SignAndEncrypt"] = Field(
        "none", description="security policy and mode of the secure channel"
    )
    certificate_file: str = Field(
        "", max_length=MAX_TEXT, description="this client's certificate (PEM or DER) when secured"
    )
    private_key_file: str = Field(
        "", max_length=MAX_TEXT, description="its private key (PEM or DER, unencrypted)"
    )
    server_certificate_file: str = Field(
        "", max_length=MAX_TEXT, description="the server's certificate (PEM or DER) when secured"
    )
    timeout_s: float = Field(2.0, gt=0, le=30, description="how long one request may take")
    cameras: dict[str, OpcUaCameraNodes] = Field(
        min_length=1, description="camera_id -> the node ids of its variables"
    )
    verdict_as: Literal["string", "int"] = Field(
        "string", description="string: OK/NG/''; int: 0 unknown, 1 OK, 2 NG"
    )
    queue_size: int = Field(1000, ge=1, le=100000, description="updates waiting to be written")
    backoff_initial_s: float = Field(0.5, gt=0, le=60, description="first reconnection delay")
    backoff_max_s: float = Field(10.0, gt=0, le=600, description="cap of the reconnection delay")

    @model_validator(mode="after")
    def _check(self) -> OpcUaClientSettings:
        if self.security != "none":
            for name in ("certificate_file", "private_key_file", "server_certificate_file"):
                if not getattr(self, name):
                    raise ValueError(f"{name} is needed with security {self.security}")
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("backoff_max_s must not be below backoff_initial_s")
        return self


#: Security policies of the OPC UA server's endpoints: ``none`` (plain), or Basic256Sha256 signed or
#: signed and encrypted.
OpcUaSecurity = Literal["none", "Basic256Sha256_Sign", "Basic256Sha256_SignAndEncrypt"]


class OpcUaServerSettings(BaseModel):
    """LineBridge's OPC UA server: where it listens, who may log in (anonymous, a user whose password
    comes from ``MFGVISION_OPCUA_PASSWORD``, or a client certificate in ``trusted_certs_dir``) and
    which security policies its endpoints offer."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    host: str = Field(
        "0.0.0.0",
        min_length=1,
        max_length=253,
        description="address to listen on (0.0.0.0: every interface, 127.0.0.1: this machine only)",
    )
    port: int = Field(4840, ge=1, le=65535, description="TCP port (4840 is OPC UA's own)")
    anonymous: bool = Field(False, description="let clients in without user or certificate")
    username: str = Field(
        "",
        max_length=256,
        description="user name clients log in with; its password from MFGVISION_OPCUA_PASSWORD",
    )
    security: list[OpcUaSecurity] = Field(
        default_factory=lambda: ["none"],
        min_length=1,
        max_length=3,
        description="security policies the endpoints offer: none, Basic256Sha256_Sign, "
        "Basic256Sha256_SignAndEncrypt",
    )
    certificate_file: str = Field(
        "", max_length=1024, description="the server's certificate (PEM or DER) for Basic256Sha256"
    )
    private_key_file: str = Field(
        "",
        max_length=1024,
        description="the certificate's unencrypted RSA private key (PEM or DER)",
    )
    trusted_certs_dir: str = Field(
        "",
        max_length=1024,
        description="folder of trusted client certificates (.pem/.der, or their CAs): only these "
        "clients open a signed channel, and they may log in with their certificate",
    )
    trigger_timeout_s: float = Field(
        2.0, gt=0, le=60, description="how long the Trigger method waits for its inspection"
    )
    queue_size: int = Field(
        1000,
        ge=10,
        le=100000,
        description="updates waiting for the server; beyond it only each camera's latest is kept",
    )

    @model_validator(mode="after")
    def _check(self) -> OpcUaServerSettings:
        if len(set(self.security)) != len(self.security):
            raise ValueError("security: a policy is listed twice")
        signed = any(policy != "none" for policy in self.security)
        if bool(self.certificate_file) != bool(self.private_key_file):
            raise ValueError("certificate_file and private_key_file go together")
        if signed and not self.certificate_file:
            raise ValueError("Basic256Sha256 needs certificate_file and private_key_file")
        if not (self.anonymous or self.username or self.trusted_certs_dir):
            raise ValueError(
                "no client could log in: turn anonymous on, or set username or trusted_certs_dir"
            )
        if self.username and "Basic256Sha256_SignAndEncrypt" not in self.security:
            raise ValueError(
                "username needs Basic256Sha256_SignAndEncrypt in security, so that the password "
                "never crosses the network in plain text"
            )
        if self.trusted_certs_dir and not signed:
            raise ValueError("trusted_certs_dir needs a Basic256Sha256 policy in security")
        return self


class LineBridgeSettings(ModuleSettings):
    """LineBridge module: each camera's verdict to the line, triggers from it. Each connection to
    the line is a sub-object of its own (``mqtt``, ``modbus``, ``opcua_client``, ``opcua_server``)."""

    mqtt: MqttSettings = Field(default_factory=MqttSettings, description="MQTT connection")
    modbus: ModbusSettings | None = Field(
        None, description="Modbus TCP connection to a PLC; none = off"
    )
    opcua_client: OpcUaClientSettings | None = Field(
        None, description="OPC UA client writing to the plant's OPC UA server; none = off"
    )
    opcua_server: OpcUaServerSettings | None = Field(
        None, description="OPC UA server for SCADA, MES and PLC clients; none = off"
    )
    trigger_timeout_s: float = Field(
        2.0,
        gt=0,
        le=60,
        description="deadline of a triggered part's verdict; past it the part gets the fail-safe",
    )
    fail_safe: Literal["OK", "NG"] = Field(
        "NG", description="verdict given to a triggered part whose result missed its deadline"
    )
    status_poll_s: float = Field(
        1.0, ge=0.1, le=60, description="seconds between looks at the cameras' status files"
    )
    report_every_s: float = Field(10.0, ge=1, le=3600, description="seconds between status reports")


def parse_settings(model: type[ModuleSettings], desired: dict[str, Any]) -> ModuleSettings:
    """Validate desired properties into settings; raise SettingsError with a readable message and
    the problem of each offending key."""
    try:
        return model.model_validate(desired)
    except SettingsError:
        raise
    except ValidationError as exc:
        raise SettingsError(validation_message(exc), _problems(model, desired, exc)) from None


def validation_message(exc: ValidationError, whole: str = "settings") -> str:
    """A validation error as ``field: reason; ...`` (``whole`` for an error of the whole object),
    without the offending values."""
    return "; ".join(f"{place(err['loc']) or whole}: {_reason(err)}" for err in exc.errors())


def place(loc: Loc) -> str:
    """Where a value is, as people write it: ``cameras[1].camera_uri``, ``modbus.cameras``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text


def _reason(err: Any) -> str:
    """An error's message without pydantic's ``Value error, `` prefix."""
    return str(err["msg"]).removeprefix("Value error, ")


def _problems(
    model: type[ModuleSettings], desired: dict[str, Any], exc: ValidationError
) -> dict[str, str]:
    """Top-level key of ``desired`` -> reason, for each validation error. An error located on a key
    of the document is that key's (its reason names the place within it); any other (a legacy key, a check across keys) belongs to the
    keys whose removal alone makes it go away, else to ``settings``."""
    problems: dict[str, list[str]] = {}
    for err in exc.errors():
        loc = err["loc"]
        # An item of a list is named from the list's key: ``cameras[1].camera_uri``.
        nested = place(loc) if len(loc) > 1 and isinstance(loc[1], int) else place(loc[1:])
        reason = f"{nested}: {_reason(err)}" if nested else _reason(err)
        keys = [str(loc[0])] if loc and loc[0] in desired else _culprits(model, desired, err)
        for key in keys or ["settings"]:
            if reason not in problems.setdefault(key, []):
                problems[key].append(reason)
    return {key: "; ".join(reasons) for key, reasons in problems.items()}


def _culprits(model: type[ModuleSettings], desired: dict[str, Any], err: Any) -> list[str]:
    """The keys of ``desired`` without which the error ``err`` disappears."""
    found = []
    for key in desired:
        if key.startswith("$"):
            continue
        try:
            model.model_validate({k: v for k, v in desired.items() if k != key})
        except ValidationError as other:
            if any((e["loc"], e["msg"]) == (err["loc"], err["msg"]) for e in other.errors()):
                continue
        except SettingsError:
            continue
        found.append(key)
    return found
