"""A real node for the end-to-end tests: kubelet, containerd, runc and a CNI bridge.

The kubelet is built from k8s.io/kubernetes at the API server's version (e2e/binaries.py);
containerd 1.6, runc and the CNI plugins are Debian's. Everything of the node lives in one folder
of the session's: containerd's config, root, state and socket, runc's state, the kubelet's root
and pod log folder, the CNI config and its IP allocations, and the registry hosts folder
(containerd's ``config_path``) that tests add registries to while it runs (containerd reads a
host's ``hosts.toml`` at each pull).

What is outside that folder, and undone and checked at the end (:func:`leftovers`):

- the ``kubepods`` cgroups the kubelet makes in every cgroup v1 hierarchy (and cgroup2);
- the CNI bridge (:data:`BRIDGE`) and the pods' network namespaces under ``/run/netns``;
- ``/run/containerd`` (containerd 1.6 puts its shims' sockets there, whatever its state dir);
- ``/var/log/containers`` links, new ``/var/lib/cni/results`` entries (the bridge's and the
  CRI's loopback network's);
- processes: the kubelet, containerd and every shim of this containerd;
- iptables rules: none may be added (``makeIPTablesUtilChains: false``; the bridge neither
  masquerades nor is a gateway), compared with ``iptables-save`` before and after;
- the folders ``/run/netns``, ``/var/lib/cni``, ``/var/log/containers``, ``/var/log/pods``,
  ``/var/lib/kubelet`` (the device plugin socket's, fixed) and ``/run/containerd`` where they
  did not exist before.

The machine, as found: cgroup v1 (``failCgroupV1: false``, the ``cgroupfs`` driver), no
CAP_SYS_RESOURCE (runc may not lower ``oom_score_adj``: ``restrict_oom_score_adj`` and
``oomScoreAdj: 0``). Nothing on it may dial the VM's own address: the kubelet serves on
127.0.0.1 only, and container logs are read from its pod log files, never through the API
server. There is no scheduler: test pods name the node (``spec.nodeName``) or are bound to it
(the binding subresource, as a scheduler does).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from e2e.cluster import Cluster
from e2e.node_images import PAUSE_IMAGE, pause_image, write_oci_archive
from webhook_process import free_port

JSON = dict[str, Any]

NODE_NAME = "swapper-node"
#: The CNI bridge: a name nothing else on a machine uses (at most 15 characters).
BRIDGE = "swpr-e2e0"
NETWORK = "swapper-e2e"
POD_SUBNET = "10.231.77.0/24"
CGROUP_ROOT = Path("/sys/fs/cgroup")
NETNS_DIR = Path("/run/netns")
RUN_CONTAINERD = Path("/run/containerd")
CONTAINER_LOG_LINKS = Path("/var/log/containers")
CNI_RESULTS = Path("/var/lib/cni/results")
#: Where a kubelet without ``podLogsDir`` (before 1.30ish: 1.29 has none) writes pod logs.
DEFAULT_POD_LOGS = Path("/var/log/pods")
#: Folders the node's parts make outside its own; removed at the end where they were not there
#: before it started.
MADE_FOLDERS = (
    RUN_CONTAINERD,
    NETNS_DIR,
    CONTAINER_LOG_LINKS,
    DEFAULT_POD_LOGS,
    Path("/var/lib/cni"),
    Path("/var/lib/kubelet"),  # its device plugin socket's folder, whatever --root-dir says
)
TOOLS = ("containerd", "containerd-shim-runc-v2", "ctr", "runc", "ip", "iptables-save")
CNI_BIN = Path("/usr/lib/cni")


class NodeRefused(Exception):
    """The machine cannot run containers; the message says what it refused."""


@dataclass
class Timings:
    ready: float = 0.0  # kubelet started -> Node Ready
    teardown: float = 0.0


@dataclass
class Node:
    """The running node. ``name`` is the Node object's name and the pods' ``spec.nodeName``."""

    cluster: Cluster
    folder: Path
    kubelet_binary: Path
    name: str = NODE_NAME
    timings: Timings = field(default_factory=Timings)
    processes: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    baseline: JSON = field(default_factory=dict)
    _fields: dict[str, bool] = field(default_factory=dict)

    # -- where things are ---------------------------------------------------------------------

    @property
    def containerd_dir(self) -> Path:
        return self.folder / "containerd"

    @property
    def socket(self) -> Path:
        return self.containerd_dir / "containerd.sock"

    @property
    def kubelet_root(self) -> Path:
        return self.folder / "kubelet"

    @property
    def pod_logs(self) -> Path:
        """The kubelet's pod log folder: the node's own where the kubelet has ``podLogsDir``."""
        return self.folder / "pod-logs" if self.knows("podLogsDir") else DEFAULT_POD_LOGS

    def knows(self, field_name: str) -> bool:
        """Whether this kubelet has the config field ``field_name`` (its JSON tag is in the
        binary): 1.37 has ``podLogsDir`` and ``failCgroupV1``, 1.29 neither."""
        if field_name not in self._fields:
            self._fields[field_name] = field_name.encode() in self.kubelet_binary.read_bytes()
        return self._fields[field_name]

    @property
    def hosts_dir(self) -> Path:
        return self.folder / "certs.d"

    @property
    def cni_conf_dir(self) -> Path:
        return self.folder / "cni" / "net.d"

    @property
    def runc_root(self) -> Path:
        return self.folder / "runc"

    def log(self, name: str) -> str:
        path = self.folder / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # -- registries --------------------------------------------------------------------------

    def add_registry(self, host: str, scheme: str = "http", ca_file: Path | None = None) -> None:
        """Let containerd pull from ``host`` (``127.0.0.1:PORT``): plain HTTP, or HTTPS with
        ``ca_file``. Takes effect at the next pull."""
        folder = self.hosts_dir / host
        folder.mkdir(parents=True, exist_ok=True)
        lines = [
            f'server = "{scheme}://{host}"',
            "",
            f'[host."{scheme}://{host}"]',
            '  capabilities = ["pull", "resolve"]',
        ]
        if ca_file is not None:
            lines.append(f'  ca = "{ca_file}"')
        (folder / "hosts.toml").write_text("\n".join(lines) + "\n")

    # -- containerd ----------------------------------------------------------------------------

    def ctr(self, *args: str, check: bool = True, timeout: float = 30) -> str:
        result = subprocess.run(
            ["ctr", f"--address={self.socket}", "--namespace=k8s.io", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"ctr {' '.join(args)} failed:\n{result.stderr}")
        return result.stdout

    def images(self) -> set[str]:
        """The references containerd's image store holds (tags and repo digests)."""
        return {line.strip() for line in self.ctr("images", "ls", "-q").splitlines() if line}

    def remove_image(self, *refs: str) -> None:
        """Forget images in containerd's store (the kubelet must pull them again)."""
        present = self.images()
        gone = [ref for ref in refs if ref in present]
        if gone:
            self.ctr("images", "rm", "--sync", *gone)

    # -- pods ------------------------------------------------------------------------------------

    def container_log(self, pod: JSON, container: str) -> str:
        """What ``container`` of ``pod`` wrote, from the kubelet's pod log files (CRI format:
        ``<time> <stream> <tag> <line>``), every restart's, oldest first."""
        meta = pod["metadata"]
        folder = self.pod_logs / f"{meta['namespace']}_{meta['name']}_{meta['uid']}" / container
        if not folder.is_dir():
            return ""
        lines = []
        for log in sorted(folder.glob("*.log"), key=lambda p: int(p.stem.split(".")[0])):
            for line in log.read_text(errors="replace").splitlines():
                parts = line.split(" ", 3)
                lines.append(parts[3] if len(parts) == 4 else "")
        return "\n".join(lines)

    def pod_spec(
        self,
        name: str,
        images: dict[str, str],
        *,
        secrets: tuple[str, ...] = (),
        pull_policy: str = "IfNotPresent",
        bound: bool = True,
    ) -> JSON:
        """A pod for this node: container name -> image, no ServiceAccount token (no
        controller-manager publishes ``kube-root-ca.crt``), quick to stop."""
        spec: JSON = {
            "containers": [
                {"name": n, "image": i, "imagePullPolicy": pull_policy} for n, i in images.items()
            ],
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 2,
            "enableServiceLinks": False,
            "tolerations": [{"operator": "Exists"}],
        }
        if bound:
            spec["nodeName"] = self.name
        if secrets:
            spec["imagePullSecrets"] = [{"name": s} for s in secrets]
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}

    def bind(self, namespace: str, pod: str) -> None:
        """Bind a pending pod to this node, as a scheduler does (the binding subresource)."""
        from kubernetes import client

        core = client.CoreV1Api(self.cluster.api_client())
        body = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": pod},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.name},
        }
        core.create_namespaced_binding(namespace, body, _preload_content=False)

    def read_pod(self, namespace: str, name: str) -> JSON:
        from kubernetes import client

        core = client.CoreV1Api(self.cluster.api_client())
        raw = core.read_namespaced_pod(name, namespace, _preload_content=False)
        return json.loads(raw.data)  # type: ignore[no-any-return]

    def delete_pods(self, namespace: str | None = None, timeout: float = 30) -> list[str]:
        """Delete the pods on this node (of ``namespace``, or all) and wait until the kubelet
        has stopped them and removed them; force-deletes what is left after ``timeout``.
        Returns the names force-deleted."""
        from kubernetes import client

        core = client.CoreV1Api(self.cluster.api_client())
        selector = f"spec.nodeName={self.name}"

        def listed() -> list[Any]:
            if namespace is None:
                return list(core.list_pod_for_all_namespaces(field_selector=selector).items)
            return list(core.list_namespaced_pod(namespace, field_selector=selector).items)

        for item in listed():
            with suppress(client.exceptions.ApiException):
                core.delete_namespaced_pod(item.metadata.name, item.metadata.namespace)
        deadline = time.monotonic() + timeout
        while listed() and time.monotonic() < deadline:
            time.sleep(0.2)
        forced = []
        for item in listed():
            forced.append(f"{item.metadata.namespace}/{item.metadata.name}")
            with suppress(client.exceptions.ApiException):
                core.delete_namespaced_pod(
                    item.metadata.name, item.metadata.namespace, grace_period_seconds=0
                )
        return forced

    def ready(self) -> bool:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        core = client.CoreV1Api(self.cluster.api_client())
        try:
            node = core.read_node(self.name)
        except ApiException:
            return False
        return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])

    def alive(self) -> str:
        """Empty while the kubelet and containerd run; else who exited, with its log's tail."""
        for name, process in self.processes:
            if process.poll() is not None:
                return f"{name} exited {process.returncode}:\n{self.log(name)[-3000:]}"
        return ""


