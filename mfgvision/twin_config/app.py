"""The twin configuration tool: browse devices and modules, edit a module's desired properties
through a form generated from its settings schema, review the diff, apply, and watch the module
acknowledge (``reported.config.applied_version``) or refuse (``reported.config.error``) it.

Login is required and every form carries a CSRF token. The tool never deletes: no module, twin
or device can be removed from here.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from flask.typing import ResponseReturnValue

from mfgvision.edge.twins import merge_patch
from mfgvision.settings import ModuleSettings, SettingsError, parse_settings
from mfgvision.twin_config.cameras import (
    ACTION,
    COUNT,
    display,
    entries_of,
    entry_fields,
    input_name,
    read_cameras,
    with_camera_added,
)
from mfgvision.twin_config.forms import (
    SCHEMAS,
    FormField,
    effective,
    form_fields,
    form_sections,
    form_values,
    propose,
    read_form,
)
from mfgvision.twin_config.frames import current_frame, frame_path
from mfgvision.twin_config.manifest import ManifestEditError, clone_camera
from mfgvision.twin_config.registry import (
    ConflictError,
    ModuleTwin,
    NotFoundError,
    RegistryError,
    TwinRegistry,
)
from mfgvision.twin_config.reported import reported_summary
from mfgvision.web.auth import AuthConfig, install_auth
from mfgvision.web.headers import install_security_headers

log = logging.getLogger(__name__)

EXTENSION_KEY = "mfgvision.twin_config"
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)
_ID = re.compile(r"[A-Za-z0-9\-._:$@]{1,128}")
FRAME_MAX_AGE_S = 3600
STATIC_FOLDER = Path(__file__).resolve().parent.parent / "dashboard" / "static"

bp = Blueprint("twin", __name__)


def create_app(
    registry: TwinRegistry, auth: AuthConfig, title: str = "Twin configuration"
) -> Flask:
    """The tool over ``registry``; ``auth`` must name a user (see ``require_login_configured``)."""
    app = Flask(__name__, static_folder=str(STATIC_FOLDER))
    app.extensions[EXTENSION_KEY] = registry
    app.config["MFGVISION_TITLE"] = title
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.register_blueprint(bp)
    install_auth(
        app,
        auth,
        cookie_name="mfgvision_twin_config",
        public_endpoints={"twin.healthz"},
        token_prefixes=("/api/",),
    )
    app.jinja_env.globals["app_title"] = title
    install_security_headers(app, CONTENT_SECURITY_POLICY)
    return app


def _registry() -> TwinRegistry:
    registry: TwinRegistry = current_app.extensions[EXTENSION_KEY]
    return registry


def _ids(*values: str) -> None:
    for value in values:
        if _ID.fullmatch(value) is None:
            abort(400)


def _render(template: str, status: int = 200, **values: Any) -> ResponseReturnValue:
    return (
        render_template(template, title=current_app.config["MFGVISION_TITLE"], **values),
        status,
    )


@bp.errorhandler(NotFoundError)
def _not_found(exc: NotFoundError) -> ResponseReturnValue:
    if request.path.startswith("/api/"):
        return jsonify(error=str(exc)), 404
    return _render("twin_error.html", 404, message=str(exc))


@bp.errorhandler(RegistryError)
def _registry_error(exc: RegistryError) -> ResponseReturnValue:
    if request.path.startswith("/api/"):
        return jsonify(error=str(exc)), 502
    return _render("twin_error.html", 502, message=str(exc))


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    return jsonify(status="ok", registry=_registry().name)


@bp.get("/")
def devices() -> ResponseReturnValue:
    """Every device with its modules and what each module last reported."""
    registry = _registry()
    rows = []
    for device_id in registry.devices():
        modules = []
        for info in registry.modules(device_id):
            summary = None
            if info.kind in SCHEMAS:
                twin = registry.twin(device_id, info.module_id)
                summary = reported_summary(twin.reported, twin.desired_version)
            modules.append({"info": info, "summary": summary})
        rows.append({"device_id": device_id, "modules": modules})
    return _render("twin_devices.html", devices=rows, registry=registry.name)


@bp.get("/devices/<device_id>/modules/<module_id>")
def module(device_id: str, module_id: str) -> ResponseReturnValue:
    """Desired and reported properties, the edit form when the module has a schema (one section
    per camera of a ``cameras`` list), and each camera's current frame."""
    _ids(device_id, module_id)
    twin = _registry().twin(device_id, module_id)
    model = SCHEMAS.get(twin.kind or "")
    fields = _module_fields(model)
    current = effective(model, twin.settings) if model else None
    values = form_values(fields, twin.settings, current) if model else {}
    entries = entries_of(twin.settings)
    texts = [_entry_texts(fields, entry) for entry in entries]
    sent = request.args.get("sent", "")
    return _module_page(
        twin,
        fields,
        values,
        current,
        cameras=_camera_views(twin, fields, texts, list(range(len(entries))), current),
        sent=int(sent) if sent.isdigit() else None,
    )


