"""From one manifest job to a finished, muxed mp4.

1. audio -> mel windows at the job fps -> Audio2Lip -> smoothing: mouth (T, 20)
2. source, reference clips and tracks -> face crops -> coefficients (cached per job)
3. segments and transitions -> the per-frame plan: pose (T, 6), expression (T, 10)
4. the engine renders in batches; frames are pasted back and streamed into the encoder
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from edtalk_cli.audio import audio_features, mel_windows, smooth_mouth_coeffs
from edtalk_cli.errors import EdtalkError, MediaError, error_text
from edtalk_cli.manifest.model import EmotionSpec, Job, PoseSpec
from edtalk_cli.model.generator import SourceEncoding
from edtalk_cli.pipeline.engine import (
    CoefficientTrack,
    RenderEngine,
    select_frames,
    tensor_float32,
    tensor_to_images,
)
from edtalk_cli.pipeline.enhance import FaceEnhancer, enhancer_weights_file
from edtalk_cli.pipeline.faces import (
    FaceCrops,
    VideoFaceSource,
    crop_key,
    face_crops,
    resize_to_frame,
    source_track,
)
from edtalk_cli.pipeline.options import RenderOptions
from edtalk_cli.pipeline.paste import DubbingPaster, FacePaster
from edtalk_cli.pipeline.timeline import CoefficientPlan, build_plan, extend_indices, row_local_plan
from edtalk_cli.video import FaceDetector, WriteResult, write_mp4
from edtalk_cli.video.align import AnyTransform
from edtalk_cli.video.faces import FaceTrack
from edtalk_cli.video.hwdecode import decode_accel
from edtalk_cli.video.yuv import Colorimetry
from edtalk_cli.weights.bundle import ModelBundle
from edtalk_cli.weights.enhancer import load_enhancer

ProgressFn = Callable[[int, int], None]  # (frames done, total frames)
FrameRange = tuple[int, int]  # [start, stop) output frame indices


class RenderCache(Protocol):
    """Content-addressed store for per-input work, shared by jobs (``edtalk_cli.runner.cache``).

    Each method returns the stored value for (the content of ``path`` or ``image``, ``params``),
    or calls ``compute()``, stores its result and returns it. ``params`` holds everything else
    the value depends on (model identity, precision, fps, crop mode, ...).
    """

    def crops(self, path: Path, params: dict[str, Any], compute: Callable[[], FaceCrops]) -> FaceCrops: ...

    def coefficients(
        self, path: Path, params: dict[str, Any], compute: Callable[[], CoefficientTrack]
    ) -> CoefficientTrack: ...

    def source_encoding(
        self, image: np.ndarray, params: dict[str, Any], compute: Callable[[], SourceEncoding]
    ) -> SourceEncoding: ...


@dataclass
class RenderResult:
    """What a finished job reports."""

    name: str
    output: Path
    frames: int
    fps: float
    duration_s: float
    wall_s: float
    notes: list[str] = field(default_factory=list)
    frames_without_face: int = 0  # output frames passed through unchanged: no face on their source frame
    encoder: str = "libx264"  # the ffmpeg video encoder that wrote the mp4

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0


@dataclass(frozen=True)
class Frames:
    """What :meth:`JobRenderer.frames` returns: everything up to the encoder."""

    images: Iterator[np.ndarray]  # lazy uint8 output frames, produced batch by batch: see pixel_format
    count: int  # how many ``images`` yields (the chunk's length for a frame range)
    notes: list[str]  # user-facing notes about the job (e.g. frames passed through)
    transforms: list[AnyTransform] | None  # the source's crop transforms; None when ``crop: none``
    colorimetry: Colorimetry | None = None  # set: the frames are I420 (the writer tags the output with it)

    @property
    def pixel_format(self) -> str:
        """``"rgb24"``: (H, W, 3) frames; ``"yuv420p"``: tv-range I420 (H * 3 / 2, W), read with
        :attr:`colorimetry`."""
        return "rgb24" if self.colorimetry is None else "yuv420p"


@dataclass(frozen=True)
class PreparedJob:
    """The CPU-side inputs of a job, from :meth:`JobRenderer.prepare` (no model work).

    Each part holds its value or the error computing it raised; :meth:`JobRenderer.frames` raises
    that error where it would have computed the part, so a job prepared ahead fails as it would
    have failed without being prepared.
    """

    job: Job  # the job it was prepared for
    size: int  # the model's crop size the source was cut at
    num_frames: int = 0  # of the job, from its audio
    mel: np.ndarray | None = None  # (n_mel, 80) float64 mel spectrogram of the whole job
    audio_error: Exception | None = None
    source: FaceCrops | None = None  # a photo source's crops, landmarks and frame; None for a video
    # a video source's face track (pipeline/faces.py:source_track); None for a photo or `crop: none`
    track: FaceTrack | None = None
    source_error: Exception | None = None

    def fits(self, job: Job, size: int) -> bool:
        """True when this was prepared for ``job`` at crop size ``size``."""
        return self.size == size and (self.job is job or self.job == job)

    def portable(self) -> bool:
        """True when its errors survive pickling as the same class with the same message, so that
        another process fails the job as this one would (values always pickle)."""
        for error in (self.audio_error, self.source_error):
            if error is None:
                continue
            try:
                back = pickle.loads(pickle.dumps(error))
            except Exception:
                return False
            if type(back) is not type(error) or error_text(back) != error_text(error):
                return False
        return True

    def audio(self) -> tuple[int, np.ndarray]:
        """(frames of the job, mel); raises the error reading the audio raised."""
        if self.audio_error is not None:
            raise self.audio_error
        assert self.mel is not None
        return self.num_frames, self.mel

    def photo(self) -> FaceCrops:
        """The photo source's crops (kept frame included); raises the error cutting them raised."""
        if self.source_error is not None:
            raise self.source_error
        assert self.source is not None
        return self.source

    def video_track(self) -> FaceTrack | None:
        """The video source's face track (None with ``crop: none``); raises the error tracking it raised."""
        if self.source_error is not None:
            raise self.source_error
        return self.track


