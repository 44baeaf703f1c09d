"""Jetson telemetry: parse ``tegrastats`` (:mod:`.tegrastats`, with the power-rail rule per module), sample it around a
workload (:mod:`.sampler`), integrate energy (:mod:`.energy`), read nvpmodel / jetson_clocks (:mod:`.clocks`)."""
from edgefuse.devices.jetson.clocks import ClockState, clocks_pinned, parse_jetson_clocks, parse_nvpmodel, power_mode
from edgefuse.devices.jetson.energy import TotalSource, energy_mj, energy_per_clip_mj, mean_power_mw, total_source
from edgefuse.devices.jetson.sampler import TegrastatsSampler, TimedSample
from edgefuse.devices.jetson.tegrastats import (
    INPUT_RAILS,
    OFFLINE_C,
    PLACEHOLDER_ZONES,
    RAIL_RULES,
    CpuCore,
    RailRule,
    TegraSample,
    parse_tegrastats,
    rail_rule,
)

__all__ = ["INPUT_RAILS", "OFFLINE_C", "PLACEHOLDER_ZONES", "RAIL_RULES", "ClockState", "CpuCore", "RailRule",
           "TegraSample", "TegrastatsSampler", "TimedSample", "TotalSource", "clocks_pinned", "energy_mj",
           "energy_per_clip_mj", "mean_power_mw", "parse_jetson_clocks", "parse_nvpmodel", "parse_tegrastats",
           "power_mode", "rail_rule", "total_source"]
