"""The batch runner: worker pools, resume after kill -9, concurrent runs, retries, dask, chunks, cache.

Real processes, real files, real ffmpeg and a small random-init model (``tiny_weights``).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import run_cli, write_speech_clips
from PIL import Image
from typer.testing import CliRunner

from edtalk_cli.audio import load_audio
from edtalk_cli.hashing import FileHasher
from edtalk_cli.manifest import load_manifest
from edtalk_cli.pipeline.options import RenderOptions
from edtalk_cli.pipeline.render import JobRenderer
from edtalk_cli.runner import BatchRunner, RunOptions, parse_devices
from edtalk_cli.runner.cache import ContentCache, cache_info
from edtalk_cli.runner.chunks import plan_chunks
from edtalk_cli.runner.devices import claim_slot, slots_dir, worker_slots
from edtalk_cli.runner.fingerprint import read_sidecar, sidecar_path, sidecar_status
from edtalk_cli.runner.locks import OutputLock, lock_path
from edtalk_cli.video import iter_video_frames, probe_mp4, write_mp4
from edtalk_cli.weights.bundle import ModelBundle

SR = 16000


@pytest.fixture(scope="module")
def media(tmp_path_factory, parity) -> Path:
    """face.png (a 256x256 crop) and speech clips of 32, 24, 20 and 16 frames at 25 fps."""
    root = tmp_path_factory.mktemp("batch_media")
    Image.open(parity / "source.png").save(root / "face.png")
    write_speech_clips(root, parity, (32, 24, 20, 16))
    return root


def _manifest(
    directory: Path, media: Path, jobs: list[tuple[str, int, str | None]], name="batch.yaml"
) -> Path:
    """jobs: (name, frames of audio, emotion or None)."""
    lines = [
        "version: 1",
        "defaults:",
        f"  source: {{path: {media / 'face.png'}, crop: none}}",
        '  output: "out/{name}.mp4"',
        "jobs:",
    ]
    for job, frames, emotion in jobs:
        lines.append(f"  - name: {job}")
        lines.append(f"    audio: {media / f's{frames}.wav'}")
        if emotion:
            lines.append(f"    emotion: {emotion}")
    path = directory / name
    path.write_text("\n".join(lines) + "\n")
    return path


def _events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def _statuses(report: Path) -> dict[str, dict]:
    return {j["name"]: j for j in json.loads(report.read_text())["jobs"]}


def _trusted(output: Path) -> bool:
    return sidecar_status(output, (read_sidecar(output) or {}).get("fingerprint", ""), FileHasher())[0]


# ----- worker pool, report, resume --------------------------------------------------------------
@pytest.mark.slow
def test_two_cpu_workers_render_a_batch_then_rerun_skips(tmp_path, media, tiny_weights):
    jobs = [("a", 32, None), ("b", 20, "happy"), ("c", 16, "sad"), ("d", 24, None), ("a_twin", 32, None)]
    manifest = _manifest(tmp_path, media, jobs)
    report, table = tmp_path / "report.json", tmp_path / "report.csv"
    args = [
        "render",
        str(manifest),
        "--weights",
        str(tiny_weights),
        "--devices",
        "cpu,cpu",
        "--batch-size",
        "4",
    ]
    first = run_cli(
        *args,
        "--chunk-frames",
        "12",
        "--log-json",
        "--report",
        str(report),
        "--report-csv",
        str(table),
        cwd=tmp_path,
    )
    assert first.returncode == 0, first.stderr
    events = _events(first.stdout)
    start = next(e for e in events if e["event"] == "run_start")
    assert start["backend"] == "loky" and start["slots"] == ["cpu", "cpu"]
    # two worker processes, each loaded the model exactly once and kept it for all its jobs
    loads = Counter(e["pid"] for e in events if e["event"] == "model_loaded")
    assert len(loads) == 2 and set(loads.values()) == {1}
    done = [e for e in events if e["event"] == "job_done"]
    assert len(done) == 5
    workers = {int(w.rsplit(":", 1)[1]) for e in done for w in e["worker"].split(", ")}
    assert workers == set(loads)
    for name, frames, _ in jobs:
        out = tmp_path / "out" / f"{name}.mp4"
        info = probe_mp4(out)
        assert info["video"]["frames"] == frames and abs(info["audio"]["duration_s"] - frames / 25) <= 0.04
        assert _trusted(out)
    status = _statuses(report)
    assert {s["status"] for s in status.values()} == {"done"}
    # a (32 frames) went out as 3 batch-aligned chunks of <= 12 frames, on both workers
    assert status["a"]["chunks"] == 3 and status["c"]["chunks"] == 2  # 16 frames: [0, 12), [12, 16)
    assert status["a"]["frames"] == 32 and status["a"]["frames_per_s"] > 0
    assert set(status["a"]["inputs"]) == {"source.path", "audio"}
    assert status["a"]["inputs"]["audio"]["path"] == str(media / "s32.wav")
    # name and output do not enter the fingerprint: twins share it
    assert status["a"]["fingerprint"] == status["a_twin"]["fingerprint"] != status["d"]["fingerprint"]
    assert read_sidecar(tmp_path / "out" / "a.mp4")["fingerprint"] == status["a"]["fingerprint"]
    rows = list(csv.DictReader(table.open()))
    assert [r["name"] for r in rows] == [j[0] for j in jobs]
    assert {r["status"] for r in rows} == {"done"} and rows[1]["frames"] == "20"
    assert rows[0]["inputs"].startswith("source.path=") and "audio=" in rows[0]["inputs"]
    assert not list((tmp_path / "out").glob(".*"))  # no locks, chunk folders or temp files left
    # the joined chunks are the unsplit render, frame for frame (same model, threads and encoder)
    job = load_manifest(manifest).jobs[0]
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // 2))  # what each of the two workers used
    try:
        JobRenderer(ModelBundle.from_dir(tiny_weights), options=RenderOptions(batch_size=4)).render(
            job.model_copy(update={"output": tmp_path / "whole.mp4"})
        )
    finally:
        torch.set_num_threads(threads)
    chunked = np.stack(list(iter_video_frames(tmp_path / "out" / "a.mp4")))
    assert chunked.shape == (32, 256, 256, 3)  # crop: none keeps the 256x256 source size
    assert np.array_equal(chunked, np.stack(list(iter_video_frames(tmp_path / "whole.mp4"))))

    # a dry run now plans to skip everything
    from edtalk_cli.cli import app

    plan = CliRunner().invoke(app, [*args, "--dry-run", "--log-json"])
    assert plan.exit_code == 0, plan.output
    planned = json.loads(plan.stdout.strip().splitlines()[-1])
    assert {j["action"] for j in planned["jobs"]} == {"skip"} and planned["estimate_s"] == 0.0

    # rerun: everything is up to date; then an edited input re-renders only its job
    mtimes = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out").glob("*.mp4")}
    second = run_cli(*args, "--devices", "cpu", "--report", str(report), cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert {s["status"] for s in _statuses(report).values()} == {"skipped"}
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out").glob("*.mp4")} == mtimes
    speech = load_audio(media / "s20.wav")
    edited = tmp_path / "edited"
    edited.mkdir()
    sf.write(edited / "s20.wav", speech[::-1].copy(), SR)  # same length, other content
    manifest.write_text(manifest.read_text().replace(str(media / "s20.wav"), str(edited / "s20.wav")))
    third = run_cli(*args, "--devices", "cpu", "--report", str(report), "--no-cache", cwd=tmp_path)
    assert third.returncode == 0, third.stderr
    status = _statuses(report)
    assert status["b"]["status"] == "done" and status["b"]["attempts"] == 1
    assert {status[n]["status"] for n in ("a", "c", "d", "a_twin")} == {"skipped"}


def test_chunks_cut_on_batches_render_exactly_the_frames_of_the_unsplit_job(tmp_path, media, tiny_weights):
    manifest = _manifest(tmp_path, media, [("long", 16, "happy")])
    job = load_manifest(manifest).jobs[0]
    renderer = JobRenderer(ModelBundle.from_dir(tiny_weights), options=RenderOptions(batch_size=4))
    produced = renderer.frames(job)
    frames, count = produced.images, produced.count
    whole = np.stack(list(frames))
    assert count == 16 == len(whole)
    ranges = plan_chunks(16, 6, 4)
    assert ranges == [(0, 4), (4, 8), (8, 12), (12, 16)]  # cut at multiples of the batch size
    parts = []
    for start, stop in reversed(ranges):  # any order, any renderer state
        produced = renderer.frames(job, (start, stop))
        chunk, n = produced.images, produced.count
        parts.insert(0, np.stack(list(chunk)))
        assert n == stop - start == len(parts[0])
    assert np.array_equal(np.concatenate(parts), whole)
    # the engine is deterministic per batch wherever the batch sits in the job
    again = np.stack(list(renderer.frames(job, (8, 16)).images))
    assert np.array_equal(again, whole[8:16])
    with pytest.raises(ValueError, match="not inside the job's 16 frames"):
        renderer.frames(job, (12, 20))

    # a video source (dubbing): the chunks follow the source clip's ping-pong order too
    face = np.asarray(Image.open(media / "face.png").convert("RGB"))
    write_mp4((np.roll(face, 9 * k, axis=1) for k in range(6)), tmp_path / "clip.mp4", 25)
    text = manifest.read_text().replace(f"path: {media / 'face.png'}", f"path: {tmp_path / 'clip.mp4'}")
    (tmp_path / "dub.yaml").write_text(text)
    dub = load_manifest(tmp_path / "dub.yaml").jobs[0]
    assert dub.source.kind == "video"
    whole = np.stack(list(renderer.frames(dub).images))
    parts = [np.stack(list(renderer.frames(dub, r).images)) for r in ranges]
    assert whole.shape == (16, 256, 256, 3) and np.array_equal(np.concatenate(parts), whole)


# ----- kill -9 and resume -------------------------------------------------------------------------
@pytest.mark.slow
def test_kill_9_mid_batch_then_rerun_finishes_without_corrupt_files(tmp_path, media, tiny_weights):
    jobs = [(f"j{i}", 24, e) for i, e in enumerate(["happy", "sad", None])]
    manifest = _manifest(tmp_path, media, jobs)
    args = ["render", str(manifest), "--weights", str(tiny_weights), "--devices", "cpu", "--batch-size", "2"]
    # j1 pauses after 4 of its 24 frames (a test fault), so the kill lands mid-job on any machine
    proc = run_cli(
        *args,
        "--log-json",
        cwd=tmp_path,
        background=True,
        stderr=subprocess.DEVNULL,
        EDTALK_FAULTS="j1:STALL:1:4",
    )
    finished = 0
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            event = json.loads(line)
            finished += event["event"] == "job_done"
            if event["event"] == "job_progress" and event["name"] == "j1" and event["done"] == 4:
                break  # the second job is half rendered and held there
        else:
            pytest.fail("the batch ended before it could be killed")
        assert finished == 1  # j0 is done, j2 (after j1 on the single worker) has not started
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    out = tmp_path / "out"
    # right after the kill: every visible mp4 is complete and trusted; the half job left only hidden files
    visible = sorted(p.name for p in out.glob("*.mp4") if not p.name.startswith("."))
    assert visible == ["j0.mp4"] and _trusted(out / "j0.mp4")
    assert lock_path(out / "j1.mp4").exists()  # the dead process's lock, to be found stale
    time.sleep(0.5)  # let an orphaned ffmpeg see its input close

    report = tmp_path / "report.json"
    rerun = run_cli(*args, "--report", str(report), cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    status = _statuses(report)
    assert status["j0"]["status"] == "skipped"
    assert [status[f"j{i}"]["status"] for i in (1, 2)] == ["done"] * 2
    for i in range(3):
        assert probe_mp4(out / f"j{i}.mp4")["video"]["frames"] == 24 and _trusted(out / f"j{i}.mp4")
    leftovers = sorted(p.name for p in out.iterdir() if not p.name.endswith((".mp4", ".mp4.edtalk.json")))
    assert leftovers == [] and not list(out.glob(".*"))  # no .part.mp4, no lock


# ----- two processes on the same outputs ------------------------------------------------------------
@pytest.mark.slow
def test_two_concurrent_runs_never_render_a_job_twice(tmp_path, media, tiny_weights):
    jobs = [(f"k{i}", 16, e) for i, e in enumerate(["happy", "sad", "angry", None])]
    manifest = _manifest(tmp_path, media, jobs)
    procs = []
    slow = ";".join(
        f"{name}:STALL:1:8:1.5" for name, _, _ in jobs
    )  # every job takes >= 1.5 s: the runs overlap
    for tag in ("one", "two"):
        args = ["render", str(manifest), "--weights", str(tiny_weights), "--devices", "cpu", "-q"]
        args += ["--report", str(tmp_path / f"{tag}.json")]
        procs.append(
            run_cli(*args, cwd=tmp_path, background=True, stdout=subprocess.DEVNULL, EDTALK_FAULTS=slow)
        )
    for proc in procs:
        _, err = proc.communicate(timeout=400)
        assert proc.returncode == 0, err
    one, two = _statuses(tmp_path / "one.json"), _statuses(tmp_path / "two.json")
    for name, _, _ in jobs:
        pair = sorted([one[name]["status"], two[name]["status"]])
        assert pair == ["done", "skipped"], (name, pair)  # rendered by exactly one of them
        assert _trusted(tmp_path / "out" / f"{name}.mp4")
    assert 1 <= sum(s["status"] == "done" for s in one.values()) <= 3  # the work was shared
    assert not list((tmp_path / "out").glob(".*"))


# ----- failures --------------------------------------------------------------------------------------
def test_failures_are_isolated_transient_ones_retried_and_oom_halves_the_batch(
    tmp_path, media, tiny_weights, monkeypatch
):
    from edtalk_cli.cli import app

    (tmp_path / "broken.wav").write_bytes(
        np.random.default_rng(0).bytes(3000)
    )  # fixed bytes, never decodable
    manifest = _manifest(tmp_path, media, [("flaky", 16, None), ("oom", 16, "sad"), ("fine", 16, None)])
    manifest.write_text(manifest.read_text() + f"  - name: broken\n    audio: {tmp_path / 'broken.wav'}\n")
    monkeypatch.setenv("EDTALK_FAULTS", "flaky:OSError:1;oom:OOM:2")
    report = tmp_path / "report.json"
    args = [
        "render",
        str(manifest),
        "--weights",
        str(tiny_weights),
        "--devices",
        "cpu",
        "-q",
        "--batch-size",
        "8",
    ]
    result = CliRunner().invoke(app, [*args, "--retries", "1", "--report", str(report)])
    assert result.exit_code == 1  # one job failed
    status = _statuses(report)
    assert status["flaky"]["status"] == "done" and status["flaky"]["attempts"] == 2
    assert status["oom"]["status"] == "done" and status["oom"]["batch_size"] == 2  # 8 -> 4 -> 2
    assert any("halved to 2" in n for n in status["oom"]["notes"])
    assert status["fine"]["status"] == "done" and status["fine"]["attempts"] == 1
    assert (
        status["broken"]["status"] == "failed" and status["broken"]["attempts"] == 0
    )  # its audio header is unreadable: refused before rendering, never attempted nor retried
    assert "jobs[3].audio: job 'broken': cannot read audio" in status["broken"]["error"]
    assert "broken.wav" in status["broken"]["error"]
    assert probe_mp4(tmp_path / "out" / "flaky.mp4")["video"]["frames"] == 16
    assert sorted(p.name for p in (tmp_path / "out").glob("*.mp4")) == ["fine.mp4", "flaky.mp4", "oom.mp4"]

    # without retries the transient error fails its job; --fail-fast cancels the jobs after it
    monkeypatch.setenv("EDTALK_FAULTS", "flaky:OSError:1")
    result = CliRunner().invoke(app, [*args, "--force", "--fail-fast", "--report", str(report)])
    assert result.exit_code == 1
    status = _statuses(report)
    assert status["flaky"]["status"] == "failed" and "OSError: injected fault" in status["flaky"]["error"]
    assert [status[n]["status"] for n in ("oom", "fine")] == ["cancelled"] * 2
    assert status["broken"]["status"] == "failed"  # refused before the run (unreadable audio header)
    assert "fail-fast" in status["oom"]["error"]


# ----- dask ------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_dask_local_cluster_runs_the_jobs_on_its_workers(tmp_path, media, tiny_weights):
    distributed = pytest.importorskip("distributed")
    manifest = _manifest(tmp_path, media, [("x", 16, None), ("y", 16, "happy")])
    jobs = list(load_manifest(manifest).jobs)
    with (
        distributed.LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        worker_pids = set(client.run(os.getpid).values())
        options = RunOptions(devices="cpu", scheduler=cluster.scheduler_address, weights=tiny_weights)
        events: list[tuple[str, dict]] = []
        outcomes = BatchRunner(options).run(jobs, on_event=lambda e, p: events.append((e, p)))
    assert [o.status for o in outcomes] == ["done"] * 2
    used = {int(o.worker.rsplit(":", 1)[1]) for o in outcomes}
    assert used <= worker_pids and os.getpid() not in used
    loads = Counter(p["pid"] for e, p in events if e == "model_loaded")
    assert set(loads) == used and set(loads.values()) == {1}
    for o in outcomes:
        assert probe_mp4(o.output)["video"]["frames"] == 16 and _trusted(Path(o.output))


# ----- dry run ---------------------------------------------------------------------------------------
def test_dry_run_prints_frames_and_an_estimate_and_writes_nothing(tmp_path, media, tiny_weights, monkeypatch):
    from edtalk_cli.cli import app

    cache = tmp_path / "cache"
    monkeypatch.setenv("EDTALK_CACHE", str(cache))
    manifest = _manifest(tmp_path, media, [("p", 32, None), ("q", 20, "happy")])
    args = ["render", str(manifest), "--weights", str(tiny_weights), "--devices", "cpu,cpu", "--dry-run"]
    args += ["--batch-size", "2"]  # a quicker calibration
    result = CliRunner().invoke(app, [*args, "--log-json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout.strip().splitlines()[-1])
    assert [(j["name"], j["action"], j["frames"]) for j in plan["jobs"]] == [
        ("p", "render", 32),
        ("q", "render", 20),
    ]
    assert plan["frames"] == 52 and plan["slots"] == ["cpu", "cpu"]
    assert plan["calibration_fps"]["cpu"] > 0
    # two workers sharing the CPU: the longer job bounds the estimate
    assert plan["estimate_s"] == pytest.approx(2 * 32 / plan["calibration_fps"]["cpu"], rel=1e-6)
    text = CliRunner().invoke(app, args)
    assert text.exit_code == 0 and "frames to render: 52" in text.stdout and "estimated time" in text.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["batch.yaml"]  # no out/, report or cache

    (tmp_path / "broken.wav").write_bytes(
        np.random.default_rng(0).bytes(3000)
    )  # fixed bytes, never decodable
    manifest.write_text(manifest.read_text() + f"  - name: bad\n    audio: {tmp_path / 'broken.wav'}\n")
    bad = CliRunner().invoke(app, args)
    assert bad.exit_code == 1 and "broken.wav" in bad.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["batch.yaml", "broken.wav"]

    # an unknown --precision is refused by name before anything runs, with the choices
    fp8 = run_cli(*args, "--precision", "fp8", cwd=tmp_path)
    assert fp8.returncode == 1 and "--precision 'fp8' is unknown" in fp8.stderr and "tf32" in fp8.stderr
    assert "Traceback" not in fp8.stderr


# ----- content cache -----------------------------------------------------------------------------------
def test_jobs_sharing_a_pose_clip_hit_the_cache(tmp_path, media, tiny_weights, monkeypatch):
    from skimage import data

    from edtalk_cli.cli import app

    cache = tmp_path / "cache"
    monkeypatch.setenv("EDTALK_CACHE", str(cache))
    photo = data.astronaut()
    write_mp4((np.roll(photo, 3 * k, axis=1) for k in range(6)), tmp_path / "pose.mp4", 25)
    (tmp_path / "pose_copy.mp4").write_bytes((tmp_path / "pose.mp4").read_bytes())  # same content, new name
    manifest = _manifest(tmp_path, media, [("first", 16, None), ("second", 16, None)])
    text = manifest.read_text().replace("    audio:", "    pose: {video: POSE, mode: loop}\n    audio:")
    text = text.replace("POSE", str(tmp_path / "pose.mp4"), 1).replace(
        "POSE", str(tmp_path / "pose_copy.mp4"), 1
    )
    manifest.write_text(text)
    jobs = list(load_manifest(manifest).jobs)
    runner = BatchRunner(RunOptions(devices="cpu", weights=tiny_weights, batch_size=4))
    first, second = runner.run(jobs)
    assert first.status == second.status == "done"
    assert first.cache["misses"] == {"tracks": 1, "crops": 2, "encodings": 1}  # pose clip + source
    assert second.cache["hits"] == {"tracks": 1, "crops": 1, "encodings": 1} and not second.cache["misses"]
    # content-addressed: the copy is the same input, the same fingerprint, the same video
    assert first.fingerprint == second.fingerprint
    a, b = (np.stack(list(iter_video_frames(o.output))) for o in (first, second))
    assert np.array_equal(a, b)

    info = CliRunner().invoke(app, ["cache", "info", "--json"])
    found = json.loads(info.stdout)
    assert found["root"] == str(cache)
    assert (
        found["entries"]["tracks"] == 1
        and found["entries"]["crops"] == 2
        and found["entries"]["encodings"] == 1
    )
    assert found["total_bytes"] > 0
    cleared = CliRunner().invoke(app, ["cache", "clear"])
    assert cleared.exit_code == 0 and f"removed {found['total_entries']} entries" in cleared.stdout
    assert cache_info(cache).total_entries == 0


def test_cache_recomputes_a_corrupt_entry(tmp_path, media):
    cache = ContentCache(tmp_path / "cache")
    calls = []

    def compute():
        from edtalk_cli.pipeline.faces import face_crops

        calls.append(1)
        return face_crops(media / "face.png", size=32, crop="none")

    one = cache.crops(media / "face.png", {"size": 32}, compute)
    (entry,) = (tmp_path / "cache" / "crops").rglob("*.npz")
    two = cache.crops(media / "face.png", {"size": 32}, compute)
    assert len(calls) == 1 and np.array_equal(one.crops, two.crops) and two.crops.shape == (1, 32, 32, 3)
    entry.write_bytes(b"garbage")
    three = cache.crops(media / "face.png", {"size": 32}, compute)
    assert len(calls) == 2 and np.array_equal(three.crops, one.crops)
    assert cache.stats.snapshot() == {"hits": {"crops": 1}, "misses": {"crops": 2}}


# ----- locks, sidecars, devices (fast, in process) ----------------------------------------------------
def test_locks_respect_live_holders_and_break_stale_ones(tmp_path):
    out = tmp_path / "out" / "v.mp4"
    mine, other = OutputLock(out), OutputLock(out)
    assert mine.acquire() and not other.acquire()  # held by a live process (this one)
    holder, age = other.read()
    assert holder.pid == os.getpid() and age < 5
    mine.release()
    assert not lock_path(out).exists() and other.acquire()
    other.release()
    # a lock left by a dead process is stale at once
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    lock = lock_path(out)
    lock.write_text(
        json.dumps({"pid": int(dead.stdout), "host": socket.gethostname(), "token": "t", "created": 0})
    )
    assert mine.acquire() and json.loads(lock.read_text())["pid"] == os.getpid()
    mine.release()
    # a live holder on another host is trusted until its lock is not refreshed for stale_after
    lock.write_text(json.dumps({"pid": 1, "host": "elsewhere", "token": "u", "created": 0}))
    assert not OutputLock(out, stale_after=60).acquire()
    os.utime(lock, (time.time() - 120, time.time() - 120))
    assert OutputLock(out, stale_after=60).acquire()


def test_a_tampered_output_or_a_missing_sidecar_is_not_trusted(tmp_path, media, tiny_weights):
    manifest = _manifest(tmp_path, media, [("t", 16, None)])
    jobs = list(load_manifest(manifest).jobs)
    runner = BatchRunner(RunOptions(devices="cpu", weights=tiny_weights, cache=False))
    assert runner.run(jobs)[0].status == "done"
    out = jobs[0].output
    expected = runner.fingerprint(jobs[0]).digest
    assert sidecar_status(out, expected, FileHasher()) == (True, "up to date")
    with open(out, "r+b") as fh:  # flip a byte in the middle of the file
        fh.seek(out.stat().st_size // 2)
        byte = fh.read(1)
        fh.seek(-1, 1)
        fh.write(bytes([byte[0] ^ 0xFF]))
    ok, why = sidecar_status(out, expected, FileHasher())
    assert not ok and "differs" in why
    assert runner.run(jobs)[0].status == "done"  # re-rendered
    assert runner.run(jobs)[0].status == "skipped"
    sidecar_path(out).unlink()
    ok, why = sidecar_status(out, expected, FileHasher())
    assert not ok and "no valid sidecar" in why  # an mp4 without its sidecar is rendered again
    other_settings = BatchRunner(RunOptions(devices="cpu", weights=tiny_weights, precision="fp64"))
    assert other_settings.fingerprint(jobs[0]).digest != expected  # precision is part of the fingerprint


def _x264_options(mp4: Path) -> str:
    """The option string libx264 writes into the stream's SEI ("... crf=18.0 ...")."""
    data = mp4.read_bytes()
    start = data.index(b"options: ")
    return data[start : data.index(b"\x00", start)].decode("ascii", errors="replace")


