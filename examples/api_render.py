"""Render a small batch from Python with the edtalk API (docs/api.md).

    python examples/api_render.py            # writes examples/out/api/*.mp4, then resumes

Uses the official weights when installed, otherwise the built-in demo model. Run it twice: the
second run skips both jobs, because their outputs are up to date.
"""

from __future__ import annotations

from pathlib import Path

import edtalk_cli as edtalk

HERE = Path(__file__).resolve().parent

manifest = {
    "defaults": {
        "source": {"path": "media/face.png", "crop": "none"},  # already a face crop
        "audio": "media/speech.wav",
        "output": "out/api/{name}.mp4",
    },
    "jobs": [
        {"name": "warm", "preset": "warm-presenter"},
        {
            "name": "moods",
            "emotion": "neutral",
            "segments": [
                {"start": 0, "end": 3, "emotion": "happy"},
                {"start": 5, "emotion": {"preset": "sad", "intensity": 0.6}},
            ],
        },
    ],
}


def main() -> None:
    problems = edtalk.validate(manifest, base_dir=HERE)
    for problem in problems:
        print(problem.format())  # file, field path, what is wrong and how to fix it
    if problems:
        raise SystemExit(1)

    def on_event(name: str, payload: dict) -> None:
        if name in ("job_done", "job_skipped", "job_failed"):
            print(f"{payload['name']}: {payload['status']} {payload.get('error') or payload['output']}")

    report = edtalk.render(manifest, base_dir=HERE, on_event=on_event, devices="cpu")
    print(f"{len(report.by_status('done'))} rendered, {len(report.by_status('skipped'))} up to date")

    # frames without a file: e.g. to composite or stream them yourself
    first = next(edtalk.frames(manifest["defaults"] | manifest["jobs"][0], base_dir=HERE, devices="cpu"))
    print(f"first frame of 'warm': {first.image.shape} {first.image.dtype} at {first.time_s:.2f}s")
    raise SystemExit(0 if report.ok else 1)


if __name__ == "__main__":
    main()