def _module_fields(model: type[ModuleSettings] | None) -> list[FormField]:
    """The module's own inputs: every setting but the ``cameras`` list, which has its sections."""
    return [f for f in form_fields(model) if f.name != "cameras"] if model else []


def _entry_texts(fields: list[FormField], entry: dict[str, Any]) -> dict[str, str]:
    """What a camera section's inputs show for ``entry``."""
    return {f.name: display(entry.get(f.name), f) for f in entry_fields(fields)}


def _camera_views(
    twin: ModuleTwin,
    fields: list[FormField],
    texts: list[dict[str, str]],
    origins: list[int | None],
    current: dict[str, Any] | None,
) -> list[dict[str, Any]]:
    """One camera section per entry: its inputs' texts, where it came from, the camera type in
    force (the entry's, else the module's) and its current frame."""
    module_type = (current or {}).get("camera_type") or twin.settings.get("camera_type", "folder")
    views = []
    for index, (text, origin) in enumerate(zip(texts, origins, strict=True)):
        camera_id = text.get("camera_id", "")
        views.append(
            {
                "index": index,
                "origin": "" if origin is None else origin,
                "camera_id": camera_id,
                "texts": text,
                "type": {"camera_type": text.get("camera_type") or module_type},
                "frame": _frame(twin, current, camera_id) if camera_id else None,
            }
        )
    return views


def _module_page(
    twin: ModuleTwin,
    fields: list[FormField],
    values: dict[str, Any],
    current: dict[str, Any] | None,
    status: int = 200,
    errors: dict[str, str] | None = None,
    form_error: str | None = None,
    sent: int | None = None,
    cameras: list[dict[str, Any]] | None = None,
    note: str | None = None,
) -> ResponseReturnValue:
    own = entry_fields(fields)
    return _render(
        "twin_module.html",
        status,
        twin=twin,
        fields=fields,
        field_names={f.name for f in fields},
        sections=form_sections(fields),
        values=values,
        errors=errors or {},
        form_error=form_error,
        note=note,
        desired_json=json.dumps(twin.desired, indent=2, sort_keys=True),
        reported_json=json.dumps(twin.reported, indent=2, sort_keys=True),
        summary=reported_summary(twin.reported, twin.desired_version),
        frame=_frame(twin, current) if fields and not cameras else None,
        cameras=cameras or [],
        camera_sections=form_sections(own),
        inherited={f.name: display(values.get(f.name), f) for f in own},
        input_name=input_name,
        count_name=COUNT,
        action_name=ACTION,
        sent=sent,
        valid_now=current is not None,
    )


def _frame(
    twin: ModuleTwin, current: dict[str, Any] | None, camera_id: str | None = None
) -> dict[str, Any]:
    """A camera's current frame for the page and the API (the module's own camera, or entry
    ``camera_id`` of its ``cameras`` list): its URL and time, or a note."""
    images = _registry().images_dir(twin.device_id)
    info = current_frame(images, twin.reported, current, camera_id)
    url = None
    if info.name:
        url = url_for(
            "twin.frame", device_id=twin.device_id, module_id=twin.module_id, name=info.name
        )
    return {"url": url, "captured_at": info.captured_at, "kind": info.kind, "note": info.note}


