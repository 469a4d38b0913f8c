"""What a process's cgroup path says about the workload it belongs to: its container, its
Kubernetes pod and its systemd unit. Only what the host shows, without a Kubernetes API.

The rules, by runtime and cgroup driver (the path is the v2 one, else v1's cpu controller's):

| runtime | cgroupfs driver | systemd driver |
|---|---|---|
| Docker | `/docker/<id>` | `/system.slice/docker-<id>.scope` |
| containerd (CRI) | `/kubepods/<qos>/pod<uid>/<id>` | `…-pod<uid>.slice/cri-containerd-<id>.scope` |
| CRI-O | `/kubepods/<qos>/pod<uid>/crio-<id>` | `.../crio-<id>.scope` |
| Podman | `/libpod_parent/libpod-<id>` | `/machine.slice/libpod-<id>.scope`, or under `user@UID.service` |
| nerdctl | `/<namespace>/<id>` | `nerdctl-<id>.scope` |

`<id>` is 64 hex digits. A conmon scope (`crio-conmon-<id>`, `libpod-conmon-<id>`) holds the
container monitor, not the container: no container id. A pod's uid is a UUID: with dashes on
the cgroupfs driver, with underscores in systemd slice names (systemd reserves the dash), given
back with dashes. QoS class `guaranteed` has no level of its own (`/kubepods/pod<uid>`). A bare
64-hex component is a container's id (Docker, containerd and nerdctl on cgroupfs); where
containers nest (Docker in Docker, kind), the innermost one's.

`systemd_unit` is the innermost `.service` or `.scope` unit of the path that is not a container's
scope: a service's own processes (`/system.slice/nginx.service`), or a user's
(`.../user@1000.service/app.slice/api.service`). A container's processes get none.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tracer.target.cgroup import CgroupMembership, parse_proc_cgroup

_ID = r"[0-9a-f]{64}"
_UUID = r"[0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12}"
# A container's own path component, by runtime (a conmon's component matches none of them).
_CONTAINER_COMPONENTS = (
    re.compile(rf"^(?:docker|cri-containerd|crio|libpod|nerdctl)-({_ID})\.scope$"),
    re.compile(rf"^(?:crio|libpod)-({_ID})$"),
    re.compile(rf"^({_ID})$"),  # docker and containerd on cgroupfs: the bare id
)
_POD = re.compile(rf"(?:^|[-/])pod({_UUID})(?:\.slice)?$")


@dataclass(frozen=True)
class WorkloadLabels:
    cgroup: str  # the path itself ("" where unknown)
    container_id: str = ""
    pod_uid: str = ""
    systemd_unit: str = ""

    def to_json(self) -> dict[str, str]:
        return {
            "cgroup": self.cgroup,
            "container_id": self.container_id,
            "pod_uid": self.pod_uid,
            "systemd_unit": self.systemd_unit,
        }


def _container_id(component: str) -> str:
    for pattern in _CONTAINER_COMPONENTS:
        match = pattern.match(component)
        if match:
            return match.group(1)
    return ""


def labels_of(path: str | None) -> WorkloadLabels:
    """The labels a cgroup path gives (pure; tests hold real paths of each runtime)."""
    if not path:
        return WorkloadLabels("")
    components = [part for part in path.split("/") if part]
    container = pod = unit = ""
    for component in components:
        found = _container_id(component)
        if found:
            container = found
            continue
        match = _POD.search(component)
        if match:
            pod = match.group(1).replace("_", "-")
            continue
        if component.endswith((".service", ".scope")) and "conmon-" not in component:
            unit = component
    return WorkloadLabels(path, container, pod, "" if container else unit)


def cgroup_path(membership: CgroupMembership) -> str | None:
    """The path that says most: v2's (production's), unless it is the root and v1's cpu
    controller places the process deeper (a hybrid host, where containers' v1 paths are set)."""
    v2, v1 = membership.v2_path, membership.v1_cpu_path
    if v2 and v2 != "/":
        return v2
    return v1 if v1 and v1 != "/" else v2 or v1


def labels_of_pid(pid: int, root: str = "/") -> WorkloadLabels:
    """The labels of a running process (WorkloadLabels("") once it is gone)."""
    try:
        with open(f"{root.rstrip('/')}/proc/{pid}/cgroup") as file:
            membership = parse_proc_cgroup(file.read())
    except OSError:
        return WorkloadLabels("")
    return labels_of(cgroup_path(membership))
