"""Monitors: stop a run without learning signal (:mod:`.signal`) and warn on failure modes (:mod:`.failure_modes`)."""

from lit_align.runtime.monitors.base import ALARMS_FILE, Monitor
from lit_align.runtime.monitors.failure_modes import (
    FrozenReference,
    KLBound,
    LengthHacking,
    ModeCollapse,
    PreferenceStuck,
    RewardHacking,
    ZeroRewardSpread,
)
from lit_align.runtime.monitors.signal import SPREAD_EPS, SignalMonitor, no_signal_reason

__all__ = [
    "ALARMS_FILE",
    "SPREAD_EPS",
    "FrozenReference",
    "KLBound",
    "LengthHacking",
    "ModeCollapse",
    "Monitor",
    "PreferenceStuck",
    "RewardHacking",
    "SignalMonitor",
    "ZeroRewardSpread",
    "no_signal_reason",
]
