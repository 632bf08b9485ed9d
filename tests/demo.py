"""``make demo``: the main job end to end on local defaults.

Generates certificates, starts ``swapper serve`` over HTTPS with a generic target (enforcing,
then in dry-run audit mode), posts the sample AdmissionReviews from ``tests/fixtures`` and
prints what came back: the decoded JSONPatch, warnings and audit annotations.
"""

from __future__ import annotations

import base64
import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
