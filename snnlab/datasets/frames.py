"""From events to frames: the ``data.frames`` options and the tonic transforms they stand for.

Events are tonic structured arrays (``x``, ``y``, ``t`` in µs from the sample's start, ``p``; audio
has no ``y``). The deterministic steps run in this order: denoise, downsample, merge polarities,
centre crop; training augmentations (``augment.py``) come next; then tonic's ``ToFrame`` counts the
events of each time bin and pixel into ``[T, P, H, W]`` (audio: ``[T, P, N]``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Literal, NamedTuple

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ..errors import ConfigError

Kind = Literal["camera", "channels"]


class Sensor(NamedTuple):
    """tonic's sensor size: (width, height, polarities); audio is (channels, 1, 1)."""

    width: int
    height: int
    polarities: int


class FrameOptions(BaseModel):
    """``data.frames``: how a recording becomes T frames.

    ``bin_ms: null`` spreads T bins over each recording, of equal duration (``bin_by: time``,
    tonic's ``n_time_bins``) or with equal event counts (``bin_by: events``, tonic's ``n_event_bins``,
    SpikingJelly's ``split_by='number'``); a number makes bins of that many milliseconds from the
    recording's start, so recordings longer than ``time_steps * bin_ms`` are cut and shorter ones
    end in empty frames. ``downsample`` divides the
    pixel (audio: channel) coordinates; ``crop`` is the centred ``[width, height]`` (or one size for
    both) kept after downsampling; ``denoise_ms`` drops events with no neighbour within that time
    (tonic's ``Denoise``); ``binary`` serves 0/1 instead of event counts.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    time_steps: int = Field(16, ge=1, description="T, the number of frames")
    bin_ms: float | None = Field(None, gt=0, description="null: T bins spread over each recording")
    bin_by: Literal["time", "events"] = Field("time", description="with bin_ms null: equal durations or event counts")
    polarity: bool = Field(True, description="ON and OFF events in separate channels; false: one channel")
    downsample: int = Field(1, ge=1, description="divide x and y (audio: channel index) by this")
    crop: int | tuple[int, int] | None = Field(None, description="centred [width, height] kept, after downsampling")
    denoise_ms: float | None = Field(None, gt=0, description="drop events with no neighbour within this time")
    binary: bool = Field(False, description="clip counts to 1")

    def crop_size(self) -> tuple[int, int] | None:
        """``crop`` as (width, height)."""
        if self.crop is None:
            return None
        return (self.crop, self.crop) if isinstance(self.crop, int) else tuple(self.crop)  # type: ignore[return-value]


class Geometry(NamedTuple):
    """The sensor as read, after downsampling (what a crop cuts from), and as framed."""

    sensor: Sensor
    downsampled: Sensor
    framed: Sensor


def geometry(sensor: Sensor, kind: Kind, frames: FrameOptions) -> Geometry:
    """Sizes after each step, refusing options that do not fit the data (``ConfigError`` naming the key)."""
    issues = []
    if kind == "channels":
        issues += [
            (f"data.frames.{k}", "applies to camera data only") for k in ("crop", "denoise_ms") if getattr(frames, k)
        ]
    if frames.bin_by == "events" and frames.bin_ms is not None:
        issues.append(("data.frames.bin_by", "events (equal event counts) needs bin_ms: null"))
    k = frames.downsample
    down = Sensor(math.ceil(sensor.width / k), math.ceil(sensor.height / k), sensor.polarities)
    crop = frames.crop_size()
    if crop is not None and (crop[0] > down.width or crop[1] > down.height):
        issues.append(("data.frames.crop", f"{list(crop)} is larger than the {down.width} x {down.height} sensor"))
    if issues:
        raise ConfigError(issues)
    width, height = crop if crop is not None else (down.width, down.height)
    return Geometry(sensor, down, Sensor(width, height, sensor.polarities if frames.polarity else 1))


def input_shape(framed: Sensor, kind: Kind) -> tuple[int, ...]:
    """One step of input: ``[C, H, W]`` for cameras, ``[C * N]`` for audio channels."""
    if kind == "channels":
        return (framed.polarities * framed.width,)
    return (framed.polarities, framed.height, framed.width)


def prepare_transforms(geo: Geometry, frames: FrameOptions, centre_crop: bool) -> list[Callable[[Any], Any]]:
    """The deterministic tonic transforms, in order; the centre crop is left out when a random crop replaces it."""
    import tonic.transforms as T

    steps: list[Callable[[Any], Any]] = []
    if frames.denoise_ms:
        steps.append(T.Denoise(filter_time=frames.denoise_ms * 1000))
    if frames.downsample > 1:
        steps.append(T.Downsample(spatial_factor=1 / frames.downsample))
    if not frames.polarity and geo.sensor.polarities > 1:
        steps.append(T.MergePolarities())
    crop = frames.crop_size()
    if crop is not None and centre_crop:
        steps.append(T.CenterCrop(sensor_size=tuple(geo.downsampled), size=crop))
    return steps


def frame_transform(framed: Sensor, frames: FrameOptions) -> Callable[[Any], np.ndarray]:
    """tonic's ``ToFrame`` for ``time_steps`` bins: spread over the recording, or of ``bin_ms`` each."""
    import tonic.transforms as T

    if frames.bin_ms is None and frames.bin_by == "events":
        return T.ToFrame(sensor_size=tuple(framed), n_event_bins=frames.time_steps)
    if frames.bin_ms is None:
        return T.ToFrame(sensor_size=tuple(framed), n_time_bins=frames.time_steps)
    window = frames.bin_ms * 1000
    return T.ToFrame(sensor_size=tuple(framed), time_window=window, start_time=0, end_time=window * frames.time_steps)


def frame_shape(framed: Sensor, kind: Kind, time_steps: int) -> tuple[int, ...]:
    """What ``ToFrame`` returns: ``[T, P, H, W]``, or ``[T, P, N]`` for audio."""
    if kind == "channels":
        return (time_steps, framed.polarities, framed.width)
    return (time_steps, framed.polarities, framed.height, framed.width)


def apply(transforms: Sequence[Callable[[Any], Any]], events: np.ndarray) -> np.ndarray:
    """Run event transforms in order (an empty recording stays empty: several tonic transforms fail on one)."""
    for transform in transforms:
        if len(events) == 0:
            break
        events = transform(events)
    return events


def to_frames(events: np.ndarray, to_frame: Callable[[Any], np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    """Frames of exactly ``shape`` (int16 counts): no events gives zeros; fixed-size bins are cut or padded to T."""
    out = np.zeros(shape, dtype=np.int16)
    if len(events):
        frames = to_frame(events)[: shape[0]]
        out[: len(frames)] = frames
    return out


DEFAULT_FRAMES = FrameOptions()
