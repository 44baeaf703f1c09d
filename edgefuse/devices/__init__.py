"""Device facts: the profiles build-engine, bench and estimate read (:mod:`.profiles`, installed from the
repository's devices/ folder), the precision to build with on one (:mod:`.precision`), which device this machine is
(:mod:`.detect`) and the Jetson tools' readings (:mod:`.jetson`: tegrastats, nvpmodel, clocks)."""
from edgefuse.devices.detect import Detection, Readings, decide, detect, detect_device, detect_l4t, read_readings
from edgefuse.devices.precision import check_precision
from edgefuse.devices.profiles import (
    PRECISIONS,
    DeviceProfile,
    JetPack,
    PowerMode,
    get_device,
    jetpack_for_l4t,
    list_devices,
    load_profile,
    tensorrt_versions,
)

__all__ = ["PRECISIONS", "Detection", "DeviceProfile", "JetPack", "PowerMode", "Readings", "check_precision", "decide",
           "detect", "detect_device", "detect_l4t", "get_device", "jetpack_for_l4t", "list_devices", "load_profile",
           "read_readings", "tensorrt_versions"]
