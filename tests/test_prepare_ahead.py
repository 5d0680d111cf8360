"""A job's audio features, photo crops and a dubbing source's face track are prepared while the job before it renders: by the
inline worker itself, and for worker pools (loky) by the runner's parent process.

Real renders with the small random-init model (``tiny_weights``), a real photo cropped with dlib
landmarks, real ffmpeg. ``$EDTALK_PREPARE_AHEAD=1`` forces the overlap on the CPU.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli, write_speech_clips
from PIL import Image

from edtalk_cli.manifest import load_manifest
from edtalk_cli.runner import BatchRunner, RunOptions, worker
from edtalk_cli.runner.worker import PREPARE_AHEAD_ENV
from edtalk_cli.video import iter_video_frames

REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "real"


@pytest.fixture(scope="module")
def media(tmp_path_factory, parity) -> Path:
    """crop.png (a 256x256 face crop), a real photo at 840x1024, a grey photo without a face,
    speech of 12 and 16 frames and an undecodable broken.wav."""
    root = tmp_path_factory.mktemp("prepare_media")
    Image.open(parity / "source.png").save(root / "crop.png")
    Image.new("RGB", (200, 200), (128, 128, 128)).save(root / "blank.png")
    Image.open(REAL / "uncrop_face.jpg").save(root / "photo.png")
    write_speech_clips(root, parity, (12, 16))
    (root / "broken.wav").write_bytes(np.random.default_rng(0).bytes(3000))  # fixed, undecodable bytes
    return root


def _manifest(directory: Path, media: Path, out: str, jobs: list[tuple[str, str, str]]) -> Path:
    """jobs: (name, audio file, source block)."""
    lines = ["version: 1", "defaults:", f'  output: "{out}/{{name}}.mp4"', "jobs:"]
    for name, audio, source in jobs:
        lines += [f"  - name: {name}", f"    audio: {media / audio}", f"    source: {source}"]
    path = directory / f"{out}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _run(
    manifest: Path, weights: Path, *, ahead: bool, monkeypatch, devices: str = "cpu"
) -> tuple[list, list[tuple]]:
    """Outcomes and the (event, payload, wall-clock time) stream of a run on ``devices`` (one CPU:
    inline; ``cpu,cpu``: two loky workers)."""
    monkeypatch.setenv(PREPARE_AHEAD_ENV, "1" if ahead else "0")
    monkeypatch.setattr(worker, "_renderers", {})  # the run loads its model (and prepares meanwhile)
    events: list[tuple] = []
    runner = BatchRunner(RunOptions(devices=devices, weights=weights, batch_size=4, cache=False))
    outcomes = runner.run(
        list(load_manifest(manifest).jobs), on_event=lambda e, p: events.append((e, p, time.time()))
    )
    return outcomes, events


def test_jobs_prepared_ahead_render_the_same_frames_and_overlap_the_job_before(
    tmp_path, media, tiny_weights, monkeypatch
):
    jobs = [
        ("first", "s12.wav", f"{{path: {media / 'crop.png'}, crop: none}}"),
        ("photo", "s16.wav", f"{{path: {media / 'photo.png'}}}"),  # dlib landmarks, aligned, pasted back
        ("last", "s12.wav", f"{{path: {media / 'photo.png'}, crop: box}}"),
    ]
    plain, plain_events = _run(
        _manifest(tmp_path, media, "plain", jobs), tiny_weights, ahead=False, monkeypatch=monkeypatch
    )
    ahead, ahead_events = _run(
        _manifest(tmp_path, media, "ahead", jobs), tiny_weights, ahead=True, monkeypatch=monkeypatch
    )
    assert [o.status for o in plain] == [o.status for o in ahead] == ["done"] * 3
    for a, b in zip(plain, ahead, strict=True):
        frames_a = np.stack(list(iter_video_frames(a.output)))
        frames_b = np.stack(list(iter_video_frames(b.output)))
        assert frames_a.shape == frames_b.shape and len(frames_a) == a.frames
        assert np.array_equal(frames_a, frames_b), a.name
    assert frames_a.shape[1:3] == (1024, 840)  # pasted back into the real photo

    assert not any(e == "job_prepared_ahead" for e, _, _ in plain_events)
    prepared = {p["name"]: p for e, p, _ in ahead_events if e == "job_prepared_ahead"}
    assert sorted(prepared) == ["first", "last", "photo"]
    # the first job was prepared while its model loaded
    loaded_at = next(t for e, _, t in ahead_events if e == "model_loaded")
    assert prepared["first"]["started"] < loaded_at
    done_at = {p["name"]: t for e, p, t in ahead_events if e == "job_done"}
    # each job's preparation began while the job before it was still rendering (one job ahead)
    assert prepared["photo"]["started"] < done_at["first"]
    assert done_at["first"] < prepared["last"]["started"] < done_at["photo"]
    assert prepared["photo"]["ready"] >= prepared["photo"]["started"]


def test_a_job_with_corrupt_audio_prepared_ahead_fails_alone_with_its_usual_error(
    tmp_path, media, tiny_weights, monkeypatch
):
    crop = f"{{path: {media / 'crop.png'}, crop: none}}"
    jobs = [("before", "s12.wav", crop), ("corrupt", "broken.wav", crop), ("after", "s12.wav", crop)]
    plain, _ = _run(
        _manifest(tmp_path, media, "plain", jobs), tiny_weights, ahead=False, monkeypatch=monkeypatch
    )
    ahead, events = _run(
        _manifest(tmp_path, media, "ahead", jobs), tiny_weights, ahead=True, monkeypatch=monkeypatch
    )
    assert [o.status for o in ahead] == ["done", "failed", "done"]
    assert [o.frames for o in ahead] == [12, 0, 12]
    failed = ahead[1]
    assert "jobs[1].audio: could not decode audio" in failed.error and "broken.wav" in failed.error
    assert failed.error == plain[1].error.replace("plain.yaml", "ahead.yaml")  # as without overlap
    assert not Path(failed.output).exists()
    # its audio was read in the background while 'before' rendered ('before' while the model loaded);
    # the error surfaced in its own task
    assert {p["name"] for e, p, _ in events if e == "job_prepared_ahead"} == {"before", "corrupt", "after"}


def test_dubbing_jobs_prepared_ahead_render_the_same_and_a_faceless_source_fails_alone(
    tmp_path, media, tiny_weights, monkeypatch
):
    import imageio_ffmpeg

    faceless = tmp_path / "faceless.mp4"  # 1 s of a grey picture: no face to track
    ffmpeg = [
        imageio_ffmpeg.get_ffmpeg_exe(),
        "-v",
        "error",
        "-f",
        "lavfi",
        "-i",
        "color=c=gray:s=128x128:r=25:d=1",
    ]
    subprocess.run([*ffmpeg, "-pix_fmt", "yuv420p", str(faceless)], check=True)
    crop = f"{{path: {media / 'crop.png'}, crop: none}}"
    jobs = [
        ("first", "s12.wav", crop),
        ("dub", "s16.wav", f"{{path: {REAL / 'mouth_source.mp4'}, paste_back: true}}"),
        ("faceless", "s12.wav", f"{{path: {faceless}, paste_back: true}}"),
        ("last", "s12.wav", crop),
    ]
    plain, _ = _run(
        _manifest(tmp_path, media, "plain", jobs), tiny_weights, ahead=False, monkeypatch=monkeypatch
    )
    ahead, events = _run(
        _manifest(tmp_path, media, "ahead", jobs), tiny_weights, ahead=True, monkeypatch=monkeypatch
    )
    assert [o.status for o in ahead] == [o.status for o in plain] == ["done", "done", "failed", "done"]
    for a, b in zip(plain, ahead, strict=True):
        if a.status == "done":
            assert np.array_equal(
                np.stack(list(iter_video_frames(a.output))), np.stack(list(iter_video_frames(b.output)))
            )
    assert ahead[1].frames == 16
    failed = ahead[2]
    assert "no face found in any of the" in failed.error and "faceless.mp4" in failed.error
    assert failed.error == plain[2].error.replace("plain.yaml", "ahead.yaml")
    assert not Path(failed.output).exists()
    prepared = {p["name"]: p for e, p, _ in events if e == "job_prepared_ahead"}
    done_at = {p["name"]: t for e, p, t in events if e == "job_done"}
    assert prepared["dub"]["started"] < done_at["first"]  # tracked while the job before rendered


def test_a_dubbing_source_tracked_ahead_is_cut_the_same_without_tracking_again(tmp_path, media) -> None:
    from edtalk_cli.pipeline.faces import VideoFaceSource
    from edtalk_cli.pipeline.render import prepare_job
    from edtalk_cli.video import FaceDetector

    class Refusing(FaceDetector):
        def detect_faces(self, image):
            raise AssertionError("the source was tracked again")

    path = REAL / "mouth_source.mp4"
    manifest = _manifest(tmp_path, media, "dub", [("dub", "s12.wav", f"{{path: {path}, paste_back: true}}")])
    prepared = prepare_job(load_manifest(manifest).jobs[0], 64)
    assert prepared.num_frames == 12 and prepared.video_track() is not None
    ahead = VideoFaceSource(
        path, fps=25, size=64, detector=Refusing("dlib"), max_frames=12, track=prepared.video_track()
    )
    own = VideoFaceSource(path, fps=25, size=64, detector=FaceDetector("dlib"), max_frames=12)
    assert ahead.num_frames == own.num_frames == 12 + 32 and ahead.found.all()  # the smoothing margin
    assert np.array_equal(ahead.landmarks, own.landmarks)
    assert np.array_equal(ahead.crops(range(12)), own.crops(range(12)))


# ----- worker pools: the runner's parent prepares the tasks it hands out next ------------------
def _pool_run(
    manifest: Path, weights: Path, *, ahead: bool, cache: Path, force: bool = False
) -> tuple[int, list[tuple[dict, float]], dict[str, dict]]:
    """A 2-worker loky run (``--devices cpu,cpu``): exit code, the --log-json events each with the
    wall-clock time it arrived, and the report's rows by job name."""
    report = manifest.with_suffix(".report.json")
    args = ["render", manifest, "--weights", weights, "--devices", "cpu,cpu", "--batch-size", "4"]
    args += ["--log-json", "--report", report, *(["--force"] if force else [])]
    env = {PREPARE_AHEAD_ENV: "1" if ahead else "0", "EDTALK_CACHE": str(cache)}
    proc = run_cli(*args, cwd=manifest.parent, background=True, **env)
    assert proc.stdout is not None
    events = [(json.loads(line), time.time()) for line in proc.stdout if line.startswith("{")]
    code = proc.wait(timeout=300)
    rows = {row["name"]: row for row in json.loads(report.read_text())["jobs"]}
    return code, events, rows


