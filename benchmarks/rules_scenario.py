"""Zones and rules on the demo model, frame by frame: generated frames with known parts and defects
(a scratch inside and outside the sealing face, a hole not drilled, no part, a person with and
without a helmet; tests/cis/rules_scenes.py) played through a CIS module running ``demo-defects``
with the zones and rules of that station.

Prints a Markdown table: each frame, what it shows, the verdict and rules expected, the verdict
and rules of its stored row, what the model found; exits 1 when a frame was judged otherwise.

    python benchmarks/rules_scenario.py [--model-dir edge_assets/models]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from mfgvision.store.records import FiredRule
from tests.cis.rules_scenes import SCENES, play


def rules_text(fired: Sequence[FiredRule]) -> str:
    """The rules that fired as ``rule (yields): detail``, or ``none``."""
    return "; ".join(f"{f.rule} ({f.yields}): {f.detail}" for f in fired) or "none"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model-dir", type=Path, default=Path("edge_assets/models"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        judged = play(Path(tmp), args.model_dir.resolve())
    print("| frame | shows | expected | judged | found | as expected |")
    print("| --- | --- | --- | --- | --- | --- |")
    wrong = 0
    for scene in SCENES:
        rows = [j.row for j in judged[scene.name]]
        outcomes = {(r.verdict, r.fired_rules or ()) for r in rows}
        right = outcomes == {(scene.verdict, scene.fired)}
        wrong += not right
        judged_text = " / ".join(f"{v}, {rules_text(f)}" for v, f in sorted(outcomes, key=str))
        found = Counter(d.label for d in rows[0].detections)
        print(
            f"| {scene.name} | {scene.shows} | {scene.verdict}, {rules_text(scene.fired)} "
            f"| {judged_text} | {', '.join(f'{n} {c}' for c, n in sorted(found.items())) or '-'} "
            f"| {'yes' if right else 'NO'} ({len(rows)} stored) |"
        )
    return 1 if wrong else 0


if __name__ == "__main__":
    raise SystemExit(main())
