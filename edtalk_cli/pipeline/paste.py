"""Putting generated faces back into source frames, with a job's ``paste_back`` options.

:class:`FacePaster` builds the region mask (:mod:`edtalk_cli.video.masks`) in crop space for the
face's actual size (a face enhanced to twice the model size gets a mask of that size), matches
colours when asked, and blends through :func:`edtalk_cli.video.align.paste_back`, which leaves
every pixel where the mask is 0 bit-identical to the source frame.

On a CUDA device (or when asked with ``on_device`` or ``$EDTALK_PASTE_ON_DEVICE``; see
:func:`pastes_on_device`), :meth:`FacePaster.paste_many` blends a
whole batch at once with :func:`edtalk_cli.video.torch_paste.paste_back_batch` (the same
result, up to 1-2 levels on a few pixels); on the CPU the per-frame OpenCV path stays, it is
faster there.

``mouth`` and ``lower`` need the face's landmarks in crop coordinates: with ``crop: auto`` or
``box`` they are the tracked landmarks of the frame mapped through the frame's crop transform;
with ``crop: none`` (the whole frame is the face) they are detected on the frame resized to
:data:`LANDMARK_SIDE` px square (upscaled when smaller), since small frames defeat the detector.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edtalk_cli.errors import EdtalkError, MediaError
from edtalk_cli.manifest.model import PasteBack
from edtalk_cli.pipeline.faces import VideoFaceSource, resize_square, transform_box
from edtalk_cli.video.align import AlignTransform, AnyTransform, crop_matrix, frame_bbox, in_box, paste_back
from edtalk_cli.video.crop import CropTransform, feather_mask
from edtalk_cli.video.landmarks import LandmarkDetector
from edtalk_cli.video.masks import feather_in_crop_pixels, match_color, region_mask, scale_landmarks
from edtalk_cli.video.yuv import changed_pixels, to_rgb, union_box, write_rgb

if TYPE_CHECKING:
    import torch

__all__ = [
    "LANDMARK_SIDE",
    "PASTE_ON_DEVICE_ENV",
    "DubbingPaster",
    "FacePaster",
    "pastes_on_device",
    "whole_frame_transform",
]

LANDMARK_SIDE = 256  # crop: none: landmarks are detected on the frame resized to at least this side
PASTE_ON_DEVICE_ENV = "EDTALK_PASTE_ON_DEVICE"  # "1": blend in torch on the device, "0": on the CPU


def whole_frame_transform(image_shape: tuple[int, ...], size: int) -> AlignTransform:
    """The ``crop: none`` mapping: the whole (H, W) frame scaled (per axis) onto a ``size`` square."""
    h, w = int(image_shape[0]), int(image_shape[1])
    sx, sy = size / w, size / h  # pixel centres: u = (x + 0.5) * size / W - 0.5
    matrix = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5]])
    return AlignTransform(matrix, int(size), (h, w))


def pastes_on_device(device: str | torch.device | None, on_device: bool | None = None) -> bool:
    """Whether faces are blended in torch batches on ``device`` rather than frame by frame with
    OpenCV on the CPU: ``on_device`` when given, else ``$EDTALK_PASTE_ON_DEVICE`` when it is 1 or 0,
    else True for a CUDA device."""
    if on_device is not None:
        return bool(on_device)
    forced = os.environ.get(PASTE_ON_DEVICE_ENV, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    return str(device or "cpu").startswith("cuda")


class FacePaster:
    """Blends generated faces into frames with one job's :class:`PasteBack` options.

    ``size`` is the model's crop side (the size the transforms and landmarks refer to).
    ``device``: the job's torch device; ``on_device`` (default: True when it is CUDA) makes
    :meth:`paste_many` and :meth:`paste_stream` blend batches there in torch.
    """

    def __init__(
        self,
        options: PasteBack,
        size: int,
        detector: LandmarkDetector | None = None,
        *,
        device: str | torch.device | None = None,
        on_device: bool | None = None,
    ) -> None:
        self.options = options
        self.size = int(size)
        self._detector = detector
        self.device = device
        self.on_device = pastes_on_device(device, on_device)

    @property
    def needs_landmarks(self) -> bool:
        """True for the landmark-based regions (``mouth``, ``lower``)."""
        return self.options.region != "face"

    @property
    def detector(self) -> LandmarkDetector:
        if self._detector is None:
            self._detector = LandmarkDetector()
        return self._detector

    def crop_landmarks(self, transform: AnyTransform, frame_landmarks: np.ndarray) -> np.ndarray | None:
        """Frame landmarks (68, 2) -> crop coordinates at ``transform.size``; None when they are
        missing (NaN: no face on that frame)."""
        points = np.asarray(frame_landmarks, dtype=np.float64)
        if points.shape != (68, 2) or not np.isfinite(points).all():
            return None
        matrix = crop_matrix(transform)
        return points @ matrix[:, :2].T + matrix[:, 2]

    def whole_frame_landmarks(self, frame: np.ndarray) -> np.ndarray | None:
        """``crop: none``: landmarks (68, 2) in ``size``-crop coordinates, detected on the frame
        resized to a ``max(size, LANDMARK_SIDE)`` square; None when no face is found."""
        side = max(self.size, LANDMARK_SIDE)
        face = self.detector.largest(resize_square(np.asarray(frame), side))
        if face is None:
            return None
        return scale_landmarks(face.landmarks, side, self.size)

    def placement(
        self,
        frame: np.ndarray,
        transform: AnyTransform | None,
        frame_landmarks: np.ndarray | None,
        source: str | Path,
    ) -> tuple[AnyTransform, np.ndarray | None]:
        """A photo's (transform, crop landmarks or None): ``transform`` None means ``crop: none``.

        Raises :class:`MediaError` naming ``source`` when the region needs landmarks and the
        photo has none.
        """
        if transform is None:
            transform = whole_frame_transform(frame.shape, self.size)
            landmarks = self.whole_frame_landmarks(frame) if self.needs_landmarks else None
        else:
            landmarks = None
            if self.needs_landmarks and frame_landmarks is not None:
                landmarks = self.crop_landmarks(transform, frame_landmarks)
        if self.needs_landmarks and landmarks is None:
            raise MediaError(
                f"paste_back region '{self.options.region}' needs the face's landmarks, and none were found "
                f"in '{source}'",
                hint="use paste_back: {region: face}, or a photo with a clearly visible, roughly frontal face",
            )
        return transform, landmarks

    def feather(self, face_side: int, transform: AnyTransform) -> float:
        """The feather width in pixels of a ``face_side`` face pasted with ``transform``."""
        return feather_in_crop_pixels(
            face_side,
            fraction=self.options.feather,
            frame_px=self.options.feather_px,
            scale=transform.scale * face_side / transform.size,  # face pixels per frame pixel
            region=self.options.region,
        )

    def mask(self, face_side: int, transform: AnyTransform, landmarks: np.ndarray | None) -> np.ndarray:
        """The float32 (face_side, face_side) blend mask; ``landmarks`` in ``transform.size`` crop pixels."""
        scaled = None if landmarks is None else scale_landmarks(landmarks, transform.size, face_side)
        return region_mask(self.options.region, face_side, self.feather(face_side, transform), scaled)

    def paste(
        self,
        frame: np.ndarray,
        face: np.ndarray,
        transform: AnyTransform,
        *,
        landmarks: np.ndarray | None = None,
        reference: np.ndarray | None = None,
    ) -> np.ndarray:
        """``face`` (F, F, 3) blended into a copy of ``frame`` where ``transform`` cropped it.

        ``landmarks``: (68, 2) in ``transform.size`` crop pixels (``mouth`` / ``lower``).
        ``reference``: the source's crop (S, S, 3) uint8, the colour target of ``color_match``.
        """
        side = face.shape[0]
        if self.options.region == "face" and not self.options.color_match:
            # the default mask: paste_back builds it itself (the square crop keeps its PIL bicubic path)
            return paste_back(frame, face, transform, feather=min(0.5, self.feather(side, transform) / side))
        mask = self.mask(side, transform, landmarks)
        if self.options.color_match:
            if reference is None:
                raise ValueError("color_match needs the source crop as the reference")
            target = reference if reference.shape[0] == side else resize_square(reference, side)
            face = match_color(face, target, mask)
        return paste_back(frame, face, transform, mask)

    def paste_many(
        self,
        frames: Sequence[np.ndarray],
        faces: np.ndarray,
        transforms: Sequence[AnyTransform],
        *,
        landmarks: Sequence[np.ndarray | None] | None = None,
        references: Sequence[np.ndarray] | None = None,
    ) -> list[np.ndarray]:
        """:meth:`paste` of B faces (B, F, F, 3) into B frames of one size; in one torch batch on
        the device when :attr:`on_device`, else frame by frame."""
        count = len(transforms)
        marks = list(landmarks) if landmarks is not None else [None] * count
        refs = list(references) if references is not None else [None] * count
        if not self.on_device:
            return [
                self.paste(f, face, t, landmarks=lm, reference=r)
                for f, face, t, lm, r in zip(frames, faces, transforms, marks, refs)
            ]
        from edtalk_cli.video.torch_paste import paste_back_batch

        side = int(faces.shape[1])
        if self.options.region == "face" and not self.options.color_match:
            feathers = [min(0.5, self.feather(side, t) / side) for t in transforms]
            if all(isinstance(t, CropTransform) for t in transforms):  # the square paste-back
                return paste_back_batch(frames, faces, transforms, feather=feathers, device=self.device)
            masks = [feather_mask(t.size, f) for t, f in zip(transforms, feathers)]
            return paste_back_batch(frames, faces, transforms, _stacked(masks), device=self.device)
        masks = [self.mask(side, t, lm) for t, lm in zip(transforms, marks)]
        targets = None
        if self.options.color_match:
            if any(r is None for r in refs):
                raise ValueError("color_match needs the source crop as the reference")
            targets = np.stack([r if r.shape[0] == side else resize_square(r, side) for r in refs])
        return paste_back_batch(
            frames, faces, transforms, _stacked(masks), references=targets, device=self.device
        )

    def paste_stream(
        self,
        frame: np.ndarray,
        faces: Iterable[np.ndarray],
        transform: AnyTransform,
        *,
        landmarks: np.ndarray | None = None,
        reference: np.ndarray | None = None,
        batch: int = 16,
    ) -> Iterator[np.ndarray]:
        """A photo job's output frames: each face of the stream pasted into ``frame`` (batches of
        ``batch`` on the device when :attr:`on_device`)."""
        if not self.on_device:
            for face in faces:
                yield self.paste(frame, face, transform, landmarks=landmarks, reference=reference)
            return
        pending: list[np.ndarray] = []
        for face in faces:
            pending.append(face)
            if len(pending) == batch:
                yield from self._paste_same(frame, pending, transform, landmarks, reference)
                pending = []
        if pending:
            yield from self._paste_same(frame, pending, transform, landmarks, reference)

    def _paste_same(
        self,
        frame: np.ndarray,
        faces: list[np.ndarray],
        transform: AnyTransform,
        landmarks: np.ndarray | None,
        reference: np.ndarray | None,
    ) -> list[np.ndarray]:
        n = len(faces)
        return self.paste_many(
            [frame] * n,
            np.stack(faces),
            [transform] * n,
            landmarks=[landmarks] * n,
            references=None if reference is None else [reference] * n,
        )


def _stacked(masks: list[np.ndarray]) -> np.ndarray:
    """One (M, M) mask when every frame's is the same array, else (B, M, M)."""
    if all(m is masks[0] for m in masks):
        return masks[0]
    return np.stack(masks)