def _prepared(events: list[tuple[dict, float]]) -> dict[str, dict]:
    return {e["name"]: e for e, _ in events if e["event"] == "job_prepared_ahead"}


@pytest.mark.slow
def test_a_pool_renders_jobs_prepared_by_the_parent_the_same_and_a_bad_one_fails_alone(
    tmp_path, media, tiny_weights
):
    crop = f"{{path: {media / 'crop.png'}, crop: none}}"
    jobs = [
        ("first", "s12.wav", crop),
        ("photo", "s16.wav", f"{{path: {media / 'photo.png'}}}"),  # dlib landmarks, aligned, pasted back
        ("noface", "s12.wav", f"{{path: {media / 'blank.png'}}}"),
        ("boxed", "s12.wav", f"{{path: {media / 'photo.png'}, crop: box}}"),
        ("last", "s16.wav", crop),
    ]
    plain_code, plain_events, plain = _pool_run(
        _manifest(tmp_path, media, "plain", jobs), tiny_weights, ahead=False, cache=tmp_path / "c1"
    )
    code, events, ahead = _pool_run(
        _manifest(tmp_path, media, "ahead", jobs), tiny_weights, ahead=True, cache=tmp_path / "c2"
    )
    assert plain_code == code == 1  # one job failed
    expected = {"first": "done", "photo": "done", "noface": "failed", "boxed": "done", "last": "done"}
    assert {n: r["status"] for n, r in ahead.items()} == expected
    assert {n: r["status"] for n, r in plain.items()} == expected
    assert len({r["worker"] for r in ahead.values() if r["worker"]}) == 2  # both pool workers rendered
    for name in ("first", "photo", "boxed", "last"):
        frames_a = np.stack(list(iter_video_frames(plain[name]["output"])))
        frames_b = np.stack(list(iter_video_frames(ahead[name]["output"])))
        assert len(frames_b) == ahead[name]["frames"] == plain[name]["frames"]
        assert np.array_equal(frames_a, frames_b), name
    # the bad job failed in its worker with its usual message; nothing was written for it
    failed = ahead["noface"]
    assert "jobs[2].source.path: no face found in" in failed["error"] and "blank.png" in failed["error"]
    assert failed["error"] == plain["noface"]["error"].replace("plain.yaml", "ahead.yaml")
    assert not Path(failed["output"]).exists()

    assert _prepared(plain_events) == {}
    prepared = _prepared(events)
    # the jobs after the first two were prepared while those rendered (the first two may go out
    # before their preparation starts: their workers then prepare them)
    assert {"noface", "boxed", "last"} <= set(prepared)
    started_at = {e["name"]: t for e, t in events if e["event"] == "job_start"}
    for name, event in prepared.items():
        assert event["started"] <= event["ready"] < started_at[name], name


