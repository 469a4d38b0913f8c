"""Container, pod and systemd unit from cgroup paths (tracer/target/workload_labels.py), on paths
as each runtime and cgroup driver writes them."""

from __future__ import annotations

import pytest

from tracer.target.workload_labels import WorkloadLabels, labels_of

ID = "3f1c9d2e8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e"
UID = "5b6c7d8e-1a2b-4c3d-9e8f-0a1b2c3d4e5f"
UID_SYSTEMD = UID.replace("-", "_")


@pytest.mark.parametrize(
    ("path", "container", "pod", "unit"),
    [
        # Docker, cgroupfs driver (v1 and v2) and systemd driver
        (f"/docker/{ID}", ID, "", ""),
        (f"/system.slice/docker-{ID}.scope", ID, "", ""),
        # Kubernetes with containerd, systemd driver (v2), burstable and guaranteed QoS
        (
            f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_SYSTEMD}.slice/"
            f"cri-containerd-{ID}.scope",
            ID,
            UID,
            "",
        ),
        (f"/kubepods.slice/kubepods-pod{UID_SYSTEMD}.slice/cri-containerd-{ID}.scope", ID, UID, ""),
        # ... cgroupfs driver (v1), besteffort and guaranteed
        (f"/kubepods/besteffort/pod{UID}/{ID}", ID, UID, ""),
        (f"/kubepods/pod{UID}/{ID}", ID, UID, ""),
        # CRI-O: the container and its conmon
        (
            f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_SYSTEMD}.slice/crio-{ID}.scope",
            ID,
            UID,
            "",
        ),
        (
            f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_SYSTEMD}.slice/crio-conmon-{ID}.scope",
            "",
            UID,
            "",
        ),
        (f"/kubepods/burstable/pod{UID}/crio-{ID}", ID, UID, ""),
        # Podman: rootful, rootless under the user's manager, cgroupfs, and conmon
        (f"/machine.slice/libpod-{ID}.scope", ID, "", ""),
        (f"/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope/container", ID, "", ""),
        (f"/libpod_parent/libpod-{ID}", ID, "", ""),
        (f"/machine.slice/libpod-conmon-{ID}.scope", "", "", ""),
        # nerdctl (containerd without Kubernetes)
        (f"/default/{ID}", ID, "", ""),
        (f"/system.slice/nerdctl-{ID}.scope", ID, "", ""),
        # Docker in Docker: the innermost container
        (f"/docker/{'a' * 64}/docker/{ID}", ID, "", ""),
        # systemd services, the system's and a user's; a session scope
        ("/system.slice/payments.service", "", "", "payments.service"),
        ("/user.slice/user-1000.slice/user@1000.service/app.slice/api.service", "", "", "api.service"),
        ("/user.slice/user-1000.slice/session-3.scope", "", "", "session-3.scope"),
        # nothing to say
        ("/", "", "", ""),
        ("/init.scope", "", "", "init.scope"),
        ("/mcalltrace-zoo-1234", "", "", ""),
    ],
)
def test_labels_of_real_cgroup_paths(path: str, container: str, pod: str, unit: str) -> None:
    assert labels_of(path) == WorkloadLabels(path, container, pod, unit)


def test_unknown_path() -> None:
    assert labels_of(None) == WorkloadLabels("")
    assert labels_of("").to_json() == {"cgroup": "", "container_id": "", "pod_uid": "", "systemd_unit": ""}


def test_a_process_is_labelled_from_its_proc_cgroup(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """v2's path where it places the process; on a hybrid host whose v2 path is the root, the
    cpu controller's v1 path; nothing for a process that is gone."""
    from tracer.target.workload_labels import labels_of_pid

    def process(pid: int, text: str) -> None:
        (tmp_path / "proc" / str(pid)).mkdir(parents=True)
        (tmp_path / "proc" / str(pid) / "cgroup").write_text(text)

    process(10, f"0::/system.slice/docker-{ID}.scope\n")
    process(11, f"12:cpu,cpuacct:/kubepods/besteffort/pod{UID}/{ID}\n1:name=systemd:/x\n0::/\n")
    process(12, "0::/system.slice/payments.service\n")
    assert labels_of_pid(10, str(tmp_path)).container_id == ID
    hybrid = labels_of_pid(11, str(tmp_path))
    assert (hybrid.container_id, hybrid.pod_uid) == (ID, UID)
    assert labels_of_pid(12, str(tmp_path)).systemd_unit == "payments.service"
    assert labels_of_pid(99, str(tmp_path)) == WorkloadLabels("")
