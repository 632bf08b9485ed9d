"""``make demo``: the main job end to end on local defaults.

Generates certificates, starts ``swapper serve`` over HTTPS with a generic target (enforcing,
then in dry-run audit mode), posts the sample AdmissionReviews from ``tests/fixtures`` and
prints what came back: the decoded JSONPatch, warnings and audit annotations. Then mirrors for
real: two ``docker-registry`` processes on loopback (a source holding a two-platform image, an
empty mirror), swapper with ``imageSwapPolicy: exists`` and ``imageCopyPolicy: immediate``, and
a pod admitted: the image is copied, digests checked, and the pod swapped to the mirror.
"""

from __future__ import annotations

import base64
import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

import yaml  # noqa: E402
from registries import get_manifest, multi_arch, push_index, start_registry  # noqa: E402
from webhook_process import make_certs, start_webhook, stop  # noqa: E402

CONFIG = HERE / "fixtures" / "configs" / "webhook.yaml"
SAMPLES = ["three-containers", "tag-and-digest", "filtered-namespace", "invalid-reference"]


def show(title: str, answer: dict[str, object]) -> None:
    response = answer["response"]
    assert isinstance(response, dict)
    print(f"\n--- {title}: allowed={response['allowed']}")
    if "patch" in response:
        for op in json.loads(base64.b64decode(response["patch"])):
            print(f"  patch  {op['op']:<7} {op['path']}  {json.dumps(op.get('value'))}")
    for warning in response.get("warnings", []):
        print(f"  warning  {warning}")
    for key, value in response.get("auditAnnotations", {}).items():
        print(f"  audit    {key} = {value}")


def main() -> int:
    cert_dir = make_certs(HERE.parent / "certs" / "dev")
    print(f"certificates: {cert_dir}/ (ca.crt, tls.crt, tls.key)")
    print(f"config: {CONFIG.relative_to(HERE.parent)}")
    with tempfile.TemporaryDirectory() as tmp:
        for mode, extra in (("enforcing", ()), ("dry-run audit", ("--dry-run",))):
            hook = start_webhook(Path(tmp), CONFIG, *extra, cert_dir=cert_dir)
            try:
                print(f"\n===== swapper serve ({mode}) on {hook.url}")
                with hook.client() as client:
                    for name in SAMPLES:
                        body = (
                            HERE / "fixtures" / "admission" / f"{name}.request.json"
                        ).read_bytes()
                        show(name, client.post("/mutate", content=body).json())
                    decisions = [
                        line
                        for line in client.get("/metrics").text.splitlines()
                        if line.startswith("swapper_container_decisions_total")
                    ]
                print("\n  metrics:\n    " + "\n    ".join(decisions))
            finally:
                stop(hook)
        mirror_demo(Path(tmp), cert_dir)
    return 0


def mirror_demo(tmp: Path, cert_dir: Path) -> None:
    source = start_registry(tmp / "source")
    target = start_registry(tmp / "target")
    try:
        push_index(source, "demo/app", multi_arch("demo", layers=2), "1.0")
        image = f"{source.host}/demo/app:1.0"
        config = tmp / "mirror.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "imageSwapPolicy": "exists",
                    "imageCopyPolicy": "immediate",
                    "target": {
                        "type": "generic",
                        "generic": {"registry": f"{target.host}/mirror", "insecure": True},
                    },
                    "mirror": {"hosts": {source.host: {"insecure": True}}},
                }
            )
        )
        hook = start_webhook(tmp, config, cert_dir=cert_dir)
        try:
            print(f"\n===== mirroring: source {source.url}, mirror {target.url}")
            body = (HERE / "fixtures" / "admission" / "three-containers.request.json").read_text()
            review = json.loads(body)
            review["request"]["object"]["spec"] = {"containers": [{"name": "app", "image": image}]}
            with hook.client() as client:
                show(f"pod using {image}", client.post("/mutate", json=review, timeout=20).json())
            repo = f"mirror/127.0.0.1_{source.host.split(':')[1]}/demo/app"
            copied = get_manifest(target, repo, "1.0")
            original = get_manifest(source, "demo/app", "1.0")
            same = copied is not None and original is not None and copied[0] == original[0]
            print(
                f"\n  mirror has {repo}:1.0, same index bytes (same digest) as the source: {same}"
            )
            if not same:
                raise SystemExit("the mirror does not hold the source image")
        finally:
            stop(hook)
    finally:
        target.stop()
        source.stop()


if __name__ == "__main__":
    raise SystemExit(main())
