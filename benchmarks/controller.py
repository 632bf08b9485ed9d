"""``make bench``: the cluster half at scale, on a real API server.

A real kube-apiserver and etcd (``tests/e2e/cluster.py``, the binaries of ``make
kube-binaries``) hold ``--pods`` pods (10,000) in ``--namespaces`` namespaces (500) using
``--images`` distinct images (2,000); the pods stay Pending (there is no node), which is all the
controller needs. The registries are ``benchmarks.soak``'s small loopback server: the source
answers ``HEAD`` of any manifest (every image is public) and refuses the rest (every copy fails
at once, after it was queued), the target has nothing (every image is missing).

Measured, on the real ``swapper serve`` process (as the cluster's admin; ``$POD_NAME`` set):

- **idle RSS**: the process with ``controller.enabled: false``, ready, after 5 s;
- **controller RSS above idle**: the same config with the controller on, once every image is
  queued and 5 s later (the peak of the samples taken meanwhile too);
- **start to every copy queued**: from the process start to ``swapper_backfill_copies_total
  {result="queued"}`` reaching the number of images (process start-up included);
- **API requests**: the pod requests the API server's audit log records from swapper's user
  after the start: lists (pages) and watches;
- **audit**: ``swapper audit --output json`` over the same cluster, wall time;
- **monitor**: the images-in-use monitor's pace (``controller.monitor``: 20 checks per 20 s
  per registry here, one a second): the checks finished over 20 s once every image is queued
  (at most about 40 with two registries: a burst would show as many more), and the images it
  tracks (``swapper_images``, every state).

    .venv/bin/python -m benchmarks.controller [--pods 10000] [--namespaces 500] [--images 2000]

Prints a markdown table and writes it to ``benchmarks/out/controller.md`` (``--output``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks import stop_servers_on_sigterm
from benchmarks.soak import Registries, rss_kib, start_registries, stop_registries

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from e2e import binaries  # noqa: E402
from e2e.cluster import Cluster, kube_env, running_cluster  # noqa: E402
from e2e.world import metric  # noqa: E402
from webhook_process import Webhook, make_certs, start_webhook, stop  # noqa: E402

ADMIN = "e2e-admin"  # the user of the cluster's admin kubeconfig (its certificate's CN)
MONITOR_INTERVAL = 20  # seconds, and checks per registry in it: one a second


def fill(cluster: Cluster, pods: int, namespaces: int, images: int, source: str) -> float:
    """Create the namespaces and pods (8 at a time); returns the seconds it took."""
    from kubernetes import client

    core = client.CoreV1Api(cluster.api_client())
    started = time.monotonic()
    names = [f"bench-{n:03d}" for n in range(namespaces)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(cluster.namespace, names))

        def create(i: int) -> None:
            image = f"{source}/team-{i % images % 50}/app-{i % images}:1.{i % images % 7}"
            body = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": f"pod-{i}", "labels": {"app": f"app-{i % images}"}},
                "spec": {
                    "containers": [
                        {"name": "app", "image": image, "env": [{"name": "N", "value": str(i)}]}
                    ],
                    "automountServiceAccountToken": False,
                },
            }
            core.create_namespaced_pod(names[i % namespaces], body, _preload_content=False)

        list(pool.map(create, range(pods)))
    return time.monotonic() - started


def write_config(path: Path, registries: Registries, controller: bool) -> Path:
    config = {
        "logLevel": "error",
        "imageSwapPolicy": "exists",
        "imageCopyPolicy": "delayed",
        "source": {"checkAccess": True, "podPullSecrets": False},
        "target": {"type": "generic", "generic": {"registry": f"{registries.target}/mirror"}},
        "mirror": {
            "hosts": {registries.source: {"insecure": True}, registries.target: {"insecure": True}}
        },
        "controller": {
            "enabled": controller,
            "leaseName": "bench-controller",
            "monitor": {"interval": f"{MONITOR_INTERVAL}s", "maxChecks": MONITOR_INTERVAL},
        },
    }
    path.write_text(json.dumps(config))
    return path


def pod_requests(cluster: Cluster, since: float) -> dict[str, int]:
    """swapper's pod requests in the audit log after ``since`` (unix time), by verb."""
    from datetime import datetime

    counts: dict[str, int] = {}
    for event in cluster.audit_events():
        if (event.get("objectRef") or {}).get("resource") != "pods":
            continue
        if (event.get("user") or {}).get("username") != ADMIN:
            continue
        if event.get("stage") not in ("ResponseComplete", "ResponseStarted"):
            continue
        if event.get("stage") == "ResponseComplete" and event.get("verb") == "watch":
            continue  # a watch is counted once, when it starts
        stamp = datetime.fromisoformat(event["requestReceivedTimestamp"].replace("Z", "+00:00"))
        if stamp.timestamp() < since:
            continue
        verb = str(event.get("verb"))
        counts[verb] = counts.get(verb, 0) + 1
    return counts