@bp.get("/devices/<device_id>/modules/<module_id>/frames/<name>")
def frame(device_id: str, module_id: str, name: str) -> ResponseReturnValue:
    """One stored frame of the module's camera (404 for any other file)."""
    _ids(device_id, module_id)
    registry = _registry()
    images = registry.images_dir(device_id)
    if images is None:
        abort(404)
    twin = registry.twin(device_id, module_id)
    model = SCHEMAS.get(twin.kind or "")
    if model is None:
        abort(404)
    path = frame_path(images, twin.reported, effective(model, twin.settings), name)
    if path is None:
        abort(404)
    return send_file(path, mimetype="image/jpeg", max_age=FRAME_MAX_AGE_S, conditional=True)


@bp.post("/devices/<device_id>/modules/<module_id>/review")
def review(device_id: str, module_id: str) -> ResponseReturnValue:
    """Validate the form as the module would, then show what will change. A camera added to or
    removed from the module's ``cameras`` list (``camera_action``) shows the form again with it."""
    _ids(device_id, module_id)
    twin = _registry().twin(device_id, module_id)
    model = SCHEMAS.get(twin.kind or "")
    if model is None:
        abort(400)
    fields = _module_fields(model)
    values, errors = read_form(fields, request.form)
    desired_entries = entries_of(twin.settings)
    entries, origins, camera_errors = read_cameras(fields, request.form, values, desired_entries)
    errors.update(camera_errors)
    texts = [
        {f.name: request.form.get(input_name(i, f.name), "") for f in entry_fields(fields)}
        for i in range(len(entries))
    ]
    action = request.form.get(ACTION, "")
    form_error = None
    note = None
    proposal = None
    if action and not errors:
        entries, origins, note = _camera_action(action, entries, origins, values)
        texts = [_entry_texts(fields, entry) for entry in entries]
    elif not errors:
        if entries or desired_entries:
            values["cameras"] = entries or None
        try:
            proposal = propose(model, twin.settings, values)
        except SettingsError as exc:
            form_error = str(exc)
    if errors or form_error or proposal is None:
        current = effective(model, twin.settings)
        shown = form_values(fields, twin.settings, current)
        shown.update({k: request.form.get(k, "") for k in request.form if k in shown})
        for f in fields:
            if f.kind == "checkbox" and f.name in values:
                shown[f.name] = values[f.name]
        failed = bool(errors or form_error)
        return _module_page(
            twin,
            fields,
            shown,
            current,
            422 if failed else 200,
            errors=errors,
            form_error=(form_error or "Some values need fixing.") if failed else None,
            cameras=_camera_views(twin, fields, texts, origins, current),
            note=note,
        )
    return _render(
        "twin_review.html",
        twin=twin,
        proposal=proposal,
        labels={f.name: f.label for f in fields},
        patch_json=json.dumps(proposal.patch, sort_keys=True),
        patch_pretty=json.dumps(proposal.patch, indent=2, sort_keys=True),
        etag=twin.etag,
    )


def _camera_action(
    action: str,
    entries: list[dict[str, Any]],
    origins: list[int | None],
    module: dict[str, Any],
) -> tuple[list[dict[str, Any]], list[int | None], str]:
    """``entries`` with a camera added (``add``) or removed (``remove:<index>``), and what the
    form says about it; nothing is sent until the change is reviewed and applied."""
    if action == "add":
        added = with_camera_added(entries, module)
        kept = origins if entries else [None]
        new_id = added[-1]["camera_id"]
        return added, [*kept, None], f"Camera {new_id} added to the form: set it, then review."
    index_text = action.removeprefix("remove:")
    if action.startswith("remove:") and index_text.isdigit() and len(entries) > 1:
        index = int(index_text)
        if index < len(entries):
            gone = entries[index].get("camera_id", f"cameras[{index}]")
            rest = [e for i, e in enumerate(entries) if i != index]
            where = [o for i, o in enumerate(origins) if i != index]
            return rest, where, f"Camera {gone} removed from the form: review to send it."
    abort(400)


