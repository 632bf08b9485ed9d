"""moto's intercepting proxy (``moto_proxy``), its ECR tokens expiring in 12 hours as AWS's do
(``tests/moto_ecr.py``'s ``tokens_expire_like_aws``): how ``benchmarks/run.py`` gives
k8s-image-swapper, whose AWS SDK reads no endpoint setting, an ECR on loopback.

    python -m benchmarks.ecr_proxy -H 127.0.0.1 -p PORT
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from moto.proxy import main
from moto_ecr import tokens_expire_like_aws

if __name__ == "__main__":
    tokens_expire_like_aws()
    main(sys.argv[1:])
