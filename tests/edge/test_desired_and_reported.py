"""A module's desired document (merge-patch, full sections, last good settings) and quiet reports."""

from __future__ import annotations

import json

from mfgvision.edge.desired import DesiredSettings, desired_file
from mfgvision.edge.reported import QuietReports
from mfgvision.settings import CisSettings, FileCleanupSettings


def test_patches_merge_into_the_document_and_a_full_section_replaces_it(tmp_path):
    desired = DesiredSettings(CisSettings, desired_file(tmp_path, "CIS1"))
    assert desired.apply({"camera_id": "cam7", "prob_threshold": 0.6, "$version": 1}, full=True)
    assert desired.apply({"prob_threshold": None, "$version": 2}, full=False)  # null deletes
    assert desired.current.prob_threshold == 0.5 and desired.current.camera_id == "cam7"
    # reconnecting after the operator deleted camera_id: the whole section replaces the document
    assert desired.apply({"inference_fps": 2, "$version": 5}, full=True)
    assert desired.document == {"inference_fps": 2}
    assert desired.current.camera_id == "camera1" and desired.applied_version == 5


def test_a_bad_key_keeps_the_last_good_settings_until_the_document_is_valid(tmp_path):
    desired = DesiredSettings(CisSettings, desired_file(tmp_path, "CIS1"))
    desired.apply({"camera_id": "cam7", "$version": 1}, full=True)
    assert not desired.apply({"prob_threshold": 7, "camera_id": "cam8", "$version": 2}, False)
    assert desired.current.camera_id == "cam7" and desired.applied_version == 1
    assert desired.error is not None and set(desired.error["keys"]) == {"prob_threshold"}
    # a valid patch of another key does not make the document valid: still refused, still cam7
    assert not desired.apply({"inference_fps": 3, "$version": 3}, False)
    report = desired.report()
    assert report["applied_version"] == 1 and report["settings"]["camera_id"] == "cam7"
    assert report["error"]["version"] == 3 and "prob_threshold" in report["error"]["keys"]
    # fixing the bad key applies the whole document
    assert desired.apply({"prob_threshold": 0.7, "$version": 4}, False)
    assert (desired.current.camera_id, desired.current.inference_fps) == ("cam8", 3)
    assert desired.error is None and desired.applied_version == 4


def test_without_last_good_settings_only_the_bad_keys_get_defaults(tmp_path):
    desired = DesiredSettings(CisSettings, desired_file(tmp_path, "CIS1"))
    assert not desired.apply({"camera_id": "cam7", "prob_threshold": "high", "$version": 3}, True)
    assert desired.current.camera_id == "cam7" and desired.current.prob_threshold == 0.5
    assert desired.applied_version is None
    assert not desired_file(tmp_path, "CIS1").exists()  # nothing good to keep yet
    # the next patch merges into the kept document, not into an empty one
    assert not desired.apply({"inference_fps": 2, "$version": 4}, False)
    assert desired.current.camera_id == "cam7" and desired.current.inference_fps == 2


def test_last_good_settings_survive_a_restart(tmp_path):
    path = desired_file(tmp_path, "FileCleanup")
    first = DesiredSettings(FileCleanupSettings, path)
    first.apply({"interval_s": 60, "$version": 2}, full=True)
    assert json.loads(path.read_text()) == {"version": 2, "desired": {"interval_s": 60}}
    restarted = DesiredSettings(FileCleanupSettings, path)
    assert restarted.current.interval_s == 60 and restarted.applied_version == 2
    # started on a twin with a cross-key error: the persisted settings serve, the key is named
    assert not restarted.apply({"interval_s": 30, "low_watermark_pct": 95, "$version": 3}, True)
    assert restarted.current.interval_s == 60
    assert set(restarted.error["keys"]) == {"low_watermark_pct"}


def test_a_broken_state_file_means_defaults(tmp_path):
    path = desired_file(tmp_path, "CIS1")
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    assert DesiredSettings(CisSettings, path).current == CisSettings()


def test_figures_alone_go_at_most_once_a_minute():
    now = [0.0]
    quiet = QuietReports(figures_every_s=60, clock=lambda: now[0])
    doc = {"status": {"state": "running", "fps": 1.0, "counters": {"frames": 1}}, "updated": "a"}
    assert quiet.patch_for(doc) == doc
    assert quiet.patch_for(doc) is None  # nothing changed
    now[0] = 30
    busy = {"status": {"state": "running", "fps": 2.0, "counters": {"frames": 9}}, "updated": "b"}
    assert quiet.patch_for(busy) is None
    now[0] = 61
    assert quiet.patch_for(busy) == {
        "status": {"fps": 2.0, "counters": {"frames": 9}},
        "updated": "b",
    }
    now[0] = 62
    failed = {"status": {"state": "camera_error", "fps": 0.0, "counters": {"frames": 9}}}
    assert quiet.patch_for(failed) == {
        "status": {"state": "camera_error", "fps": 0.0},
        "updated": None,
    }
    config = {**failed, "config": {"applied_version": 3}}
    assert quiet.patch_for(config) == {"config": {"applied_version": 3}}
    assert quiet.patch_for({**failed, "config": {"applied_version": 4}}) == {
        "config": {"applied_version": 4}
    }
    quiet.forget()
    assert quiet.patch_for(config) == config
