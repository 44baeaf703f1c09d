"""Jetson telemetry: parse ``tegrastats`` (:mod:`.tegrastats`), sample it around a workload (:mod:`.sampler`),
integrate energy (:mod:`.energy`), read nvpmodel / jetson_clocks (:mod:`.clocks`)."""
from edgefuse.devices.jetson.clocks import ClockState, clocks_pinned, parse_jetson_clocks, parse_nvpmodel, power_mode
from edgefuse.devices.jetson.energy import energy_mj, energy_per_clip_mj, mean_power_mw
from edgefuse.devices.jetson.sampler import TegrastatsSampler, TimedSample
from edgefuse.devices.jetson.tegrastats import INPUT_RAILS, OFFLINE_C, CpuCore, TegraSample, parse_tegrastats

__all__ = ["INPUT_RAILS", "OFFLINE_C", "ClockState", "CpuCore", "TegraSample", "TegrastatsSampler", "TimedSample",
           "clocks_pinned", "energy_mj", "energy_per_clip_mj", "mean_power_mw", "parse_jetson_clocks", "parse_nvpmodel",
           "parse_tegrastats", "power_mode"]
