"""Chunked rendering: one long job split over several workers, joined losslessly.

Chunks are cut on the frame plan at multiples of the batch size: the engine renders a batch
bit-exactly the same wherever it runs, but a *different* batch composition can change the last
bits of a frame (batched convolutions), so aligned chunks make the joined video identical, frame
for frame, to an unsplit render. Each chunk is a raw uint8 ``.npy`` block (N, H, W, 3) written to
a temporary name and renamed, in ``dir/.NAME.edtalk.chunks/``; the blocks are then streamed into
one H.264/AAC encode with the job's audio, and deleted.

Raw blocks are large (frames x H x W x 3 bytes): a 10 000-frame job at 512x512 needs 7.5 GB of
temporary space next to the output.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from edtalk_cli.atomic import TempFile, atomic_write
from edtalk_cli.defaults import VIDEO_CODEC
from edtalk_cli.video import WriteResult, write_mp4

META = "meta.json"


def plan_chunks(num_frames: int, chunk_frames: int, batch_size: int) -> list[tuple[int, int]]:
    """[start, stop) ranges of about ``chunk_frames`` frames, starting at multiples of ``batch_size``."""
    if num_frames < 1:
        return []
    step = max(batch_size, (max(1, chunk_frames) // batch_size) * batch_size)
    return [(start, min(start + step, num_frames)) for start in range(0, num_frames, step)]


def chunk_dir(output: Path) -> Path:
    return output.with_name(f".{output.name}.edtalk.chunks")


def chunk_path(folder: Path, index: int) -> Path:
    return folder / f"chunk-{index:05d}.npy"


def prepare_chunk_dir(
    output: Path, fingerprint: str, ranges: list[tuple[int, int]], batch_size: int
) -> list[bool]:
    """Create (or reuse) the chunk folder; returns, per chunk, whether a finished block is there.

    Blocks of an interrupted run are kept only when they were made for the same fingerprint,
    ranges and batch size.
    """
    folder = chunk_dir(output)
    meta = {"fingerprint": fingerprint, "ranges": [list(r) for r in ranges], "batch_size": batch_size}
    try:
        reuse = json.loads((folder / META).read_text()) == meta
    except (OSError, ValueError):
        reuse = False
    if not reuse:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        with atomic_write(folder / META) as fh:
            fh.write(json.dumps(meta))
    remove_partial_blocks(output)
    done = []
    for index, (start, stop) in enumerate(ranges):
        path = chunk_path(folder, index)
        ok = False
        if path.is_file():
            try:
                ok = np.load(path, mmap_mode="r").shape[0] == stop - start
            except (OSError, ValueError):
                ok = False
        done.append(ok)
    return done


def write_chunk(
    frames: Iterable[np.ndarray], path: Path, count: int, on_frame: Callable[[int], None] | None = None
) -> int:
    """Stream ``count`` frames into ``path`` (raw .npy, exclusive temp name + rename); returns frames written."""
    temp = TempFile(path, ".tmp.npy")
    temp.close_fd()
    block = None
    written = 0
    try:
        for frame in frames:
            if block is None:
                shape = (count, *frame.shape)
                block = np.lib.format.open_memmap(temp.path, mode="w+", dtype=np.uint8, shape=shape)
            if written >= count:
                raise ValueError(f"chunk {path.name}: more than {count} frames")
            block[written] = frame
            written += 1
            if on_frame is not None:
                on_frame(written)
        if written != count or block is None:
            raise ValueError(f"chunk {path.name}: {written} frames rendered, {count} expected")
        block.flush()
        del block
        temp.publish()
    except BaseException:
        temp.discard()
        raise
    return written


def iter_chunks(folder: Path, count: int) -> Iterator[np.ndarray]:
    """The frames of chunks 0..count-1, in order (memory-mapped)."""
    for index in range(count):
        block = np.load(chunk_path(folder, index), mmap_mode="r")
        for frame in block:
            yield np.asarray(frame)
        del block


def join_chunks(
    output: Path,
    count: int,
    *,
    fps: float,
    audio: Path,
    num_frames: int,
    crf: int,
    preset: str,
    codec: str = VIDEO_CODEC,
    cuda: bool = False,
    before_publish: Callable[[Path, WriteResult], None] | None = None,
) -> WriteResult:
    """Encode the chunk blocks of ``output`` with its audio into ``output`` (temp + rename),
    with the job's ``codec``, ``crf`` and ``preset``; ``cuda``, ``before_publish`` as in :func:`write_mp4`."""
    return write_mp4(
        iter_chunks(chunk_dir(output), count),
        output,
        fps,
        audio_path=audio,
        n_frames=num_frames,
        crf=crf,
        preset=preset,
        codec=codec,
        cuda=cuda,
        before_publish=before_publish,
    )


def remove_partial_blocks(output: Path) -> None:
    """Delete the half-written blocks of killed chunk writers (finished blocks stay for resuming)."""
    for stale in chunk_dir(output).glob(".*.tmp*"):
        stale.unlink(missing_ok=True)


def remove_chunks(output: Path) -> None:
    shutil.rmtree(chunk_dir(output), ignore_errors=True)