@pytest.mark.slow
def test_a_job_with_corrupt_audio_prepared_by_a_pools_parent_fails_alone_with_its_usual_error(
    tmp_path, media, tiny_weights, monkeypatch
):
    crop = f"{{path: {media / 'crop.png'}, crop: none}}"
    jobs = [("one", "s12.wav", crop), ("two", "s12.wav", crop)]
    jobs += [("corrupt", "broken.wav", crop), ("after", "s16.wav", crop)]
    plain, _ = _run(
        _manifest(tmp_path, media, "plain", jobs),
        tiny_weights,
        ahead=False,
        monkeypatch=monkeypatch,
        devices="cpu,cpu",
    )
    ahead, events = _run(
        _manifest(tmp_path, media, "ahead", jobs),
        tiny_weights,
        ahead=True,
        monkeypatch=monkeypatch,
        devices="cpu,cpu",
    )
    assert next(p for e, p, _ in events if e == "run_start")["backend"] == "loky"
    assert [o.status for o in ahead] == [o.status for o in plain] == ["done", "done", "failed", "done"]
    assert [o.frames for o in ahead] == [12, 12, 0, 16]
    failed = ahead[2]
    assert "jobs[2].audio: could not decode audio" in failed.error and "broken.wav" in failed.error
    assert failed.error == plain[2].error.replace("plain.yaml", "ahead.yaml")
    assert not Path(failed.output).exists()
    # its audio was read in the parent while the first two rendered; the error surfaced in its worker
    assert {"corrupt", "after"} <= {p["name"] for e, p, _ in events if e == "job_prepared_ahead"}