def start(folder: Path, config: Path, cluster: Cluster, certs: Path) -> Webhook:
    env = {**kube_env(cluster.admin_kubeconfig), "POD_NAME": "bench-0", "POD_NAMESPACE": "default"}
    return start_webhook(folder, config, cert_dir=certs, env=env, timeout=60)


def measure(args: argparse.Namespace) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    built = binaries.ensure()
    registries = start_registries()
    try:
        with tempfile.TemporaryDirectory() as tmp, running_cluster(Path(tmp) / "c", built) as c:
            folder = Path(tmp)
            certs = make_certs(folder / "certs")
            took = fill(c, args.pods, args.namespaces, args.images, registries.source)
            rows.append(("pods created (8 at a time)", f"{args.pods} in {took:.1f} s"))

            idle = start(folder, write_config(folder / "idle.json", registries, False), c, certs)
            time.sleep(5)
            idle_kib = rss_kib(idle.process.pid)
            stop(idle)

            since = time.time()
            began = time.monotonic()
            hook = start(folder, write_config(folder / "on.json", registries, True), c, certs)
            peak = 0
            while metric(hook, 'swapper_backfill_copies_total{result="queued"}') < args.images:
                peak = max(peak, rss_kib(hook.process.pid))
                if time.monotonic() - began > args.timeout:
                    raise SystemExit(f"not every image was queued within {args.timeout} s")
                time.sleep(0.2)
            queued = time.monotonic() - began
            time.sleep(5)
            after = rss_kib(hook.process.pid)
            peak = max(peak, after)
            per_second = []
            first = checks = metric(hook, "swapper_monitor_checks_total")
            window = time.monotonic()
            for _ in range(20):
                time.sleep(1)
                now = metric(hook, "swapper_monitor_checks_total")
                per_second.append(now - checks)
                checks = now
            window = time.monotonic() - window
            tracked = metric(hook, "swapper_images")
            peak = max(peak, rss_kib(hook.process.pid))
            pods_cached = metric(hook, "swapper_controller_pods")
            stop(hook)
            requests = pod_requests(c, since)

            config = folder / "on.json"
            kube = c.admin_kubeconfig
            audit_started = time.monotonic()
            done = subprocess.run(
                [sys.executable, "-m", "swapper", "audit", "--config", str(config),
                 "--kubeconfig", str(kube), "--output", "json"],
                capture_output=True, text=True, env={**os.environ}, check=False, timeout=300,
            )  # fmt: skip
            audit_took = time.monotonic() - audit_started
            if done.returncode != 0:
                raise SystemExit(f"swapper audit failed: {done.stderr.strip()}")
            items = len(json.loads(done.stdout)["items"])

            mib = 1024
            rows += [
                ("distinct images / namespaces", f"{args.images} / {args.namespaces}"),
                ("idle RSS (controller off)", f"{idle_kib / mib:.1f} MiB"),
                ("RSS after every image queued (+5 s)", f"{after / mib:.1f} MiB"),
                ("controller RSS above idle (after / peak)",
                 f"{(after - idle_kib) / mib:.1f} / {(peak - idle_kib) / mib:.1f} MiB"),
                ("start to every copy queued", f"{queued:.1f} s"),
                ("pods in the controller's cache", f"{pods_cached:.0f}"),
                ("API pod requests: list pages / watches / gets",
                 f"{requests.get('list', 0)} / {requests.get('watch', 0)} / "
                 f"{requests.get('get', 0)}"),
                ("swapper audit --output json", f"{audit_took:.1f} s ({items} rows)"),
                ("monitor: images tracked", f"{tracked:.0f}"),
                ("monitor: checks done in 20 s (2 registries, each paced at 1/s)",
                 f"{checks - first:.0f} in {window:.1f} s; at most {max(per_second):.0f} "
                 "finished in one 1-s sample"),
            ]  # fmt: skip
    finally:
        stop_registries(registries)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pods", type=int, default=10_000)
    parser.add_argument("--namespaces", type=int, default=500)
    parser.add_argument("--images", type=int, default=2_000)
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument(
        "--output", type=Path, default=ROOT / "benchmarks" / "out" / "controller.md"
    )
    args = parser.parse_args()
    stop_servers_on_sigterm()
    rows = measure(args)
    table = ["| measure | value |", "| --- | --- |", *(f"| {k} | {v} |" for k, v in rows)]
    text = "\n".join(table) + "\n"
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