@pytest.mark.parametrize("chunk_frames", [0, 8], ids=["whole", "chunked"])
def test_encode_settings_reach_the_encoder_and_the_fingerprint(tmp_path, media, tiny_weights, chunk_frames):
    manifest = _manifest(tmp_path, media, [("enc", 16, None)])
    default_job = load_manifest(manifest).jobs[0]
    runner = BatchRunner(
        RunOptions(devices="cpu", weights=tiny_weights, cache=False, chunk_frames=chunk_frames, batch_size=4)
    )
    assert runner.run([default_job])[0].status == "done"
    out = default_job.output
    options = _x264_options(out)
    assert " crf=18.0 " in options and " subme=7 " in options  # the default: crf 18, preset medium
    default_digest = runner.fingerprint(default_job).digest
    side = read_sidecar(out)
    assert "encode" not in side["components"]["settings"]  # the default encoder leaves old sidecars valid
    assert side["encoder"] == "libx264"  # the encoder that ran: recorded, outside the fingerprint

    text = manifest.read_text().replace("defaults:\n", "defaults:\n  encode: {crf: 30, preset: veryfast}\n")
    manifest.write_text(text)
    fast_job = load_manifest(manifest).jobs[0]
    assert runner.fingerprint(fast_job).digest != default_digest
    outcome = runner.run([fast_job])[0]
    assert outcome.status == "done"  # not skipped: the encoder settings are part of the fingerprint
    options = _x264_options(out)
    assert " crf=30.0 " in options and " subme=2 " in options  # veryfast's subpixel refinement
    info = probe_mp4(out)
    assert info["video"]["frames"] == 16 and info["video"]["codec"] == "h264"
    assert runner.run([fast_job])[0].status == "skipped"