@dataclass
class FrameStats:
    """Counts filled in while the frames of :meth:`JobRenderer.frames` are produced."""

    frames_without_face: int = 0  # dubbing: output frames whose source frame had no face (passed through)


class _JobResolver:
    """Turns the job's emotion/pose specs into coefficient arrays (CoefficientResolver protocol)."""

    def __init__(
        self, renderer: JobRenderer, job: Job, source_track: CoefficientTrack, batch_size: int
    ) -> None:
        self.renderer = renderer
        self.job = job
        self.source_track = source_track  # coefficients of the source (1 frame, or T for a video)
        self.batch_size = batch_size  # of the job's render options
        self._tracks: dict[tuple[Path, str], CoefficientTrack] = {}

    def _reference(self, path: Path, crop: str) -> CoefficientTrack:
        key = (path, crop)
        if key not in self._tracks:
            self._tracks[key] = self.renderer.reference_track(
                path, self.job.fps, crop=crop, batch_size=self.batch_size
            )
        return self._tracks[key]

    def emotion_coeffs(self, spec: EmotionSpec) -> np.ndarray:
        bundle = self.renderer.bundle
        if not bundle.has_expression:  # lip+pose model: no expression bank, the values are unused
            return np.zeros((1, 10))
        if spec is self.job.emotion and not self.job.emotion_explicit:
            # no emotion asked for: keep the source's own expression (per frame for a video source)
            return self.source_track.expression
        if spec.kind == "name":
            if spec.name not in bundle.emotions:
                known = ", ".join(sorted(bundle.emotions)) or "none"
                raise EdtalkError(
                    f"job '{self.job.name}': emotion '{spec.name}' is not available with {bundle.description} "
                    f"(available: {known})",
                    hint="install the official emotion vectors with `edtalk weights download` "
                    "(predefined_exp_weights/*.npy), or give the emotion as an image, video or 10 coeffs",
                )
            return bundle.emotions[spec.name][None]
        if spec.kind == "coeffs":
            return np.asarray(spec.coeffs, dtype=np.float64)[None]
        if spec.kind in ("image", "video"):
            track = self._reference(spec.path, spec.crop)
            return track.expression if spec.kind == "video" else track.expression[:1]
        raise ValueError(f"unexpected emotion kind {spec.kind!r}")

    def pose_coeffs(self, spec: PoseSpec) -> np.ndarray:
        if spec.kind == "static":
            return self.source_track.pose
        if spec.kind == "video":
            return self._reference(spec.path, spec.crop).pose
        return load_pose_track(spec.path)

    def neutral_emotion(self) -> np.ndarray | None:
        return self.renderer.bundle.emotions.get("neutral")