# -- the machine: what may run here ---------------------------------------------------------


def check_machine() -> None:
    """Raise :class:`NodeRefused` naming what this machine lacks or refuses."""
    if os.geteuid() != 0:
        raise NodeRefused("the node needs root (containerd, runc, cgroups, mounts)")
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    missing += [p for p in ("bridge", "host-local", "loopback") if not (CNI_BIN / p).exists()]
    if not Path("/bin/busybox").exists():
        missing.append("/bin/busybox")
    if missing:
        raise NodeRefused(
            f"missing {', '.join(missing)} (Debian: containerd runc containernetworking-plugins "
            "busybox-static iptables; `make apt` installs them)"
        )
    if not (CGROUP_ROOT / "memory").is_dir() and not (CGROUP_ROOT / "cgroup.controllers").exists():
        raise NodeRefused(f"no cgroup hierarchy mounted under {CGROUP_ROOT}")
    probe = subprocess.run(
        ["unshare", "--mount", "--uts", "--ipc", "--net", "--pid", "--fork", "true"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        raise NodeRefused(f"the kernel refuses new namespaces (unshare): {probe.stderr.strip()}")
    for hierarchy in cgroup_hierarchies():
        if (hierarchy / "kubepods").exists():
            raise NodeRefused(f"{hierarchy / 'kubepods'} exists: another kubelet runs here")
        test_dir = hierarchy / f"swapper-e2e-probe-{os.getpid()}"
        try:
            test_dir.mkdir()
            test_dir.rmdir()
        except OSError as exc:
            raise NodeRefused(f"cannot make a cgroup in {hierarchy}: {exc}") from exc
    if shutil.which("ip") and _link_exists(BRIDGE):
        raise NodeRefused(f"the link {BRIDGE} exists already (a node of another run?)")


def cgroup_hierarchies() -> list[Path]:
    """Every mounted cgroup hierarchy (v1 controllers, the v1 named ones, cgroup2)."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fstype = right.split()[0] if right else ""
        if fstype in ("cgroup", "cgroup2"):
            found.append(Path(left.split()[4]))
    return sorted(set(found))


def _link_exists(name: str) -> bool:
    return (
        subprocess.run(["ip", "link", "show", name], capture_output=True, check=False).returncode
        == 0
    )


def _mounts() -> list[str]:
    """Mount points, in mount order (unescaped)."""
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        raw = line.split()[4]
        points.append(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), raw))
    return points


def _iptables() -> str:
    """The rules and the chains of iptables and ip6tables, one line each, table named; counters,
    and built-in chains that accept with no rules (what loading a table shows), left out."""
    lines = []
    for command in ("iptables-save", "ip6tables-save"):
        if shutil.which(command) is None:
            continue
        dump = subprocess.run([command], capture_output=True, text=True, check=False).stdout
        table = ""
        for line in dump.splitlines():
            if line.startswith("*"):
                table = f"{command} {line[1:]}"
            elif line.startswith(":"):
                chain, policy = line[1:].split()[:2]
                if policy != "ACCEPT":  # a chain of its own ("-"), or a built-in's DROP policy
                    lines.append(f"{table} :{chain} {policy}")
            elif line.startswith("-"):
                lines.append(f"{table} {line}")
    return "\n".join(lines)


def _entries(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


def _netns() -> set[str]:
    return {p.name for p in NETNS_DIR.iterdir()} if NETNS_DIR.is_dir() else set()


def snapshot() -> JSON:
    """What the machine had before the node started, to compare with after."""
    return {
        "iptables": _iptables(),
        "netns": _netns(),
        "folders": {str(f) for f in MADE_FOLDERS if f.exists()},
        "pod_logs": _entries(DEFAULT_POD_LOGS),
        "cni_results": _entries(CNI_RESULTS),
        "mounts": set(_mounts()),
    }


# -- starting ---------------------------------------------------------------------------------


def _write_configs(node: Node) -> tuple[Path, Path, Path]:
    """containerd's config, the kubelet's config and kubeconfig."""
    for folder in (node.containerd_dir, node.kubelet_root, node.hosts_dir):
        folder.mkdir(parents=True, exist_ok=True)
    node.cni_conf_dir.mkdir(parents=True, exist_ok=True)
    (node.cni_conf_dir / "10-swapper-e2e.conflist").write_text(
        json.dumps(
            {
                "cniVersion": "0.4.0",
                "name": NETWORK,
                "plugins": [
                    {
                        "type": "bridge",
                        "bridge": BRIDGE,
                        "isGateway": False,
                        "ipMasq": False,
                        "hairpinMode": False,
                        "ipam": {
                            "type": "host-local",
                            "ranges": [[{"subnet": POD_SUBNET}]],
                            "dataDir": str(node.folder / "cni" / "ipam"),
                        },
                    }
                ],
            }
        )
    )
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    containerd_config = node.containerd_dir / "config.toml"
    containerd_config.write_text(
        f"""version = 2
root = "{node.containerd_dir / "root"}"
state = "{node.containerd_dir / "state"}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "{node.socket}"

[ttrpc]
  address = "{node.containerd_dir / "ttrpc.sock"}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{node.containerd_dir / "opt"}"

[{cri}]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  enable_selinux = false
  disable_apparmor = true
  stats_collect_period = 10

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false
  Root = "{node.runc_root}"

[{cri}.cni]
  bin_dir = "{CNI_BIN}"
  conf_dir = "{node.cni_conf_dir}"
  max_conf_num = 1

[{cri}.registry]
  config_path = "{node.hosts_dir}"
"""
    )
    kubelet_config: JSON = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": "127.0.0.1",
        "port": free_port(),
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": free_port(),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": False},
            "x509": {"clientCAFile": str(node.cluster.pki.ca_cert)},
        },
        "authorization": {"mode": "AlwaysAllow"},
        "containerRuntimeEndpoint": f"unix://{node.socket}",
        "cgroupDriver": "cgroupfs",
        "oomScoreAdj": 0,
        "makeIPTablesUtilChains": False,
        "failSwapOn": False,
        "serializeImagePulls": False,
        "registerNode": True,
        "clusterDomain": "cluster.local",
        "resolvConf": "/etc/resolv.conf",
        # A test machine's disk may be fuller than a node's: no eviction, no image GC.
        "evictionHard": {
            "memory.available": "1Mi",
            "nodefs.available": "0%",
            "imagefs.available": "0%",
            "nodefs.inodesFree": "0%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "nodeStatusUpdateFrequency": "2s",
        "syncFrequency": "5s",
        "fileCheckFrequency": "5s",
        "volumeStatsAggPeriod": "0s",
        "serverTLSBootstrap": False,
        "rotateCertificates": False,
    }
    if node.knows("podLogsDir"):
        kubelet_config["podLogsDir"] = str(node.pod_logs)
    if node.knows("failCgroupV1"):  # kubelet 1.35 on refuses cgroup v1 without it
        kubelet_config["failCgroupV1"] = False
    config_file = node.folder / "kubelet.yaml"
    config_file.write_text(yaml.safe_dump(kubelet_config))
    kubeconfig = node.cluster.write_kubeconfig(
        node.folder / "kubelet.kubeconfig",
        {
            "client-certificate": str(node.cluster.pki.cert("admin")),
            "client-key": str(node.cluster.pki.key("admin")),
        },
    )
    return containerd_config, config_file, kubeconfig


def _start(node: Node, name: str, command: list[str]) -> subprocess.Popen[bytes]:
    with (node.folder / f"{name}.log").open("wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    node.processes.append((name, process))
    return process


def _until(what: str, check: Callable[[], bool], node: Node, timeout: float) -> float:
    started = time.monotonic()
    while not check():
        if dead := node.alive():
            raise RuntimeError(f"{what}: {dead}")
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"{what}: not within {timeout:g}s")
        time.sleep(0.05)
    return time.monotonic() - started


def start_node(node: Node) -> None:
    """containerd, the sandbox image, then the kubelet; returns once the Node is Ready."""
    containerd_config, kubelet_config, kubeconfig = _write_configs(node)
    _start(node, "containerd", ["containerd", f"--config={containerd_config}"])
    _until(
        "containerd answers",
        lambda: (
            subprocess.run(
                ["ctr", f"--address={node.socket}", "version"], capture_output=True, check=False
            ).returncode
            == 0
        ),
        node,
        30,
    )
    archive = write_oci_archive(pause_image(), PAUSE_IMAGE, node.folder / "pause.tar")
    node.ctr("images", "import", "--platform=linux/amd64", str(archive))
    assert PAUSE_IMAGE in node.images(), node.images()
    started = time.monotonic()
    _start(
        node,
        "kubelet",
        [
            str(node.kubelet_binary),
            f"--config={kubelet_config}",
            f"--kubeconfig={kubeconfig}",
            f"--hostname-override={node.name}",
            f"--root-dir={node.kubelet_root}",
            f"--cert-dir={node.folder / 'kubelet-pki'}",
            "--v=2",
        ],
    )
    _until(f"the Node {node.name} is Ready", node.ready, node, 90)
    node.timings.ready = time.monotonic() - started


# -- stopping ----------------------------------------------------------------------------------


def _signal(process: subprocess.Popen[bytes], sig: int, timeout: float) -> None:
    if process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _shims(node: Node) -> list[int]:
    """Process ids of containerd shims of this node's containerd (their command line names
    its socket)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            cmdline
            and cmdline[0].endswith(b"containerd-shim-runc-v2")
            and (str(node.socket).encode() in cmdline)
        ):
            found.append(int(proc.name))
    return found