@pytest.mark.slow
def test_a_pool_reports_the_same_cache_use_per_job_with_the_parent_preparing(
    tmp_path, media, tiny_weights, monkeypatch
):
    jobs = [
        ("first", "s12.wav", f"{{path: {media / 'crop.png'}, crop: none}}"),
        ("photo", "s16.wav", f"{{path: {media / 'photo.png'}}}"),
        ("boxed", "s12.wav", f"{{path: {media / 'photo.png'}, crop: box}}"),
    ]
    use: dict[bool, list[dict[str, dict]]] = {}
    for ahead in (False, True):
        monkeypatch.setenv(PREPARE_AHEAD_ENV, "1" if ahead else "0")
        manifest = load_manifest(_manifest(tmp_path, media, f"run{int(ahead)}", jobs))
        use[ahead] = []
        for force in (False, True):  # the first run fills the job's own cache, the second reads it
            options = RunOptions(
                devices="cpu,cpu", weights=tiny_weights, batch_size=4, cache_root=tmp_path / f"c{int(ahead)}"
            )
            events: list[tuple[str, dict]] = []
            outcomes = BatchRunner(options, force=force).run(
                list(manifest.jobs), on_event=lambda e, p, _events=events: _events.append((e, p))
            )
            assert [o.status for o in outcomes] == ["done"] * 3
            use[ahead].append({o.name: o.cache for o in outcomes})
            prepared = {p["name"] for e, p in events if e == "job_prepared_ahead"}
            assert ("boxed" in prepared) is ahead  # the third job was prepared by the parent
    assert use[True] == use[False]
    first, second = use[True]
    # the crops counted by the parent, the source encoding by the worker: all missed, then all hit
    assert first["boxed"] == {"hits": {}, "misses": {"crops": 1, "encodings": 1}}
    assert second["boxed"] == {"hits": {"crops": 1, "encodings": 1}, "misses": {}}


