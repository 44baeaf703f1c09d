"""Remote devices over SSH (asyncssh, the ``remote`` extra): host specs and hosts files (:mod:`.hosts`), one
checked connection with per-step timeouts and content-addressed copies (:mod:`.connection`), and what a device
is and has (:mod:`.detect`). asyncssh is imported only when a connection is made."""
from edgefuse.backends.remote.connection import Copied, RemoteError, RemoteHost, RunResult, Timeouts
from edgefuse.backends.remote.detect import RemoteDevice, detect_remote, device_profile, parse_detection
from edgefuse.backends.remote.hosts import HostSpec, load_hosts_file, parse_host, resolve_hosts

__all__ = ["Copied", "HostSpec", "RemoteDevice", "RemoteError", "RemoteHost", "RunResult", "Timeouts",
           "detect_remote", "device_profile", "load_hosts_file", "parse_detection", "parse_host", "resolve_hosts"]
