"""``data.augment``: random changes to the training recordings, made on events by tonic's transforms.

They apply to the training split only, after the deterministic steps of ``frames.py`` and before
framing, so every epoch sees new frames; the deterministic part stays cached.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..errors import ConfigError
from .frames import FrameOptions, Geometry, Kind


class AugmentOptions(BaseModel):
    """Each option is off by default.

    ``random_crop`` cuts the ``frames.crop`` window at a random place instead of the centre;
    ``flip_lr`` / ``flip_ud`` mirror a recording with that probability; ``time_jitter_ms`` adds
    Gaussian noise of that standard deviation to every timestamp; ``drop_event`` drops each event
    with that probability; ``event_drop`` applies EventDrop (Gu et al. 2021: drop by time, by area,
    at random, or not at all).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    random_crop: bool = False
    flip_lr: float = Field(0.0, ge=0, le=1)
    flip_ud: float = Field(0.0, ge=0, le=1)
    time_jitter_ms: float = Field(0.0, ge=0)
    drop_event: float = Field(0.0, ge=0, lt=1)
    event_drop: bool = False

    def active(self) -> bool:
        """Whether any augmentation is on."""
        return self != AugmentOptions()

    def check(self, kind: Kind, frames: FrameOptions) -> None:
        """Refuse options that do not fit the data, naming the key."""
        issues = []
        if self.random_crop and frames.crop is None:
            issues.append(("data.augment.random_crop", "needs data.frames.crop, the size of the window to cut"))
        if kind == "channels":
            spatial = {"random_crop": self.random_crop, "flip_lr": self.flip_lr, "flip_ud": self.flip_ud}
            spatial["event_drop"] = self.event_drop
            issues += [(f"data.augment.{k}", "applies to camera data only") for k, v in spatial.items() if v]
        if issues:
            raise ConfigError(issues)

    def transforms(self, geo: Geometry, frames: FrameOptions) -> list[Callable[[Any], Any]]:
        """The tonic transforms, in order: crop, flips, event drops, time jitter."""
        import tonic.transforms as T

        framed = tuple(geo.framed)
        steps: list[Callable[[Any], Any]] = []
        if self.random_crop:
            steps.append(T.RandomCrop(sensor_size=tuple(geo.downsampled), target_size=frames.crop_size()))
        if self.flip_lr:
            steps.append(T.RandomFlipLR(sensor_size=framed, p=self.flip_lr))
        if self.flip_ud:
            steps.append(T.RandomFlipUD(sensor_size=framed, p=self.flip_ud))
        if self.drop_event:
            steps.append(T.DropEvent(p=self.drop_event))
        if self.event_drop:
            steps.append(T.EventDrop(sensor_size=framed))
        if self.time_jitter_ms:
            steps.append(T.TimeJitter(std=self.time_jitter_ms * 1000, clip_negative=True, sort_timestamps=True))
        return steps


NO_AUGMENT = AugmentOptions()
