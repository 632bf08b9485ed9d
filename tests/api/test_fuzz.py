"""Never a 5xx: reviews of every odd shape, posted to the live server over one connection.

``SWAPPER_FUZZ_EXAMPLES`` sets how many mutated reviews the property test posts (default 300).
"""

from __future__ import annotations

import copy
import http.client
import json
import os
import ssl
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import FIXTURES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from webhook_process import Webhook

EXAMPLES = int(os.environ.get("SWAPPER_FUZZ_EXAMPLES", "300"))
# swapper's own fixtures and the reference project's (tests/fixtures/k8s-image-swapper).
REVIEWS = [
    json.loads(path.read_text())
    for path in sorted(
        [
            *(FIXTURES / "admission").glob("*.request.json"),
            *(FIXTURES / "k8s-image-swapper").glob("*.json"),
        ]
    )
]
THREE = json.loads((FIXTURES / "admission" / "three-containers.request.json").read_text())
KEYS = st.sampled_from(
    [
        "metadata", "name", "namespace", "generateName", "annotations", "labels", "spec",
        "containers", "initContainers", "ephemeralContainers", "image", "imagePullSecrets",
        "env", "value", "serviceAccountName", "kind", "object", "oldObject", "uid",
        "operation", "subResource", "dryRun", "apiVersion", "request",
    ]
) | st.text(max_size=8)  # fmt: skip
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=24)
    | st.sampled_from(
        ["", "Pod", "CREATE", "UPDATE", "ephemeralcontainers", "kube-system", "nginx:1.27",
         "mirror.example.com/mirror/library/nginx:1.27", "admission.k8s.io/v1", "a@sha256:1"]
    )
)  # fmt: skip
JSON = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=4),
    max_leaves=12,
)
DELETE = object()


def paths(doc: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every place in a JSON document: the root, each key of an object, each item of a list."""
    yield prefix
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            yield from paths(value, (*prefix, index))


def replaced(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return {} if value is DELETE else value
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    if value is DELETE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return doc


# Where most of swapper's reading happens: the pod, its metadata and containers, the request.
HOT = ("request", "object")


@st.composite
def mutated_reviews(draw: st.DrawFn) -> Any:
    """A fixture review with one to three subtrees replaced by random JSON, or removed: half of
    the time a place in the pod or the request's own fields (few, but where swapper reads),
    else anywhere (mostly deep in managedFields and the like)."""
    doc = copy.deepcopy(draw(st.sampled_from(REVIEWS)))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        places = list(paths(doc))
        hot = [p for p in places if (p[:2] == HOT and len(p) <= 5) or len(p) == 2]
        path = draw(
            st.sampled_from(hot or places) if draw(st.booleans()) else st.sampled_from(places)
        )
        doc = replaced(doc, path, draw(SCALARS | JSON | st.just(DELETE)))
    return doc


@pytest.fixture(scope="module")
def connection(webhook: Webhook) -> Iterator[http.client.HTTPSConnection]:
    """One keep-alive connection to the live server for the whole module."""
    context = ssl.create_default_context(cafile=str(webhook.cert_dir / "ca.crt"))
    host, port = webhook.address()
    conn = http.client.HTTPSConnection(host, port, context=context, timeout=15)
    conn.connect()
    yield conn
    conn.close()


def post(conn: http.client.HTTPSConnection, body: bytes) -> tuple[int, bytes]:
    """POST on the same connection; fails if the server closed it or says it will."""
    sock = conn.sock
    conn.request("POST", "/mutate", body=body, headers={"Content-Type": "application/json"})
    answer = conn.getresponse()
    content = answer.read()
    assert not answer.will_close, (answer.status, content[:300])
    assert conn.sock is sock  # not reconnected behind our back
    return answer.status, content


@pytest.mark.parametrize("metadata", ["web", 7, ["web"], True])
def test_a_pod_whose_metadata_is_not_an_object_is_admitted_unchanged_with_a_warning(
    connection: http.client.HTTPSConnection, metadata: object
) -> None:
    review = copy.deepcopy(THREE)
    review["request"]["object"]["metadata"] = metadata
    status, content = post(connection, json.dumps(review).encode())
    assert status == 200, content
    response = json.loads(content)["response"]
    assert response["allowed"] is True
    assert "patch" not in response
    assert response["warnings"] == ["swapper: pod left unchanged (pod: metadata is not an object)"]


def test_the_connection_still_serves_after_a_pod_with_odd_metadata(
    connection: http.client.HTTPSConnection,
) -> None:
    review = copy.deepcopy(THREE)
    review["request"]["object"]["metadata"] = "web"
    post(connection, json.dumps(review).encode())
    status, content = post(connection, json.dumps(THREE).encode())
    assert status == 200
    assert json.loads(content)["response"]["patch"]


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(review=mutated_reviews())
def test_no_mutated_review_gets_a_5xx_or_loses_the_connection(
    connection: http.client.HTTPSConnection, review: Any
) -> None:
    status, content = post(connection, json.dumps(review).encode())
    assert status in (200, 400), (status, content[:300])
    if status == 200:
        assert json.loads(content)["response"]["allowed"] is True
    else:
        assert json.loads(content)["error"]