def load_pose_track(path: Path) -> np.ndarray:
    """A saved pose track: (T, 6) ``.npy``, or the ``pose`` array of an ``edtalk extract`` ``.npz``."""
    try:
        data = np.load(path, allow_pickle=False)
        if isinstance(data, np.lib.npyio.NpzFile):
            if "pose" not in data.files:
                raise MediaError(f"pose track '{path}' has no 'pose' array (it has {data.files})")
            data = data["pose"]
    except (OSError, ValueError) as exc:
        raise MediaError(
            f"pose track '{path}' cannot be read ({exc})", hint="write it with `edtalk extract`"
        ) from None
    if data.ndim != 2 or data.shape[1] != 6 or len(data) == 0:
        raise MediaError(
            f"pose track '{path}' has shape {data.shape}, expected (T, 6)",
            hint="pose tracks hold 6 pose coefficients per frame; make one with `edtalk extract`",
        )
    return data.astype(np.float64)


def cached_crops(
    path: str | Path,
    fps: float,
    *,
    size: int,
    keep_frames: bool = False,
    crop: str = "auto",
    detector: FaceDetector | None = None,
    cache: RenderCache | None = None,
    hwaccel: str | None = None,
) -> FaceCrops:
    """The face crops of ``path`` at ``size`` (:func:`~edtalk_cli.pipeline.faces.face_crops`),
    through ``cache`` when given.

    ``detector``: the calling thread's (a detector serves one thread at a time); a new one when
    None and ``crop`` needs one. ``hwaccel``: a video's decoder accelerator (same frames).
    """
    if crop == "none":
        detector = None
    elif detector is None:
        detector = FaceDetector()

    def compute() -> FaceCrops:
        return face_crops(
            path, size=size, fps=fps, crop=crop, detector=detector, keep_frames=keep_frames, hwaccel=hwaccel
        )

    if cache is None:
        return compute()
    params = {"size": size, "fps": fps, "keep_frames": keep_frames, **crop_key(crop, detector)}
    return cache.crops(Path(path), params, compute)


def prepare_job(
    job: Job,
    size: int,
    *,
    detector: FaceDetector | None = None,
    cache: RenderCache | None = None,
    hwaccel: str | None = None,
) -> PreparedJob:
    """``job``'s CPU-side inputs for a model of crop size ``size``: its audio's mel and frame
    count, and a photo source's crops (kept frame included) or a video source's face track. No
    model is needed, so a process that has none (the runner's parent) prepares jobs with the same
    result as a renderer.

    ``detector``: the calling thread's (see :func:`cached_crops`); ``hwaccel``: the video decoder's
    accelerator (the frames are the same). Never raises for the job's
    inputs: their errors are kept in the result (see :class:`PreparedJob`).
    """
    try:
        # with the mouth from a video the audio is only muxed, so it may be silent
        features = audio_features(job.audio, fps=job.fps, allow_silence=job.mouth.kind == "video")
    except Exception as exc:
        return PreparedJob(job, size, audio_error=exc)
    prepared = PreparedJob(job, size, features.num_frames, features.mel)
    if job.source.kind == "video":
        if job.source.crop == "none":
            return prepared
        try:
            track = source_track(
                job.source.path,
                job.fps,
                job.source.crop,
                detector or FaceDetector(),
                features.num_frames,
                hwaccel=hwaccel,
            )
        except Exception as exc:
            return replace(prepared, source_error=exc)
        return replace(prepared, track=track)
    try:
        crops = cached_crops(
            job.source.path,
            job.fps,
            size=size,
            keep_frames=True,
            crop=job.source.crop,
            detector=detector,
            cache=cache,
        )
    except Exception as exc:
        return replace(prepared, source_error=exc)
    return replace(prepared, source=crops)


