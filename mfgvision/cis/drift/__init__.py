"""Drift detection: notices when a camera's images or its model's answers stop looking like they did
when the camera was set up (docs/drift.md).

* :mod:`.image`: the small analysis image and its statistics (brightness, contrast, saturation,
  sharpness), compared with the reference frame's;
* :mod:`.geometry`: how far the camera moved against the reference frame (shift, rotation, scale);
* :mod:`.behaviour`: the model's recent answers against its baseline (confidences, classes, NG rate);
* :mod:`.alerts`: which figure belongs to which alert, and the hysteresis that raises and clears it;
* :mod:`.store`: the reference, the alert state and the dashboard's view, on disk per camera;
* :mod:`.monitor`: the drift thread that ties them together for one CIS pipeline.
"""