class DubbingPaster:
    """Output frames of a dubbing job: each generated face blended into its source frame.

    A source frame without a face (``source.found`` False, or with ``crop: none`` no landmarks
    where the region needs them) is passed through as decoded, never patched, and counted in
    ``without_face``.

    A source that decodes I420 planes (``source.colorimetry`` set; ``crop: auto`` or ``box``)
    gives I420 output frames in tv range: the source's planes, with only the face's frame box
    converted to RGB, blended (by :meth:`FacePaster.paste` frame by frame on the CPU; on the device
    a batch at once, each frame's box being the union of the batch's), and the pixels the blend
    changed written back (:func:`~edtalk_cli.video.yuv.write_rgb`); every other byte is the
    source's (range-converted for a full-range source).
    """

    def __init__(
        self,
        source: VideoFaceSource,
        options: PasteBack,
        size: int,
        *,
        device: str | torch.device | None = None,
        on_device: bool | None = None,
    ) -> None:
        self.source = source
        self.paster = FacePaster(options, size, device=device, on_device=on_device)
        self.size = int(size)
        self.whole_frame = source.transforms is None  # crop: none
        # crop: none with the "face" region replaces the whole frame (nothing to blend into)
        self.active = not self.whole_frame or self.paster.needs_landmarks
        if self.active and not self.whole_frame and self.paster.needs_landmarks and source.landmarks is None:
            raise EdtalkError(
                f"paste_back region '{options.region}' needs the face's landmarks on every frame of "
                f"'{source.path}', and its crop tracks boxes only",
                hint="use crop: auto (the official alignment) or paste_back: {region: face}",
            )
        self.planes = source.colorimetry is not None
        if self.planes and self.whole_frame:
            raise ValueError("I420 output frames need a crop transform (crop: auto or box)")
        self._whole_frame_landmarks: dict[int, np.ndarray | None] = {}  # crop: none, by source frame
        self.without_face = 0

    def frame(self, index: int, face: np.ndarray, crop: np.ndarray) -> np.ndarray:
        """Output frame for source frame ``index``, its generated ``face`` and its model-size ``crop``
        (RGB (H, W, 3), or I420 (H * 3 / 2, W) when the source decodes planes)."""
        if self.planes:
            return self._planes_frame(index, face, crop)
        frame, transform, landmarks = self._placement(index)
        if transform is None:
            self.without_face += 1
            return frame
        return self.paster.paste(frame, face, transform, landmarks=landmarks, reference=crop)

    def frames(self, indices: Sequence[int], faces: np.ndarray, crops: np.ndarray) -> Iterator[np.ndarray]:
        """:meth:`frame` of a batch: source frames ``indices``, faces (B, F, F, 3), crops (B, S, S, 3).

        On the device the frames with a face are blended together (:meth:`FacePaster.paste_many`),
        then yielded; on the CPU each is blended as it is taken.
        """
        if not self.paster.on_device:
            for index, face, crop in zip(indices, faces, crops):
                yield self.frame(int(index), face, crop)
            return
        if self.planes:
            yield from self._planes_batch(indices, faces, crops)
            return
        placed = [self._placement(int(index)) for index in indices]
        rows = [k for k, (_, transform, _) in enumerate(placed) if transform is not None]
        self.without_face += len(placed) - len(rows)
        pasted = (
            self.paster.paste_many(
                [placed[k][0] for k in rows],
                np.asarray(faces)[rows],
                [placed[k][1] for k in rows],
                landmarks=[placed[k][2] for k in rows],
                references=[crops[k] for k in rows],
            )
            if rows
            else []
        )
        blended = dict(zip(rows, pasted))
        for k, (frame, _, _) in enumerate(placed):
            yield blended.get(k, frame)

    def _planes_frame(self, index: int, face: np.ndarray, crop: np.ndarray) -> np.ndarray:
        """:meth:`frame` on the source's I420 planes."""
        colorimetry = self.source.colorimetry
        assert colorimetry is not None
        planes = self.source.planes(index)
        output = colorimetry.to_output(planes)
        transform, landmarks = self._tracked(index)
        if transform is None:
            self.without_face += 1
            return output
        if frame_bbox(transform) is None:  # the face lies outside the frame: nothing to blend into
            return output
        box = transform_box(transform)
        region = to_rgb(planes, box, colorimetry)
        pasted = self.paster.paste(region, face, in_box(transform, box), landmarks=landmarks, reference=crop)
        write_rgb(output, box, pasted, changed_pixels(region, pasted), colorimetry)
        return output

    def _planes_batch(self, indices: Sequence[int], faces: np.ndarray, crops: np.ndarray) -> list[np.ndarray]:
        """:meth:`frames` on the source's I420 planes, blended on the device: the union of the batch's
        face boxes is converted to RGB in each frame with a face, those regions are blended in one
        batch (:meth:`FacePaster.paste_many`), and the pixels each blend changed are written back."""
        colorimetry = self.source.colorimetry
        assert colorimetry is not None
        decoded = [self.source.planes(int(index)) for index in indices]
        outputs = [colorimetry.to_output(planes) for planes in decoded]
        rows: list[int] = []
        transforms: list[AnyTransform] = []
        marks: list[np.ndarray | None] = []
        for k, index in enumerate(indices):
            transform, landmarks = self._tracked(int(index))
            if transform is None:
                self.without_face += 1
            elif frame_bbox(transform) is not None:  # else the face lies outside the frame
                rows.append(k)
                transforms.append(transform)
                marks.append(landmarks)
        if not rows:
            return outputs
        union = union_box([transform_box(t) for t in transforms])  # even, as each box is
        regions = [to_rgb(decoded[k], union, colorimetry) for k in rows]
        pasted = self.paster.paste_many(
            regions,
            np.asarray(faces)[rows],
            [in_box(t, union) for t in transforms],
            landmarks=marks,
            references=[crops[k] for k in rows],
        )
        for k, region, blended in zip(rows, regions, pasted):
            write_rgb(outputs[k], union, blended, changed_pixels(region, blended), colorimetry)
        return outputs

    def _tracked(self, index: int) -> tuple[AnyTransform | None, np.ndarray | None]:
        """(transform or None when frame ``index`` has no face, crop landmarks or None) of a source
        with crop transforms."""
        transform = self.source.transforms[index]
        has_face = self.source.found is None or bool(self.source.found[index])
        landmarks = None
        if has_face and self.paster.needs_landmarks:
            landmarks = self.paster.crop_landmarks(transform, self.source.landmarks[index])
            has_face = landmarks is not None
        return (transform if has_face else None), landmarks

    def _placement(self, index: int) -> tuple[np.ndarray, AnyTransform | None, np.ndarray | None]:
        """(source frame, its transform or None when it has no face, its crop landmarks or None)."""
        frame = self.source.frame(index)
        landmarks = None
        if self.whole_frame:
            if index not in self._whole_frame_landmarks:
                self._whole_frame_landmarks[index] = self.paster.whole_frame_landmarks(frame)
            landmarks = self._whole_frame_landmarks[index]
            transform: AnyTransform = whole_frame_transform(frame.shape, self.size)
            has_face = landmarks is not None
            return frame, (transform if has_face else None), landmarks
        tracked, landmarks = self._tracked(index)
        return frame, tracked, landmarks