def test_devices_and_slots(tmp_path):
    assert parse_devices("cpu,cpu") == ["cpu", "cpu"]
    assert worker_slots(["cuda:0", "cuda:1"], 2) == ["cuda:0", "cuda:1", "cuda:0", "cuda:1"]
    from edtalk_cli.errors import EdtalkError

    with pytest.raises(EdtalkError, match="'gpu7' is not a device"):
        parse_devices("cpu,gpu7")
    if not torch.cuda.is_available():
        with pytest.raises(EdtalkError, match="CUDA is not available"):
            parse_devices("cuda:0")
    # each claimant gets its own slot while the others hold theirs
    run = f"test{os.getpid()}"
    first = claim_slot(run, ["cpu", "cpu"])
    second = claim_slot(run, ["cpu", "cpu"])
    assert (first.index, second.index) == (0, 1) and not first.shared and not second.shared
    first.release()
    third = claim_slot(run, ["cpu", "cpu"])
    assert third.index == 0  # a released slot is taken over
    second.release()
    third.release()
    import shutil

    shutil.rmtree(slots_dir(run))


def test_jobs_locked_by_a_live_process_are_skipped_with_on_locked_skip(tmp_path, media, tiny_weights):
    manifest = _manifest(tmp_path, media, [("held", 16, None)])
    jobs = list(load_manifest(manifest).jobs)
    lock = lock_path(jobs[0].output)
    lock.parent.mkdir(parents=True)
    holder = {"pid": 1, "host": socket.gethostname(), "token": "x", "created": time.time()}  # init: alive
    lock.write_text(json.dumps(holder))
    events = []
    runner = BatchRunner(RunOptions(devices="cpu", weights=tiny_weights, on_locked="skip"))
    (outcome,) = runner.run(jobs, on_event=lambda e, p: events.append(e))
    assert outcome.status == "skipped" and "locked by pid 1 on" in outcome.notes[0]
    assert "job_start" not in events and not jobs[0].output.exists()
    assert json.loads(lock.read_text())["token"] == "x"  # someone else's lock is left alone


