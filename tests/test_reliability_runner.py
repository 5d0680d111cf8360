"""Reliability of the batch runner (issue 26, runner side): crashes, kills, signals, locks, disks.

Every test drives the real runner (worker processes, ffmpeg, files on disk) and faults injected
through ``$EDTALK_FAULTS`` (edtalk_cli/runner/faults.py) at a known frame.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli, write_speech_clips
from PIL import Image

from edtalk_cli.atomic import TempFile
from edtalk_cli.errors import EdtalkError, error_text
from edtalk_cli.hashing import FileHasher
from edtalk_cli.runner import devices
from edtalk_cli.runner.cache import ContentCache
from edtalk_cli.runner.fingerprint import read_sidecar, sidecar_status
from edtalk_cli.runner.locks import OutputLock, lock_path, pid_alive
from edtalk_cli.runner.procwatch import ProcessWatch
from edtalk_cli.runner.worker import _is_transient
from edtalk_cli.video import probe_mp4, write_mp4


@pytest.fixture(scope="module")
def media(tmp_path_factory, parity) -> Path:
    """face.png (256x256) and speech clips of 16, 24 and 48 frames at 25 fps."""
    root = tmp_path_factory.mktemp("reliability_media")
    Image.open(parity / "source.png").save(root / "face.png")
    write_speech_clips(root, parity, (16, 24, 48))
    return root


def _manifest(directory: Path, media: Path, jobs: list[tuple[str, int]]) -> Path:
    lines = [
        "version: 1",
        "defaults:",
        f"  source: {{path: {media / 'face.png'}, crop: none}}",
        '  output: "out/{name}.mp4"',
        "jobs:",
    ]
    for name, frames in jobs:
        lines += [f"  - name: {name}", f"    audio: {media / f's{frames}.wav'}"]
    path = directory / "batch.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _cmd(manifest: Path, weights: Path, *args: str) -> list[str]:
    """The arguments of ``edtalk render MANIFEST --weights WEIGHTS ARGS`` (for ``run_cli``)."""
    return ["render", str(manifest), "--weights", str(weights), *args]


def _statuses(report: Path) -> dict[str, dict]:
    return {j["name"]: j for j in json.loads(report.read_text())["jobs"]}


def _trusted(output: Path) -> bool:
    return sidecar_status(output, (read_sidecar(output) or {}).get("fingerprint", ""), FileHasher())[0]


def _hidden(folder: Path) -> list[str]:
    """Temporary files, locks and chunk folders left in ``folder``."""
    return sorted(p.name for p in folder.glob(".*")) if folder.is_dir() else []


def _children(pid: int) -> list[int]:
    """Child pids of ``pid`` (Linux /proc)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _descendants(pid: int) -> list[int]:
    todo, seen = [pid], []
    while todo:
        for child in _children(todo.pop()):
            seen.append(child)
            todo.append(child)
    return seen


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _wait_for(proc: subprocess.Popen, predicate) -> list[dict]:
    """Read --log-json events until ``predicate(events)`` holds (fails if the run ends first)."""
    events: list[dict] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("{"):
            events.append(json.loads(line))
            if predicate(events):
                return events
    pytest.fail(f"the run ended before the expected point: {proc.stderr.read() if proc.stderr else ''}")


def _gone(pid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    return not pid_alive(pid)


# ----- 3: a crashing job is charged alone -------------------------------------------------------
@pytest.mark.slow
def test_a_crashing_job_fails_alone_and_the_job_beside_it_finishes(tmp_path, media, tiny_weights):
    manifest = _manifest(tmp_path, media, [("crasher", 16), ("healthy", 24)])
    report = tmp_path / "report.json"
    # the crasher kills its worker at frame 6 on every attempt; the healthy job pauses at frame 2
    # on every attempt, so it is in flight on the other worker each time the crasher dies
    faults = "crasher:EXIT:9:6;healthy:STALL:9:2:4"
    cmd = _cmd(manifest, tiny_weights, "--devices", "cpu,cpu", "-q", "--report", str(report))
    result = run_cli(*cmd, cwd=tmp_path, timeout=400, EDTALK_FAULTS=faults)
    assert result.returncode == 1, result.stderr
    status = _statuses(report)
    assert status["crasher"]["status"] == "failed"
    assert "worker process died 3 times" in status["crasher"]["error"]
    assert status["healthy"]["status"] == "done" and status["healthy"]["attempts"] == 1
    out = tmp_path / "out"
    assert probe_mp4(out / "healthy.mp4")["video"]["frames"] == 24 and _trusted(out / "healthy.mp4")
    assert not (out / "crasher.mp4").exists()
    assert _hidden(out) == []  # no .part.mp4, no lock, no chunk folder


def test_the_process_watch_tells_which_worker_died_first():
    watch = ProcessWatch()
    first, second = (
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) for _ in range(2)
    )
    try:
        watch.watch(first.pid)
        watch.watch(second.pid)
        start = watch.wave
        first.kill()
        first.wait()
        time.sleep(0.2)
        second.kill()  # what the pool does to the other workers once one died
        watch.wait_dead({first.pid, second.pid}, timeout=5.0)
        deaths = watch.deaths({first.pid, second.pid}, after=start)
        assert set(deaths) == {first.pid, second.pid} and deaths[first.pid] < deaths[second.pid]
    finally:
        for proc in (first, second):
            proc.kill()
            proc.wait()
        watch.close()