@bp.post("/devices/<device_id>/modules/<module_id>/apply")
def apply(device_id: str, module_id: str) -> ResponseReturnValue:
    """Send the reviewed patch if the twin has not changed since the review."""
    _ids(device_id, module_id)
    registry = _registry()
    twin = registry.twin(device_id, module_id)
    model = SCHEMAS.get(twin.kind or "")
    try:
        patch = json.loads(request.form.get("patch", ""))
    except ValueError:
        abort(400)
    if model is None or not isinstance(patch, dict) or not patch:
        abort(400)
    etag = request.form.get("etag", "")
    try:
        # Validate again: the reviewed patch must still give settings the module accepts.
        parse_settings(model, merge_patch(twin.settings, patch))
        if set(patch) - set(model.model_fields) - set(twin.settings):
            abort(400)
        updated = registry.patch_desired(device_id, module_id, patch, etag)
    except ConflictError:
        flash("The module's twin changed while you reviewed. Check the values and review again.")
        return redirect(url_for("twin.module", device_id=device_id, module_id=module_id))
    except SettingsError as exc:
        flash(f"Not sent: {exc}")
        return redirect(url_for("twin.module", device_id=device_id, module_id=module_id))
    log.info(
        "twin change applied",
        extra={"device": device_id, "module_name": module_id, "version": updated.desired_version},
    )
    return redirect(
        url_for(
            "twin.module",
            device_id=device_id,
            module_id=module_id,
            sent=updated.desired_version or "",
        )
    )


@bp.get("/api/devices/<device_id>/modules/<module_id>/twin")
def twin_json(device_id: str, module_id: str) -> ResponseReturnValue:
    """The module twin and whether the module applied or refused the latest desired version."""
    _ids(device_id, module_id)
    twin = _registry().twin(device_id, module_id)
    model = SCHEMAS.get(twin.kind or "")
    current = effective(model, twin.settings) if model else None
    config = twin.reported.get("config") if isinstance(twin.reported.get("config"), dict) else {}
    return jsonify(
        {
            "device_id": device_id,
            "module_id": module_id,
            "desired": twin.desired,
            "reported": twin.reported,
            "desired_version": twin.desired_version,
            "applied_version": config.get("applied_version"),
            "error": config.get("error"),
            "summary": reported_summary(twin.reported, twin.desired_version),
            "frame": _frame(twin, current) if model else None,
            "cameras": {
                str(entry.get("camera_id")): _frame(twin, current, str(entry.get("camera_id")))
                for entry in entries_of(twin.settings)
            }
            if model
            else {},
        }
    )


@bp.route("/devices/<device_id>/add-camera", methods=["GET", "POST"])
def add_camera(device_id: str) -> ResponseReturnValue:
    """Clone a CIS module for a new camera into the device's manifest and download it."""
    _ids(device_id)
    registry = _registry()
    sources = [m.module_id for m in registry.modules(device_id) if m.kind == "cis"]
    form = {
        "source": sources[0] if sources else "",
        "module": "",
        "camera_id": "",
        "camera_location": "",
        "camera_position": "",
        "camera_type": "rtsp",
        "camera_uri": "",
    }
    error = None
    if request.method == "POST":
        form.update({k: request.form.get(k, "").strip()[:500] for k in form})
        if form["source"] not in sources:
            error = "Choose the camera module to copy."
        else:
            settings = {
                k: form[k]
                for k in ("camera_id", "camera_location", "camera_position", "camera_type")
                if form[k]
            }
            settings["camera_uri"] = form["camera_uri"] or "samples/line1"
            deployment = registry.deployment(device_id)
            try:
                manifest = clone_camera(
                    deployment.manifest, form["source"], form["module"], settings
                )
            except (ManifestEditError, SettingsError) as exc:
                error = str(exc)
            else:
                stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
                body = json.dumps(manifest, indent=2) + "\n"
                response = Response(body, mimetype="application/json")
                response.headers["Content-Disposition"] = (
                    f'attachment; filename="deployment-{device_id}-{form["module"]}-{stamp}.json"'
                )
                log.info(
                    "manifest with a new camera written",
                    extra={"device": device_id, "module_name": form["module"]},
                )
                return response
    return _render(
        "twin_add_camera.html",
        422 if error else 200,
        device_id=device_id,
        sources=sources,
        form=form,
        error=error,
        camera_types=SCHEMAS["cis"].model_json_schema()["properties"]["camera_type"]["enum"],
    )
