"""Frames of a game as a file or a TensorBoard video.

mp4 goes through the ffmpeg binary that the imageio-ffmpeg wheel carries, so no system
ffmpeg is needed. TensorBoard shows a video as an animated GIF in its Images tab; torch's
`add_video` builds that GIF with moviepy and, when moviepy (or the `moviepy.editor` module
that moviepy 2 removed) is missing, prints a line and writes nothing, so the GIF is
encoded here with Pillow and written as the same image summary.
"""

import io
from pathlib import Path

import numpy as np

from nn.errors import UserError

FORMATS = (".mp4", ".gif", ".png")
MIN_GIF_FRAME_MS = 20  # browsers show a GIF frame shorter than this at 100 ms


def even_sized(frame: np.ndarray) -> np.ndarray:
    """H.264 with 4:2:0 colour needs an even width and height: pad with the edge colour."""
    height, width = frame.shape[:2]
    return np.pad(frame, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")


def write_mp4(frames: list[np.ndarray], path: Path, fps: float) -> None:
    import imageio_ffmpeg

    first = even_sized(frames[0])
    # yuv420p: the pixel format every player (browsers included) decodes
    writer = imageio_ffmpeg.write_frames(
        str(path), (first.shape[1], first.shape[0]), fps=fps, codec="libx264",
        pix_fmt_in="rgb24", pix_fmt_out="yuv420p", quality=7, macro_block_size=1,
        ffmpeg_log_level="error", output_params=["-f", "mp4"])
    writer.send(None)  # start ffmpeg
    try:
        for frame in frames:
            writer.send(np.ascontiguousarray(even_sized(frame)))
    finally:
        writer.close()


def gif_bytes(frames: list[np.ndarray], fps: float) -> bytes:
    from PIL import Image

    images = [Image.fromarray(f) for f in frames]
    out = io.BytesIO()
    images[0].save(out, format="GIF", save_all=True, append_images=images[1:], loop=0,
                   duration=max(MIN_GIF_FRAME_MS, round(1000 / fps)))
    return out.getvalue()


def check_record_path(path: Path) -> None:
    """A recording's file name says its format; refused before anything is played."""
    if Path(path).suffix.lower() not in FORMATS:
        raise UserError(f"record={path}: use a .mp4 or .gif (all frames) or .png (last frame)")


def save_frames(frames: list[np.ndarray], path: Path, fps: float) -> None:
    """.mp4 or .gif: every frame; .png: the last one. Written atomically (a file already
    there stays whole until the new one is complete)."""
    from PIL import Image

    from nn.checkpoint import atomic_write

    if not frames:
        raise UserError("nothing was recorded")
    check_record_path(path)
    suffix = path.suffix.lower()
    if suffix == ".mp4":
        atomic_write(path, lambda tmp: write_mp4(frames, tmp, fps))
    elif suffix == ".gif":
        atomic_write(path, lambda tmp: Path(tmp).write_bytes(gif_bytes(frames, fps)))
    else:
        atomic_write(path, lambda tmp: Image.fromarray(frames[-1]).save(tmp, format="PNG"))


def shrink(frame: np.ndarray, max_width: int) -> np.ndarray:
    """At most `max_width` pixels wide (TensorBoard's event files stay small)."""
    from PIL import Image

    height, width = frame.shape[:2]
    if width <= max_width:
        return frame
    size = (max_width, max(1, round(height * max_width / width)))
    return np.asarray(Image.fromarray(frame).resize(size, Image.Resampling.BILINEAR))


def video_summary(tag: str, frames: list[np.ndarray], fps: float, max_width: int = 320):
    """A TensorBoard image summary holding the frames as an animated GIF."""
    from tensorboard.compat.proto.summary_pb2 import Summary

    small = [shrink(f, max_width) for f in frames]
    height, width, channels = small[0].shape
    image = Summary.Image(height=height, width=width, colorspace=channels,
                          encoded_image_string=gif_bytes(small, fps))
    return Summary(value=[Summary.Value(tag=tag, image=image)])