# ----- 4: temporary files are exclusive and never follow a planted symlink ----------------------
def test_a_symlink_planted_at_the_old_temp_name_is_never_written_through(tmp_path):
    out_dir, outside = tmp_path / "out", tmp_path / "outside"
    out_dir.mkdir()
    outside.mkdir()
    target = out_dir / "clip.mp4"
    victim = outside / "victim.mp4"
    # the name a predictable writer would use (its pid is in the lock file), pointing elsewhere
    planted = out_dir / f".clip.mp4.{os.getpid()}.part.mp4"
    planted.symlink_to(victim)
    frames = [np.full((32, 32, 3), v, np.uint8) for v in (0, 80, 160, 240)]
    result = write_mp4(frames, target, 25)
    assert not victim.exists()  # nothing was written outside the output folder
    assert target.is_file() and not target.is_symlink() and result.frames == 4
    assert probe_mp4(target)["video"]["frames"] == 4
    assert planted.is_symlink()  # left alone, neither followed nor moved into place


def test_a_temp_file_swapped_for_a_symlink_is_not_published(tmp_path):
    target = tmp_path / "a.json"
    temp = TempFile(target)
    assert temp.fd is not None and temp.path.parent == tmp_path and temp.path.name.startswith(".a.json.")
    os.write(temp.fd, b"{}")
    temp.path.unlink()
    temp.path.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OSError, match="replaced by something else"):
        temp.publish()
    assert not target.exists()
    temp.discard()
    assert temp.path.is_symlink()  # what replaced it is not ours to delete


