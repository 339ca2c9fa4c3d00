"""The recorded speech in ../shared/speech_dev, with reference transcripts."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

# ../shared/speech_dev beside the checkout (as CI lays it out), or where VOXSERVE_SPEECH_DEV points.
SPEECH_DEV = Path(
    os.environ.get("VOXSERVE_SPEECH_DEV", Path(__file__).resolve().parents[2] / "shared" / "speech_dev")
)


@dataclass(frozen=True)
class Utterance:
    path: Path
    text: str


def utterances() -> list[Utterance]:
    out = []
    for line in (SPEECH_DEV / "manifest.jsonl").read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            out.append(Utterance(SPEECH_DEV / row["audio"], row["text"]))
    return out


def by_name(name: str) -> Utterance:
    for u in utterances():
        if u.path.name == name:
            return u
    raise KeyError(name)
