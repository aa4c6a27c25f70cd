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
    url_for,
)
from flask.typing import ResponseReturnValue

from mfgvision.edge.twins import merge_patch
from mfgvision.settings import SettingsError, parse_settings
from mfgvision.twin_config.forms import (
    SCHEMAS,
    effective,
    form_fields,
    form_values,
    propose,
    read_form,
)
from mfgvision.twin_config.manifest import ManifestEditError, clone_camera
from mfgvision.twin_config.registry import (
    ConflictError,
    NotFoundError,
    RegistryError,
    TwinRegistry,
)
from mfgvision.web.auth import AuthConfig, install_auth
from mfgvision.web.headers import install_security_headers

log = logging.getLogger(__name__)

EXTENSION_KEY = "mfgvision.twin_config"
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)
_ID = re.compile(r"[A-Za-z0-9\-._:$@]{1,128}")
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
                summary = _reported_summary(twin.reported, twin.desired_version)
            modules.append({"info": info, "summary": summary})
        rows.append({"device_id": device_id, "modules": modules})
    return _render("twin_devices.html", devices=rows, registry=registry.name)


def _reported_summary(reported: dict[str, Any], desired_version: int | None) -> dict[str, Any]:
    config = reported.get("config") if isinstance(reported.get("config"), dict) else {}
    status = reported.get("status") if isinstance(reported.get("status"), dict) else {}
    applied = config.get("applied_version")
    error = config.get("error") if isinstance(config.get("error"), dict) else None
    if error and (desired_version is None or error.get("version") == desired_version):
        state = ("error", f"Refused version {error.get('version')}: {error.get('message')}")
    elif applied is not None and desired_version is not None and applied >= desired_version:
        state = ("ok", f"Applied version {applied}")
    elif desired_version is not None and reported:
        state = ("warn", f"Waiting for version {desired_version} (applied: {applied})")
    else:
        state = ("warn", "Nothing reported yet")
    return {
        "level": state[0],
        "text": state[1],
        "camera_state": status.get("state"),
        "updated": reported.get("updated"),
    }


@bp.get("/devices/<device_id>/modules/<module_id>")
def module(device_id: str, module_id: str) -> ResponseReturnValue:
    """Desired and reported properties, and the edit form when the module has a schema."""
    _ids(device_id, module_id)
    twin = _registry().twin(device_id, module_id)
    model = SCHEMAS.get(twin.kind or "")
    fields = form_fields(model) if model else []
    current = effective(model, twin.settings) if model else None
    values = form_values(fields, twin.settings, current) if model else {}
    sent = request.args.get("sent", "")
    return _render(
        "twin_module.html",
        twin=twin,
        fields=fields,
        values=values,
        errors={},
        form_error=None,
        desired_json=json.dumps(twin.desired, indent=2, sort_keys=True),
        reported_json=json.dumps(twin.reported, indent=2, sort_keys=True),
        summary=_reported_summary(twin.reported, twin.desired_version),
        sent=int(sent) if sent.isdigit() else None,
        valid_now=current is not None,
    )


@bp.post("/devices/<device_id>/modules/<module_id>/review")
def review(device_id: str, module_id: str) -> ResponseReturnValue:
    """Validate the form as the module would, then show what will change."""
    _ids(device_id, module_id)
    twin = _registry().twin(device_id, module_id)
    model = SCHEMAS.get(twin.kind or "")
    if model is None:
        abort(400)
    fields = form_fields(model)
    values, errors = read_form(fields, request.form)
    form_error = None
    proposal = None
    if not errors:
        try:
            proposal = propose(model, twin.settings, values)
        except SettingsError as exc:
            form_error = str(exc)
    if errors or form_error or proposal is None:
        shown = {**form_values(fields, twin.settings, effective(model, twin.settings))}
        shown.update({k: request.form.get(k, "") for k in request.form if k in shown})
        for f in fields:
            if f.kind == "checkbox":
                shown[f.name] = request.form.get(f.name) == "on"
        return _render(
            "twin_module.html",
            422,
            twin=twin,
            fields=fields,
            values=shown,
            errors=errors,
            form_error=form_error or "Some values need fixing.",
            desired_json=json.dumps(twin.desired, indent=2, sort_keys=True),
            reported_json=json.dumps(twin.reported, indent=2, sort_keys=True),
            summary=_reported_summary(twin.reported, twin.desired_version),
            sent=None,
            valid_now=effective(model, twin.settings) is not None,
        )
    return _render(
        "twin_review.html",
        twin=twin,
        proposal=proposal,
        patch_json=json.dumps(proposal.patch, sort_keys=True),
        patch_pretty=json.dumps(proposal.patch, indent=2, sort_keys=True),
        etag=twin.etag,
    )


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
            "summary": _reported_summary(twin.reported, twin.desired_version),
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
