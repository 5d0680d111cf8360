"""Video layer: decoding, face detection and tracking, crop, paste-back and the mp4 writer.

No model code lives here; :mod:`edtalk_cli.pipeline` calls these functions.

The names below are imported on first use, so a submodule (``edtalk_cli.video.masks`` for the
manifest) loads without the decoders, the alignment and the mp4 writer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edtalk_cli.video.align import (
        AlignTransform,
        crop_image,
        official_transform,
        smooth_transforms,
        warp_to_crop,
    )
    from edtalk_cli.video.crop import (
        CropTransform,
        crop_face,
        feather_mask,
        from_model_tensor,
        official_minmax_to_uint8,
        paste_back,
        to_model_tensor,
    )
    from edtalk_cli.video.faces import (
        Box,
        FaceDetector,
        FaceTrack,
        crop_box_for_face,
        detect_face,
        detect_faces,
        find_face,
        find_face_landmarks,
        s3fd_weights_path,
        track_faces,
    )
    from edtalk_cli.video.io import (
        VideoInfo,
        is_image_path,
        is_video_path,
        iter_video_frames,
        probe_video,
        read_image,
        read_video,
        resampled_frame_count,
    )
    from edtalk_cli.video.writer import VideoWriter, WriteResult, mp4_top_level_atoms, probe_mp4, write_mp4

from edtalk_cli.lazy import lazy_getattr

_HOMES = {  # name -> submodule that defines it
    "AlignTransform": "align",
    "crop_image": "align",
    "official_transform": "align",
    "smooth_transforms": "align",
    "warp_to_crop": "align",
    "CropTransform": "crop",
    "crop_face": "crop",
    "feather_mask": "crop",
    "from_model_tensor": "crop",
    "official_minmax_to_uint8": "crop",
    "paste_back": "crop",
    "to_model_tensor": "crop",
    "Box": "faces",
    "FaceDetector": "faces",
    "FaceTrack": "faces",
    "crop_box_for_face": "faces",
    "detect_face": "faces",
    "detect_faces": "faces",
    "find_face": "faces",
    "find_face_landmarks": "faces",
    "s3fd_weights_path": "faces",
    "track_faces": "faces",
    "VideoInfo": "io",
    "is_image_path": "io",
    "is_video_path": "io",
    "iter_video_frames": "io",
    "probe_video": "io",
    "read_image": "io",
    "read_video": "io",
    "resampled_frame_count": "io",
    "VideoWriter": "writer",
    "WriteResult": "writer",
    "mp4_top_level_atoms": "writer",
    "probe_mp4": "writer",
    "write_mp4": "writer",
}


__getattr__ = lazy_getattr(__name__, _HOMES)


__all__ = [
    "AlignTransform",
    "Box",
    "CropTransform",
    "FaceDetector",
    "FaceTrack",
    "VideoInfo",
    "VideoWriter",
    "WriteResult",
    "crop_box_for_face",
    "crop_face",
    "crop_image",
    "detect_face",
    "detect_faces",
    "feather_mask",
    "find_face",
    "find_face_landmarks",
    "from_model_tensor",
    "is_image_path",
    "is_video_path",
    "iter_video_frames",
    "mp4_top_level_atoms",
    "official_minmax_to_uint8",
    "official_transform",
    "paste_back",
    "probe_mp4",
    "probe_video",
    "read_image",
    "read_video",
    "resampled_frame_count",
    "s3fd_weights_path",
    "smooth_transforms",
    "to_model_tensor",
    "track_faces",
    "warp_to_crop",
    "write_mp4",
]
