"""Operators' feedback through the dashboard: the detail page's form, the JSON endpoint with its CSRF
token, validation, and the stored feedback read back with the inspection."""

from __future__ import annotations

import re

from flask.testing import FlaskClient

from mfgvision.store.database import Database
from mfgvision.store.feedback import feedback_for
from mfgvision.store.records import InferenceRecord


def csrf(client: FlaskClient, unique_id: str) -> str:
    """The CSRF token the detail page carries for its scripts."""
    page = client.get(f"/inferences/{unique_id}").get_data(as_text=True)
    token = re.search(r'<meta name="csrf-token" content="([^"]+)">', page)
    assert token, "the detail page carries no CSRF token"
    assert 'data-ref="markFalseNg"' in page and "feedback.js" in page
    return token.group(1)


def post(client: FlaskClient, unique_id: str, body: object, token: str | None) -> object:
    headers = {"X-CSRF-Token": token} if token else {}
    return client.post(f"/api/inferences/{unique_id}/feedback", json=body, headers=headers)


def test_an_operator_marks_a_false_ng_and_it_is_stored_and_shown(
    client: FlaskClient, db: Database, seeded: list[InferenceRecord]
) -> None:
    target = seeded[2]  # NG: a hole and a scratch
    token = csrf(client, target.unique_id)
    response = post(
        client, target.unique_id, {"judgement": "false_ng", "boxes": [], "note": "glare"}, token
    )
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["judgement"] == "false_ng"

    stored = feedback_for(db.engine, [target.unique_id])[target.unique_id]
    assert (stored.judgement, stored.boxes, stored.note) == ("false_ng", (), "glare")
    item = client.get(f"/api/inferences/{target.unique_id}").get_json()
    assert item["feedback"]["judgement"] == "false_ng" and item["feedback"]["boxes"] == []
    assert item["feedback_url"].endswith(f"/api/inferences/{target.unique_id}/feedback")


def test_corrected_boxes_replace_earlier_feedback(
    client: FlaskClient, db: Database, seeded: list[InferenceRecord]
) -> None:
    target = seeded[4]  # OK with a raw frame
    token = csrf(client, target.unique_id)
    assert post(client, target.unique_id, {"judgement": "correct"}, token).status_code == 200
    boxes = [{"label": "dent", "box_norm": [0.1, 0.2, 0.3, 0.45]}]
    assert (
        post(
            client, target.unique_id, {"judgement": "missed_defect", "boxes": boxes}, token
        ).status_code
        == 200
    )
    stored = feedback_for(db.engine, [target.unique_id])[target.unique_id]
    assert stored.judgement == "missed_defect"
    assert [(b.label, b.box_norm) for b in stored.boxes or ()] == [("dent", (0.1, 0.2, 0.3, 0.45))]


def test_bad_feedback_is_refused_with_the_reason(
    client: FlaskClient, db: Database, seeded: list[InferenceRecord]
) -> None:
    target = seeded[0]
    token = csrf(client, target.unique_id)
    bad = [
        ({"judgement": "maybe"}, "judgement"),
        ({"judgement": "correct", "extra": 1}, "unknown fields"),
        (
            {
                "judgement": "missed_defect",
                "boxes": [{"label": "x", "box_norm": [0.5, 0.5, 0.4, 0.6]}],
            },
            "x1 < x2",
        ),
        (
            {"judgement": "missed_defect", "boxes": [{"label": "", "box_norm": [0, 0, 1, 1]}]},
            "label",
        ),
        ({"judgement": "missed_defect", "boxes": "all"}, "list"),
        ({"judgement": "correct", "note": "n" * 501}, "note"),
        ([1, 2], "JSON object"),
    ]
    for body, reason in bad:
        response = post(client, target.unique_id, body, token)
        assert response.status_code == 400, body
        assert reason in response.get_json()["error"], (body, response.get_json())
    assert feedback_for(db.engine, [target.unique_id]) == {}
    missing = "00000000-0000-0000-0000-000000000000"
    assert post(client, missing, {"judgement": "correct"}, token).status_code == 404


def test_feedback_without_the_csrf_token_is_refused(
    client: FlaskClient, db: Database, seeded: list[InferenceRecord]
) -> None:
    target = seeded[0]
    csrf(client, target.unique_id)
    assert post(client, target.unique_id, {"judgement": "correct"}, None).status_code == 400
    assert post(client, target.unique_id, {"judgement": "correct"}, "forged").status_code == 400
    assert feedback_for(db.engine, [target.unique_id]) == {}