def _ours(node: Node, point: str) -> bool:
    return (
        point.startswith(str(node.folder) + "/")
        or point.startswith(str(RUN_CONTAINERD) + "/")
        or (point.startswith(str(NETNS_DIR) + "/") and Path(point).name.startswith("cni-"))
    )


def _cgroups() -> list[Path]:
    return [h / "kubepods" for h in cgroup_hierarchies() if (h / "kubepods").exists()]


def _remove_cgroup_tree(root: Path) -> None:
    """rmdir every cgroup under ``root``, deepest first (a cgroup's files cannot be deleted)."""
    for folder in sorted(
        (p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
    ):
        with suppress(OSError):
            folder.rmdir()
    with suppress(OSError):
        root.rmdir()


def stop_node(node: Node) -> list[str]:
    """Stop and remove everything the node made (see the module docstring); what was
    force-deleted or killed rather than stopped, for the report."""
    notes = []
    forced = node.delete_pods(timeout=30) if not node.alive() else []
    notes += [f"pod force-deleted: {name}" for name in forced]
    for name, process in reversed(node.processes):
        if name == "kubelet":
            _signal(process, signal.SIGTERM, 15)
    # What the kubelet left running: every task killed, every container removed.
    with suppress(Exception):
        for line in node.ctr("tasks", "ls", "-q", check=False).split():
            node.ctr("tasks", "kill", "--signal=SIGKILL", line, check=False)
            notes.append(f"task killed: {line}")
        deadline = time.monotonic() + 10
        while node.ctr("tasks", "ls", "-q", check=False).split() and time.monotonic() < deadline:
            time.sleep(0.1)
        for line in node.ctr("tasks", "ls", "-q", check=False).split():
            node.ctr("tasks", "rm", "--force", line, check=False)
        for line in node.ctr("containers", "ls", "-q", check=False).split():
            node.ctr("containers", "rm", line, check=False)
    for name, process in reversed(node.processes):
        if name == "containerd":
            _signal(process, signal.SIGTERM, 15)
    for pid in _shims(node):
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            notes.append(f"shim killed: {pid}")
    deadline = time.monotonic() + 5
    while _shims(node) and time.monotonic() < deadline:
        time.sleep(0.05)
    # Mounts: pods' volumes under the kubelet's root, containerd's overlay and shm mounts, the
    # pods' network namespaces.
    for point in reversed(_mounts()):
        if _ours(node, point):
            subprocess.run(["umount", point], capture_output=True, check=False)
    for point in reversed(_mounts()):
        if _ours(node, point):
            subprocess.run(["umount", "--lazy", point], capture_output=True, check=False)
            notes.append(f"lazily unmounted: {point}")
    for name in _netns() - node.baseline.get("netns", set()):
        with suppress(OSError):
            (NETNS_DIR / name).unlink()
    for root in _cgroups():
        _remove_cgroup_tree(root)
    if _link_exists(BRIDGE):
        subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True, check=False)
    if CONTAINER_LOG_LINKS.is_dir():
        for link in CONTAINER_LOG_LINKS.iterdir():
            if link.is_symlink() and str(os.readlink(link)).startswith(str(node.pod_logs)):
                link.unlink()
    # The results of the node's network and of the CRI's own loopback one (cni-loopback-*), left
    # where a sandbox was never torn down by its kubelet.
    for name in _entries(CNI_RESULTS) - node.baseline.get("cni_results", set()):
        with suppress(OSError):
            (CNI_RESULTS / name).unlink()
    for name in _entries(DEFAULT_POD_LOGS) - node.baseline.get("pod_logs", set()):
        shutil.rmtree(DEFAULT_POD_LOGS / name, ignore_errors=True)
    for folder in _made_folders(node):
        if not any(_mounted_under(folder)):  # never a folder something is still mounted in
            shutil.rmtree(folder, ignore_errors=True)
    return notes