# ----- 5: a kill right after the rename does not cost the finished output -----------------------
@pytest.mark.slow
def test_kill_right_after_the_output_is_renamed_keeps_it_trusted(tmp_path, media, tiny_weights):
    manifest = _manifest(tmp_path, media, [("j", 16)])
    cmd = _cmd(manifest, tiny_weights, "--devices", "cpu", "-q", "--no-report")
    killed = run_cli(*cmd, cwd=tmp_path, EDTALK_FAULTS="j:PUBLISHED:1")
    assert killed.returncode == 70, killed.stderr  # died the moment j.mp4 was in place
    output = tmp_path / "out" / "j.mp4"
    before = output.stat().st_mtime_ns
    assert _trusted(output)
    report = tmp_path / "report.json"
    rerun = run_cli(*cmd[:-1], "--report", str(report), cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert _statuses(report)["j"]["status"] == "skipped"  # not rendered again
    assert output.stat().st_mtime_ns == before


@pytest.mark.slow
def test_kill_during_a_re_render_keeps_the_old_output_ours_and_the_rerun_replaces_it(
    tmp_path, media, tiny_weights
):
    manifest = _manifest(tmp_path, media, [("j", 16)])
    cmd = _cmd(manifest, tiny_weights, "--devices", "cpu", "--no-report")
    assert run_cli(*cmd, "-q", cwd=tmp_path).returncode == 0
    output = tmp_path / "out" / "j.mp4"
    old = output.read_bytes()
    manifest.write_text(manifest.read_text().replace("s16.wav", "s24.wav"))  # an input changed
    proc = run_cli(*cmd, "--log-json", cwd=tmp_path, background=True, EDTALK_FAULTS="j:STALL:1:4:60")
    try:
        _wait_for(proc, lambda ev: ev[-1]["event"] == "job_progress" and ev[-1]["done"] == 4)
    finally:
        proc.kill()
        proc.wait()
    assert output.read_bytes() == old  # the old video is untouched and still carries our sidecar
    report = tmp_path / "report.json"
    rerun = run_cli(*cmd[:-1], "-q", "--report", str(report), cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr  # not refused as a file edtalk did not write
    assert _statuses(report)["j"]["status"] == "done"
    assert probe_mp4(output)["video"]["frames"] == 24 and _trusted(output)


# ----- 10: the encoder dies with the process that started it ------------------------------------
@pytest.mark.slow
def test_the_ffmpeg_encoder_dies_when_the_render_is_killed(tmp_path, media, tiny_weights):
    manifest = _manifest(tmp_path, media, [("j", 24)])
    cmd = _cmd(manifest, tiny_weights, "--devices", "cpu", "--log-json", "--no-report")
    proc = run_cli(*cmd, cwd=tmp_path, background=True, EDTALK_FAULTS="j:STALL:1:4:60")
    encoder = None
    try:
        _wait_for(proc, lambda ev: ev[-1]["event"] == "job_progress" and ev[-1]["done"] == 4)
        encoders = [p for p in _descendants(proc.pid) if _comm(p).startswith("ffmpeg")]
        assert len(encoders) == 1, encoders
        encoder = encoders[0]
        # a stopped encoder would not even notice its input closing: only the kernel can end it
        os.kill(encoder, signal.SIGSTOP)
        proc.kill()
        proc.wait()
        assert _gone(encoder, within=5.0), "ffmpeg outlived the killed render"
    finally:
        proc.kill()
        proc.wait()
        if encoder is not None and pid_alive(encoder):
            os.kill(encoder, signal.SIGKILL)


# ----- 11: a folder at the lock path ------------------------------------------------------------
@pytest.mark.slow
def test_a_folder_at_the_lock_path_fails_the_job_with_the_path_and_the_fix(tmp_path, media, tiny_weights):
    manifest = _manifest(tmp_path, media, [("blocked", 16), ("free", 16)])
    lock = lock_path(tmp_path / "out" / "blocked.mp4")
    lock.mkdir(parents=True)
    with pytest.raises(EdtalkError, match="is a folder, where edtalk keeps the lock file"):
        OutputLock(tmp_path / "out" / "blocked.mp4").acquire()
    report = tmp_path / "report.json"
    cmd = _cmd(manifest, tiny_weights, "--devices", "cpu", "-q", "--report", str(report))
    result = run_cli(*cmd, cwd=tmp_path, timeout=120)  # used to wait for this "lock" forever
    assert result.returncode == 1
    status = _statuses(report)
    assert str(lock) in status["blocked"]["error"] and "remove or rename" in status["blocked"]["error"]
    assert status["free"]["status"] == "done"
    assert lock.is_dir()  # not ours: left as it was


# ----- 12: SIGTERM, SIGHUP and Ctrl-C ----------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "devices", "group"),
    [
        (signal.SIGTERM, "cpu,cpu", False),
        (signal.SIGINT, "cpu,cpu", False),
        (signal.SIGINT, "cpu,cpu", True),
        (signal.SIGHUP, "cpu", False),
    ],
    ids=["TERM-2-workers", "INT-2-workers", "Ctrl-C-to-the-group-2-workers", "HUP-inline"],
)
def test_a_signal_stops_the_run_cleans_up_and_reports_what_finished(
    tmp_path, media, tiny_weights, signum, devices, group
):
    manifest = _manifest(tmp_path, media, [("quick", 16), ("long", 48), ("later", 16)])
    report = tmp_path / "report.json"
    cmd = _cmd(manifest, tiny_weights, "--devices", devices, "--log-json", "--report", str(report))
    proc = run_cli(
        *cmd,
        cwd=tmp_path,
        background=True,
        new_session=group,
        EDTALK_FAULTS="long:STALL:1:6:60;later:STALL:1:2:60",
    )
    try:
        # one worker: quick, then long; two: both at once. Either way quick is done, long held
        _wait_for(
            proc,
            lambda ev: (
                any(e["event"] == "job_done" and e["name"] == "quick" for e in ev)
                and any(e["event"] == "job_progress" and e["name"] == "long" and e["done"] == 6 for e in ev)
            ),
        )
        workers = _descendants(proc.pid)
        if group:  # a terminal's Ctrl-C reaches every process of the foreground group
            os.killpg(proc.pid, signum)
        else:
            proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signum, err
    name = signal.Signals(signum).name
    lines = [line for line in err.splitlines() if "stopped by" in line]
    assert len(lines) == 1 and name in lines[0] and "report:" in lines[0], err
    assert "Traceback" not in err
    status = _statuses(report)
    assert status["long"]["status"] == "cancelled" and name in status["long"]["error"]
    assert status["later"]["status"] == "cancelled"
    assert status["quick"]["status"] == "done" and _trusted(tmp_path / "out" / "quick.mp4")
    assert json.loads(report.read_text())["interrupted"] == name
    out = tmp_path / "out"
    assert not (out / "long.mp4").exists()
    assert _hidden(out) == []  # no .part.mp4, no lock
    for pid in workers:  # worker processes and encoders are gone
        assert _gone(pid, within=5.0), (pid, _comm(pid))


# ----- 13: deterministic OS errors are not retried ----------------------------------------------
@pytest.mark.slow
def test_deterministic_os_errors_are_not_retried_and_name_the_path_and_the_fix(tmp_path, media, tiny_weights):
    cases = {
        IsADirectoryError(errno.EISDIR, "Is a directory", "/o/x.mp4"): "folder is in the way",
        PermissionError(errno.EACCES, "Permission denied", "/o/x.mp4"): "make the folder writable",
        OSError(errno.ENOSPC, "No space left on device", "/o/x.mp4"): "disk is full",
        FileNotFoundError(errno.ENOENT, "No such file or directory", "/m/a.wav"): "check the path",
    }
    for exc, fix in cases.items():
        assert not _is_transient(exc), exc
        assert exc.filename in error_text(exc) and fix in error_text(exc)
    assert _is_transient(OSError("injected fault")) and _is_transient(RuntimeError("flaky"))
    assert _is_transient(OSError(errno.EIO, "Input/output error", "/o/x.mp4"))

    # a folder appears where the video goes while the job renders: the rename fails for good
    manifest = _manifest(tmp_path, media, [("boxed", 16)])
    report = tmp_path / "report.json"
    cmd = _cmd(manifest, tiny_weights, "--devices", "cpu", "--retries", "2", "--log-json")
    proc = run_cli(
        *cmd, "--report", str(report), cwd=tmp_path, background=True, EDTALK_FAULTS="boxed:STALL:1:2:3"
    )
    try:
        _wait_for(proc, lambda ev: ev[-1]["event"] == "job_progress" and ev[-1]["done"] == 2)
        (tmp_path / "out" / "boxed.mp4").mkdir()
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, err
    assert '"job_retry"' not in out  # rendered once, not three times
    status = _statuses(report)["boxed"]
    assert status["status"] == "failed" and status["attempts"] == 1
    assert (
        str(tmp_path / "out" / "boxed.mp4") in status["error"] and "folder is in the way" in status["error"]
    )
    assert _hidden(tmp_path / "out") == [] and not list((tmp_path / "out").glob("*.json"))


# ----- 14: a cache that cannot be written only costs speed -------------------------------------
def test_a_failing_cache_write_is_dropped_without_temp_files(tmp_path):
    cache = ContentCache(tmp_path / "cache")

    def full_disk(value, tmp: Path) -> None:
        tmp.write_bytes(b"partial")  # what torch.save leaves on a full disk before it raises
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")

    entry = cache._entry("encodings", "abc", {}, ".pt")
    value = cache._get_or_compute("encodings", entry, lambda p: None, full_disk, lambda: "computed")
    assert value == "computed"
    assert "enforce fail" in (cache.write_error or "")
    assert [p for p in (tmp_path / "cache").rglob("*") if p.is_file()] == []


def test_a_cache_write_failure_names_the_os_error_and_its_fix(tmp_path):
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache folder should be")
    cache = ContentCache(blocker)
    entry = cache._entry("encodings", "abc", {}, ".pt")
    value = cache._get_or_compute("encodings", entry, lambda p: None, lambda v, p: None, lambda: "computed")
    assert value == "computed"
    assert cache.write_error is not None
    assert cache.write_error.startswith("NotADirectoryError: ")
    assert str(blocker) in cache.write_error  # names the cache
    assert "(hint: a part of the path is a file, not a folder: fix the path)" in cache.write_error
    assert blocker.read_text() == "a file where the cache folder should be"


@pytest.mark.slow
def test_a_full_cache_warns_once_and_every_job_renders(tmp_path, media, tiny_weights):
    manifest = _manifest(tmp_path, media, [("c1", 16), ("c2", 16)])
    cache_dir = tmp_path / "cache"
    report = tmp_path / "report.json"
    cmd = _cmd(manifest, tiny_weights, "--devices", "cpu", "--report", str(report))
    env = {"EDTALK_CACHE": str(cache_dir), "EDTALK_FAULTS": "c1:CACHE_FULL:1;c2:CACHE_FULL:1"}
    result = run_cli(*cmd, cwd=tmp_path, **env)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("writing the cache") == 1, result.stderr  # one warning for the run
    assert "No space left" in result.stderr
    assert "(hint: the disk is full" in " ".join(result.stderr.split())  # the OS error's fix
    status = _statuses(report)
    assert status["c1"]["status"] == status["c2"]["status"] == "done"
    assert any("cache could not be written" in n for n in status["c1"]["notes"])
    assert [p for p in cache_dir.rglob("*") if p.is_file() and "digests" not in p.parts] == []


# ----- 15: an unwritable report is refused before rendering -------------------------------------
@pytest.mark.parametrize("where", ["under-a-file", "a-folder"])
def test_a_report_that_cannot_be_written_is_refused_before_any_job(tmp_path, media, tiny_weights, where):
    manifest = _manifest(tmp_path, media, [("r", 16)])
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    report = tmp_path / "notes.txt" / "report.json" if where == "under-a-file" else tmp_path
    result = run_cli(*_cmd(manifest, tiny_weights, "--devices", "cpu", "--report", str(report)), cwd=tmp_path)
    assert result.returncode == 2  # a usage error: nothing was done
    assert "--report" in result.stderr and str(report) in result.stderr.replace("\n", "")
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()  # refused before any job was rendered


# ----- 19: --force with two concurrent runs renders each job once -------------------------------
@pytest.mark.slow
def test_force_in_two_concurrent_runs_renders_each_job_once(tmp_path, media, tiny_weights):
    names = ["f0", "f1", "f2"]
    manifest = _manifest(tmp_path, media, [(n, 16) for n in names])
    slow = ";".join(f"{n}:STALL:1:8:1.5" for n in names)  # every job takes >= 1.5 s: the runs overlap
    procs = []
    for tag in ("one", "two"):
        cmd = _cmd(
            manifest,
            tiny_weights,
            "--devices",
            "cpu",
            "-q",
            "--force",
            "--report",
            str(tmp_path / f"{tag}.json"),
        )
        procs.append(run_cli(*cmd, cwd=tmp_path, background=True, EDTALK_FAULTS=slow))
    for proc in procs:
        _, err = proc.communicate(timeout=400)
        assert proc.returncode == 0, err
    one, two = _statuses(tmp_path / "one.json"), _statuses(tmp_path / "two.json")
    for name in names:
        pair = sorted([one[name]["status"], two[name]["status"]])
        assert pair == ["done", "skipped"], (name, pair)
        assert _trusted(tmp_path / "out" / f"{name}.mp4")
    skipped = [j for j in [*one.values(), *two.values()] if j["status"] == "skipped"]
    assert all("during this run" in j["notes"][0] for j in skipped)


# ----- 21: default threads from the cores actually free ------------------------------------------
def test_default_threads_come_from_affinity_quota_and_load(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    monkeypatch.setattr(devices, "_CGROUP_ROOT", tmp_path)
    monkeypatch.setattr(os, "getloadavg", lambda: (0.3, 0.3, 0.3))
    idle = devices.cpu_budget()
    assert idle.free == 8 and idle.threads_per_worker(2) == 4
    (tmp_path / "cpu.max").write_text("250000 100000\n")  # a cgroup quota of 2.5 CPUs
    assert devices.cpu_budget().free == 3
    monkeypatch.setattr(os, "getloadavg", lambda: (1.6, 1.0, 1.0))  # two other busy processes
    busy = devices.cpu_budget()
    assert busy.free == 1 and busy.threads_per_worker(2) == 1
    assert busy.describe(1) == "1 thread(s) per worker: 8 cores, cgroup quota 2.5, load 1.6"


@pytest.mark.slow
def test_the_run_uses_and_announces_the_default_threads(tmp_path, media, tiny_weights):
    manifest = _manifest(tmp_path, media, [("t", 16)])
    report = tmp_path / "report.json"
    result = run_cli(
        *_cmd(manifest, tiny_weights, "--devices", "cpu", "--log-json", "--report", str(report)), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    start = next(json.loads(x) for x in result.stdout.splitlines() if '"run_start"' in x)
    assert start["threads"] >= 1 and start["threads_note"].startswith(
        f"{start['threads']} thread(s) per worker"
    )
    assert _statuses(report)["t"]["threads"] == start["threads"]
