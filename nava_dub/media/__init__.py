"""The only door to ffmpeg and ffprobe: probe a file, decode its audio and frames, write outputs.

* Time zero is the first video frame (the container's start for audio-only files), for frames and samples.
* Frame f of a stream at fps F is the picture shown from f/F to (f+1)/F. A time range holds the frames
  whose start lies in it (frame_range); a frame at another rate shows the source frame on screen at its
  start. Variable-frame-rate sources are read on a grid at their average rate.
* Frames are RGB uint8 [T, H, W, 3] and display-oriented: ffmpeg applies a phone clip's rotation while
  decoding. write_output() turns new frames back and restores the rotation, so frames read from a source
  can be written back as they are; an unchanged picture is stream-copied instead.
* Writes go to a hidden temporary file beside the output, renamed into place only when complete.
* cut_excerpt() cuts a part of a source losslessly (FFV1 and PCM), for previews of long inputs.

info.py probes, decode.py reads, encode.py writes, cut.py cuts. numpy and ffmpeg-python only: no torch here.
"""

from nava_dub.media.cut import EXCERPT_SUFFIX, cut_excerpt
from nava_dub.media.decode import frame_range, iter_frames, read_audio, read_frames
from nava_dub.media.encode import (
    VIDEO_CODECS,
    AudioTrack,
    check_output_path,
    write_new_video,
    write_output,
    write_wav,
)
from nava_dub.media.info import (
    AudioStream,
    MediaInfo,
    Stream,
    VideoStream,
    exact_seconds,
    ffmpeg_available,
    probe,
    require_audio,
    require_ffmpeg,
    require_video,
)

__all__ = [
    "EXCERPT_SUFFIX", "check_output_path", "cut_excerpt",
    "VIDEO_CODECS", "AudioStream", "AudioTrack", "MediaInfo", "Stream", "VideoStream", "exact_seconds",
    "ffmpeg_available", "frame_range", "iter_frames", "probe", "read_audio", "read_frames", "require_audio",
    "require_ffmpeg", "require_video", "write_new_video", "write_output", "write_wav",
]