def test_default_batch_size_is_one_on_cpus_and_eight_with_a_gpu(tiny_weights) -> None:
    from edtalk_cli.runner.devices import default_batch_size

    assert default_batch_size(["cpu"]) == default_batch_size(["cpu", "cpu"]) == 1
    assert default_batch_size(["cuda:0", "cuda:1"]) == default_batch_size(["cpu", "cuda:0"]) == 8
    assert BatchRunner(RunOptions(devices="cpu", weights=tiny_weights)).options.batch_size == 1
    assert BatchRunner(RunOptions(devices="cpu", weights=tiny_weights, batch_size=4)).options.batch_size == 4


def test_a_runner_resolves_a_copy_and_leaves_the_callers_options_as_they_were(tiny_weights) -> None:
    options = RunOptions(devices="cpu", weights=tiny_weights, scheduler="tcp://127.0.0.1:1")
    as_given = dataclasses.replace(options)
    runner = BatchRunner(options, retries=2)
    assert options == as_given  # batch size, backend and the overrides stay the caller's
    assert (runner.options.batch_size, runner.options.backend, runner.options.retries) == (1, "dask", 2)
    assert runner.backend == "dask"
    with pytest.raises(TypeError, match="unknown run option 'retry'"):
        BatchRunner(options, retry=2)


@pytest.mark.slow
def test_threads_option_sets_the_workers_cpu_threads_and_reports_them(tmp_path, media, tiny_weights):
    manifest = _manifest(tmp_path, media, [("t1", 16, None), ("t2", 16, None)])
    jobs = list(load_manifest(manifest).jobs)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        inline = BatchRunner(RunOptions(devices="cpu", weights=tiny_weights, threads=1, cache=False))
        outcomes = inline.run(jobs[:1])
        assert outcomes[0].status == "done" and outcomes[0].threads == 1
        assert torch.get_num_threads() == 2  # an inline run gives the caller its threads back
    finally:
        torch.set_num_threads(before)
    # through the CLI with two worker processes: each worker uses exactly the asked threads
    report = tmp_path / "report.json"
    args = ["render", str(manifest), "--weights", str(tiny_weights), "--devices", "cpu,cpu", "--force"]
    result = run_cli(*args, "--threads", "1", "--report", str(report), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert {s["threads"] for s in _statuses(report).values()} == {1}
    bad = run_cli(*args, "--threads", "0", cwd=tmp_path)
    assert bad.returncode == 2 and "--threads" in bad.stderr