class JobRenderer:
    """Renders jobs with one loaded model bundle; keep it across jobs to reuse the models.

    ``options`` fix how the model is evaluated (precision, engine, ONNX export) and are the
    default of :meth:`render` and :meth:`frames`, which take each job's own options (another
    batch size, the same model evaluation). ``options.engine="onnxruntime"`` evaluates the
    models through the ONNX export in ``options.onnx_dir``.
    """

    def __init__(
        self,
        bundle: ModelBundle,
        *,
        device: str | torch.device = "cpu",
        options: RenderOptions | None = None,
        detector: FaceDetector | None = None,
        cache: RenderCache | None = None,
    ) -> None:
        options = RenderOptions() if options is None else options
        self.bundle = bundle
        self.options = options
        self.cache = cache  # optional content-addressed cache of crops, encodings and tracks
        self.engine_name = options.engine
        if options.engine == "onnxruntime":
            from edtalk_cli.pipeline.onnx_backend import check_engine, open_onnx

            check_engine(options.engine, options.onnx_dir, options.precision)
            assert options.onnx_dir is not None  # check_engine asks for it
            self.device = torch.device("cpu")  # onnxruntime places the work; torch tensors stay here
            self.engine, self.audio2lip = open_onnx(
                bundle.generator,
                bundle.kind,
                bundle.files,
                options.onnx_dir,
                device=device,
                batch_size=options.batch_size,
            )
        else:
            self.device = torch.device(device)
            self.engine = RenderEngine(
                bundle.generator, device=device, precision=options.precision, batch_size=options.batch_size
            )
            self.audio2lip = bundle.audio2lip.to(device=self.device, dtype=self.engine.dtype).eval()
        self._detector = detector
        # NVDEC for the job's video decodes on a CUDA device where ffmpeg can use it (same frames)
        self.hwaccel = decode_accel(device)
        self._enhancers: dict[Path, torch.nn.Module] = {}  # resolved GFPGAN file -> network

    def options_for(self, options: RenderOptions | None) -> RenderOptions:
        """``options`` (default: the renderer's own), checked to evaluate the model as it was loaded."""
        if options is None:
            return self.options
        if not options.same_model(self.options):
            raise ValueError(
                f"this renderer evaluates the model with {self.options.engine} at {self.options.precision}, "
                f"not {options.engine} at {options.precision}: build a JobRenderer for those options"
            )
        return options

    @property
    def detector(self) -> FaceDetector:
        if self._detector is None:
            self._detector = FaceDetector()
        return self._detector

    def crops(
        self,
        path: Path,
        fps: float,
        *,
        keep_frames: bool = False,
        crop: str = "auto",
        detector: FaceDetector | None = None,
        cache: RenderCache | None = None,
    ) -> FaceCrops:
        """The face crops of ``path`` at the model's size, through the cache when there is one.

        ``detector`` and ``cache`` default to the renderer's (another thread passes its own
        detector: a detector serves one thread at a time).
        """
        return cached_crops(
            path,
            fps,
            size=self.engine.size,
            keep_frames=keep_frames,
            crop=crop,
            detector=self.detector if detector is None and crop != "none" else detector,
            cache=self.cache if cache is None else cache,
            hwaccel=self.hwaccel,
        )

    def prepare(
        self, job: Job, *, detector: FaceDetector | None = None, cache: RenderCache | None = None
    ) -> PreparedJob:
        """The job's CPU-side inputs: its audio's mel and frame count, a photo source's crops or a
        video source's face track.

        No model runs, so another thread may prepare the next job while this renderer renders
        (with its own ``detector``; ``cache`` defaults to the renderer's). Never raises for the
        job's inputs: their errors are kept in the result (see :class:`PreparedJob`).
        """
        if detector is None and job.source.crop != "none":
            detector = self.detector
        return prepare_job(
            job,
            self.engine.size,
            detector=detector,
            cache=self.cache if cache is None else cache,
            hwaccel=self.hwaccel,
        )

    # ----- cache hooks (no-ops without a cache) -------------------------------------------
    def _model_params(self, batch_size: int | None) -> dict[str, Any]:
        """What model-side cached values depend on: batching changes the last bits, so the batch
        size too, for values computed in batches (None: computed one at a time)."""
        params: dict[str, Any] = {
            "model": self.bundle.identity,
            "kind": self.bundle.kind,
            "precision": self.engine.precision,
            "device": self.device.type,
        }
        if batch_size is not None:
            params["batch_size"] = batch_size
        if self.engine_name != "torch":  # the torch engine's keys stay as they were
            params["engine"] = self.engine_name
        return params

    def reference_track(
        self, path: Path, fps: float, *, crop: str = "auto", batch_size: int | None = None
    ) -> CoefficientTrack:
        """Coefficients of every face crop of a reference image or clip (cached by content), encoded
        ``batch_size`` crops at a time (default: the renderer's options)."""
        batch = self.options.batch_size if batch_size is None else batch_size

        def compute() -> CoefficientTrack:
            return self.engine.extract_coefficients(self.crops(path, fps, crop=crop).crops, batch_size=batch)

        if self.cache is None:
            return compute()
        params = {
            **self._model_params(batch),
            "fps": fps,
            **crop_key(crop, self.detector if crop != "none" else None),
        }
        return self.cache.coefficients(Path(path), params, compute)

    def _set_source(self, face: np.ndarray) -> None:
        """``engine.set_source(face)``, through the cache when there is one."""
        if self.cache is None:
            self.engine.set_source(face)
            return
        params = self._model_params(None)
        enc = self.cache.source_encoding(face, params, lambda: self.engine.set_source(face))
        dev, dtype = self.device, self.engine.dtype
        self.engine.source = SourceEncoding(
            enc.latent.to(dev, dtype),
            [f.to(dev, dtype) for f in enc.feats],
            None if enc.eem_normalized is None else [n.to(dev, dtype) for n in enc.eem_normalized],
        )

    # ----- mouth --------------------------------------------------------------------------
    @torch.no_grad()
    def audio_mouth(self, mel: np.ndarray, num_frames: int, fps: float) -> np.ndarray:
        """Mouth coefficients (T, 20) from the mel spectrogram: Audio2Lip on each window, then smoothing."""
        outputs = []
        step = 64  # windows per Audio2Lip batch: bounds its activations (~1 MB per window)
        for start in range(0, num_frames, step):
            windows = mel_windows(mel, num_frames, fps, slice(start, start + step))  # (<=256, 80, 16) float64
            chunk = torch.from_numpy(windows).to(self.device, self.engine.dtype)
            with tensor_float32(self.engine.allow_tf32):  # Audio2Lip runs without autocast
                outputs.append(self.audio2lip(chunk[:, None]))
        mouth = smooth_mouth_coeffs(torch.cat(outputs))
        return mouth.double().cpu().numpy()

    # ----- the job ------------------------------------------------------------------------
    def plan(
        self,
        job: Job,
        num_frames: int,
        source_track: CoefficientTrack,
        options: RenderOptions | None = None,
    ) -> CoefficientPlan:
        """The job's per-frame coefficient plan; reference clips are encoded with ``options``."""
        batch = self.options_for(options).batch_size
        return build_plan(job, num_frames, job.fps, _JobResolver(self, job, source_track, batch))

    def _plan_builder(
        self, job: Job, num_frames: int, options: RenderOptions | None = None
    ) -> Callable[[np.ndarray, np.ndarray], CoefficientPlan]:
        """``build(pose (T, 6), expression (T, 10))``: the job's float64 plan for a per-frame source track
        (one resolver, so reference clips are read once)."""
        no_mouth = np.zeros((num_frames, 0))
        batch = self.options_for(options).batch_size
        resolver = _JobResolver(self, job, CoefficientTrack(no_mouth, np.zeros((num_frames, 6))), batch)

        def build(pose: np.ndarray, expression: np.ndarray) -> CoefficientPlan:
            resolver.source_track = CoefficientTrack(no_mouth, pose, expression)
            return build_plan(job, num_frames, job.fps, resolver, dtype=np.float64)

        return build

    def frames(
        self,
        job: Job,
        frame_range: FrameRange | None = None,
        *,
        stats: FrameStats | None = None,
        options: RenderOptions | None = None,
        prepared: PreparedJob | None = None,
        planes: bool = False,
    ) -> Frames:
        """Everything up to the encoder: lazy uint8 frames, frame count, notes, crop transforms.

        ``planes=True``: a dubbing job eligible for it (:func:`dubbing_on_planes`) gives I420 frames
        (``Frames.pixel_format`` says which; RGB otherwise, and always without ``planes``).

        ``stats`` is filled in as the frames are produced (read it once they are consumed).
        ``options``: the job's render options (default: the renderer's own).
        ``prepared``: the job's :meth:`prepare` result, computed ahead (default: prepared here).

        Frames are produced batch by batch as the iterator is consumed. ``frame_range=(a, b)``
        yields only output frames ``a .. b-1`` (a chunk; the count returned is then ``b - a``).
        Everything else is computed for the whole job and batches start at ``a``, so a chunk's
        frames are exactly those of the full render when ``a`` is a multiple of the batch size.
        """
        if job.emotion_explicit and not self.bundle.has_expression:
            raise EdtalkError(
                f"job '{job.name}' sets an emotion, but {self.bundle.description} is the lip+pose model, "
                "which has no expression bank",
                hint="use the full EDTalk.pt (model: edtalk) or remove the emotion",
            )
        options = self.options_for(options)
        if prepared is None or not prepared.fits(job, self.engine.size):
            prepared = self.prepare(job)
        num_frames, mel = prepared.audio()
        span = (0, num_frames) if frame_range is None else _check_range(frame_range, num_frames)
        mouth = self._mouth(job, mel, num_frames, options)
        del mel
        self.engine.clear_cache()
        notes: list[str] = []
        colorimetry = None
        if job.source.kind == "video":
            stats = stats if stats is not None else FrameStats()
            on_planes = planes and dubbing_on_planes(job)
            frames, transforms, colorimetry = self._video_source_frames(
                job, num_frames, mouth, notes, span, stats, options, prepared, on_planes
            )
        else:
            source = prepared.photo()
            frames, transforms = self._image_source_frames(job, source, num_frames, mouth, span, options)
        return Frames(
            images=frames,
            count=span[1] - span[0],
            notes=notes,
            transforms=transforms,
            colorimetry=colorimetry,
        )

    def render(
        self,
        job: Job,
        progress: ProgressFn | None = None,
        before_publish: Callable[[Path, RenderResult], None] | None = None,
        *,
        options: RenderOptions | None = None,
        prepared: PreparedJob | None = None,
    ) -> RenderResult:
        """Render ``job`` to ``job.output`` (written under a temporary name, then renamed) with
        ``options``, the job's render options (default: the renderer's own), from ``prepared``
        when the job was prepared ahead (:meth:`prepare`).

        ``before_publish(tmp, result)`` runs on the finished temporary file just before the rename."""
        started = time.perf_counter()
        stats = FrameStats()
        produced = self.frames(job, stats=stats, options=options, prepared=prepared, planes=True)
        frames, num_frames, notes = produced.images, produced.count, produced.notes

        def counted() -> Iterator[np.ndarray]:
            for done, frame in enumerate(frames, start=1):
                if progress is not None:
                    progress(done, num_frames)
                yield frame

        def result_of(written: WriteResult) -> RenderResult:
            return RenderResult(
                name=job.name,
                output=job.output,
                frames=written.frames,
                fps=job.fps,
                duration_s=written.duration_s,
                wall_s=time.perf_counter() - started,
                notes=notes,
                frames_without_face=stats.frames_without_face,
                encoder=written.encoder,
            )

        def publishing(tmp: Path, written: WriteResult) -> None:
            if before_publish is not None:
                before_publish(tmp, result_of(written))

        job.output.parent.mkdir(parents=True, exist_ok=True)
        written = write_mp4(
            counted(),
            job.output,
            job.fps,
            audio_path=job.audio,
            n_frames=num_frames,
            crf=job.encode.crf,
            preset=job.encode.preset,
            codec=job.encode.codec,
            cuda=self.device.type == "cuda",
            before_publish=publishing,
            colorimetry=produced.colorimetry,
        )
        return result_of(written)

    def _mouth(self, job: Job, mel: np.ndarray, num_frames: int, options: RenderOptions) -> np.ndarray:
        if job.mouth.kind == "audio":
            return self.audio_mouth(mel, num_frames, job.fps)
        track = self.reference_track(
            job.mouth.path, job.fps, crop=job.mouth.crop, batch_size=options.batch_size
        ).mouth
        return track[extend_indices(len(track), num_frames, job.mouth.mode)]

    def enhancer(self, job: Job) -> FaceEnhancer | None:
        """The job's face enhancer (GFPGAN loaded once per weights file), None without ``enhance``."""
        path = enhancer_weights_file(job, self.bundle.weights_dir)
        if path is None or job.enhance is None:
            return None
        network = None
        if job.enhance.strength > 0:  # strength 0 is the bicubic upscale alone
            key = path.resolve()
            if key not in self._enhancers:
                self._enhancers[key] = load_enhancer(path, device=self.device)
            network = self._enhancers[key]
        return FaceEnhancer(network, strength=job.enhance.strength, device=self.device)

    def _image_source_frames(
        self,
        job: Job,
        source: FaceCrops,
        num_frames: int,
        mouth: np.ndarray,
        span: FrameRange,
        options: RenderOptions,
    ):
        batch = options.batch_size
        face = source.crops[0]
        self._set_source(face)
        source_track = self.engine.source_coefficients()  # from the encoding above: encoded once
        plan = self.plan(job, num_frames, source_track, options)
        expression = plan.expression if self.bundle.has_expression else None
        if span == (0, num_frames):
            faces = self.engine.render(num_frames, mouth, plan.pose, expression, batch_size=batch)
        else:  # a chunk: the same coefficient rows, batched from the chunk's first frame
            coeffs = self.engine.coefficient_matrix(num_frames, mouth, plan.pose, expression)
            batches = self.engine.render_batches(coeffs[span[0] : span[1]], batch_size=batch)
            faces = (face for images in batches for face in tensor_to_images(images))
        enhancer = self.enhancer(job)
        if enhancer is not None:  # (2S, 2S) faces from here on
            faces = enhancer.stream(faces, batch)
        paster = FacePaster(job.source.paste_options, self.engine.size, device=self.device)
        whole_frame = source.transforms is None  # crop: none: the whole image is the face
        if whole_frame and not (job.source.paste_back and paster.needs_landmarks):
            height, width = source.frames[0].shape[:2]
            return (resize_to_frame(f, height, width) for f in faces), None
        if not job.source.paste_back:
            return faces, source.transforms
        background = source.frames[0]
        landmarks = None if whole_frame or source.landmarks is None else source.landmarks[0]
        transform, crop_landmarks = paster.placement(
            background, None if whole_frame else source.transforms[0], landmarks, job.source.path
        )
        pasted = paster.paste_stream(
            background,
            faces,
            transform,
            landmarks=crop_landmarks,
            reference=face,
            batch=batch,
        )
        return pasted, source.transforms

    def _video_source_frames(
        self,
        job: Job,
        num_frames: int,
        mouth: np.ndarray,
        notes: list[str],
        span: FrameRange,
        stats: FrameStats,
        options: RenderOptions,
        prepared: PreparedJob,
        planes: bool = False,
    ):
        """Dubbing: every output frame re-lip-syncs the matching source frame and is pasted back
        (:class:`~edtalk_cli.pipeline.paste.DubbingPaster`; frames without a face pass through).

        The source is streamed: the frames the job uses are tracked in one pass, then each
        batch of source frames is encoded once, and that encoding gives both the frames' own
        coefficients (for the plan, see :func:`row_local_plan`) and the rendered faces. Memory
        does not grow with the source's length. When the plan mixes source frames across output
        frames (a segment with ``pose: static``), the coefficients take a pass of their own.
        ``prepared``: the job's inputs, the source's face track among them (:meth:`PreparedJob.video_track`).
        ``planes``: the source decodes I420 planes and the frames are I420 when it can (the
        colorimetry returned last; None: RGB frames).
        """
        source = VideoFaceSource(
            job.source.path,
            fps=job.fps,
            size=self.engine.size,
            crop=job.source.crop,
            detector=self._detector,
            max_frames=num_frames,
            planes=planes,
            hwaccel=self.hwaccel,
            track=prepared.video_track(),
        )
        if source.num_frames == 0:
            raise MediaError(f"source video '{job.source.path}' has no frames at {job.fps} fps")
        used = min(source.num_frames, num_frames)
        index = extend_indices(used, num_frames, job.source.loop)
        if source.total_frames > num_frames:
            notes.append(f"source video trimmed from {source.total_frames} to {num_frames} frames")
        elif source.num_frames < num_frames:
            notes.append(f"source video ({source.num_frames} frames) extended by {job.source.loop}")
        if source.missing_frames:
            effect = (
                "their output frames are the source frames unchanged"
                if job.source.paste_back
                else "their crop was interpolated from the neighbouring frames"
            )
            notes.append(f"{source.missing_frames} source frames had no face; {effect}")
        batch = options.batch_size
        local = row_local_plan(num_frames, self._plan_builder(job, num_frames, options))
        coeffs = None
        if local is None:  # the plan needs every frame's coefficients first: a pass of their own
            own = self.engine.extract_coefficients(  # per source frame
                (source.crop(i) for i in range(used)), batch_size=batch
            )
            plan = self.plan(job, num_frames, own.select(index), options)
            expression = plan.expression if self.bundle.has_expression else None
            coeffs = self.engine.coefficient_matrix(num_frames, mouth, plan.pose, expression)
        paster = (
            DubbingPaster(source, job.source.paste_options, self.engine.size, device=self.device)
            if job.source.paste_back
            else None
        )
        paste = paster is not None and paster.active
        enhancer = self.enhancer(job)

        def frames() -> Iterator[np.ndarray]:
            first, stop = span
            for start in range(first, stop, batch):
                end = min(start + batch, stop)
                ids = index[start:end]
                crops = source.crops(ids)
                distinct, firsts, position = np.unique(ids, return_index=True, return_inverse=True)
                encoding = self.engine.encode_frames(crops[firsts])
                if local is None:
                    rows = coeffs[start:end]
                else:
                    own = self.engine.coefficient_track(
                        self.engine.frame_coefficients(encoding).cpu().numpy()
                    )
                    own = own.select(position)
                    pose, expression = local.rows(slice(start, end), own.pose, own.expression)
                    rows = self.engine.coefficient_matrix(
                        end - start,
                        mouth[start:end],
                        pose,
                        expression if self.bundle.has_expression else None,
                    )
                if len(distinct) < len(ids):  # a ping-pong turn or a one-frame source: encoded once
                    encoding = select_frames(encoding, position)
                faces = self.engine.render_encoded(encoding, rows)
                images = tensor_to_images(faces)  # (B, S, S, 3); (B, 2S, 2S, 3) once enhanced
                if enhancer is not None:
                    images = enhancer.enhance(images)
                if paste:  # on a CUDA device the batch is blended at once, in torch
                    for output in paster.frames(ids, images, crops):
                        stats.frames_without_face = paster.without_face
                        yield output
                    continue
                for face in images:
                    if source.transforms is None:  # crop: none: back to the video's frame size
                        yield resize_to_frame(face, source.info.height, source.info.width)
                    else:
                        yield face

        return frames(), source.transforms, source.colorimetry


def dubbing_on_planes(job: Job) -> bool:
    """Whether a dubbing job's output frames are made on its source's I420 planes (no full-frame
    colour conversion; :class:`~edtalk_cli.pipeline.paste.DubbingPaster`): paste-back on and a crop
    ``auto`` or ``box``, wherever the faces are blended. The source then decodes planes if
    :meth:`Colorimetry.of_video <edtalk_cli.video.yuv.Colorimetry.of_video>` reads it (yuv420p or
    yuvj420p, a bt601 / bt709 or untagged matrix, even size); any other job or source is RGB."""
    return job.source.kind == "video" and job.source.paste_back and job.source.crop in ("auto", "box")


def _check_range(frame_range: FrameRange, num_frames: int) -> FrameRange:
    start, stop = (int(v) for v in frame_range)
    if not 0 <= start < stop <= num_frames:
        raise ValueError(f"frame range [{start}, {stop}) is not inside the job's {num_frames} frames")
    return start, stop