def _made_folders(node: Node) -> list[Path]:
    before = node.baseline.get("folders", {str(f) for f in MADE_FOLDERS})
    return [f for f in MADE_FOLDERS if f.exists() and str(f) not in before]


def _mounted_under(folder: Path) -> list[str]:
    return [p for p in _mounts() if p == str(folder) or p.startswith(f"{folder}/")]


def leftovers(node: Node) -> list[str]:
    """Everything the node left behind; empty when it is all gone."""
    left = []
    for name, process in node.processes:
        if process.poll() is None:
            left.append(f"{name} still runs (pid {process.pid})")
    left += [f"shim still runs (pid {pid})" for pid in _shims(node)]
    left += [f"mount: {p}" for p in _mounts() if _ours(node, p)]
    left += [f"cgroup: {c}" for c in _cgroups()]
    if _link_exists(BRIDGE):
        left.append(f"link: {BRIDGE}")
    left += [f"netns: {n}" for n in sorted(_netns() - node.baseline.get("netns", set()))]
    left += [f"folder: {f}" for f in _made_folders(node)]
    new_logs = _entries(DEFAULT_POD_LOGS) - node.baseline.get("pod_logs", set())
    left += [f"pod logs: {DEFAULT_POD_LOGS / name}" for name in sorted(new_logs)]
    if CONTAINER_LOG_LINKS.is_dir():
        left += [
            f"log link: {link}"
            for link in CONTAINER_LOG_LINKS.iterdir()
            if link.is_symlink() and str(os.readlink(link)).startswith(str(node.pod_logs))
        ]
    new_results = _entries(CNI_RESULTS) - node.baseline.get("cni_results", set())
    left += [f"CNI result: {CNI_RESULTS / name}" for name in sorted(new_results)]
    before, after = node.baseline.get("iptables", ""), _iptables()
    if after != before:
        added = sorted(set(after.splitlines()) - set(before.splitlines()))
        left.append("iptables changed: " + "; ".join(added or ["(rules removed or reordered)"]))
    return left


@contextmanager
def running_node(cluster: Cluster, kubelet_binary: Path, folder: Path) -> Iterator[Node]:
    """The node, Ready; on exit everything stopped and removed, then checked: anything left
    raises AssertionError (pytest reports it as an error of the session's last test)."""
    check_machine()
    folder.mkdir(parents=True, exist_ok=True)
    node = Node(cluster, folder, kubelet_binary, baseline=snapshot())
    try:
        start_node(node)
        yield node
    finally:
        started = time.monotonic()
        notes = stop_node(node)
        node.timings.teardown = time.monotonic() - started
        left = leftovers(node)
        report = folder / "teardown.txt"
        report.write_text(
            f"teardown {node.timings.teardown:.1f}s\n"
            + "".join(f"note: {n}\n" for n in notes)
            + ("".join(f"LEFT: {item}\n" for item in left) if left else "nothing left\n")
        )
        print(f"\nnode teardown in {node.timings.teardown:.1f}s; {len(left)} leftovers ({report})")
        if left:
            raise AssertionError("the node left things behind:\n" + "\n".join(left))