@pytest.mark.slow
def test_fail_fast_drops_the_jobs_a_pools_parent_prepared_and_returns(
    tmp_path, media, tiny_weights, monkeypatch
):
    monkeypatch.setenv(PREPARE_AHEAD_ENV, "1")
    crop = f"{{path: {media / 'crop.png'}, crop: none}}"
    names = ["one", "corrupt", "three", "four", "five"]
    audio = {"corrupt": "broken.wav", "one": "s16.wav"}
    manifest = _manifest(tmp_path, media, "ff", [(n, audio.get(n, "s12.wav"), crop) for n in names])
    options = RunOptions(devices="cpu,cpu", weights=tiny_weights, batch_size=4, cache=False, fail_fast=True)
    outcomes = BatchRunner(options).run(list(load_manifest(manifest).jobs))
    status = {o.name: o.status for o in outcomes}
    assert (status["one"], status["corrupt"]) == ("done", "failed")
    # joblib takes tasks two at a time, so "three" and "four" may have gone out before the failure
    # came back; "five" was prepared (or being prepared) in the parent and dropped unrun
    assert status["five"] == "cancelled" and "--fail-fast" in outcomes[-1].error
    assert {status["three"], status["four"]} <= {"done", "cancelled"}
    out = tmp_path / "ff"
    written = sorted(p.name for p in out.iterdir())  # no lock, no temporary file left
    assert written == sorted(
        f"{n}.mp4{ext}" for n in names if status[n] == "done" for ext in ("", ".edtalk.json")
    )


@pytest.mark.slow
def test_mels_computed_in_one_thread_while_another_starts_ffmpeg_children_all_finish(tmp_path) -> None:
    # OpenBLAS stops its threads before a fork (every ffmpeg child is forked): with threaded BLAS,
    # a mel computed meanwhile in another thread waited forever (reproduced within seconds)
    script = tmp_path / "forks.py"
    script.write_text(
        "import sys, threading, time\n"
        "from threadpoolctl import threadpool_info\n"
        "from edtalk_cli.audio.features import melspectrogram\n"
        "from edtalk_cli.audio.loading import load_audio\n"
        "from edtalk_cli.video._ffmpeg import run_ffmpeg\n"
        "import edtalk_cli.pipeline\n"
        "print([i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas'])\n"
        "wav = load_audio(sys.argv[1])\n"
        "done = threading.Event()\n"
        "def mels():\n"
        "    for _ in range(60):\n"
        "        melspectrogram(wav)\n"
        "    done.set()\n"
        "threading.Thread(target=mels, daemon=True).start()\n"
        "forks, started = 0, time.time()\n"
        "while not done.is_set() and time.time() - started < 60:\n"
        "    run_ffmpeg(['-version'])\n"
        "    forks += 1\n"
        "print('finished' if done.wait(1) else 'waiting', forks)\n"
    )
    run = subprocess.run(
        [sys.executable, str(script), str(REAL / "mouth_source.wav")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    blas_threads, outcome = run.stdout.strip().splitlines()
    assert blas_threads in ("[1]", "[]")  # one BLAS thread once the pipeline is imported
    assert outcome.split()[0] == "finished" and int(outcome.split()[1]) > 10, outcome
