"""Strict JSON schemas for the custom resources the chart can render.

The Kubernetes OpenAPI schemas (``kubernetes-validate``) cover built-in kinds only. These cover
cert-manager.io/v1 ``Issuer`` and ``Certificate`` and monitoring.coreos.com/v1
``ServiceMonitor``, written from the cert-manager v1 and Prometheus Operator v1 API references:
every field of each object the chart fills in is listed with its type (and its enum where the
API has one), and unknown fields are refused at those levels, so a misspelt or misplaced field
fails the test. Sibling fields the chart never uses are accepted with their type only.
"""

from __future__ import annotations

from typing import Any

import jsonschema

Schema = dict[str, Any]

STRING: Schema = {"type": "string"}
STRINGS: Schema = {"type": "array", "items": STRING}
BOOL: Schema = {"type": "boolean"}
INT: Schema = {"type": "integer"}
OBJECT: Schema = {"type": "object"}
LIST: Schema = {"type": "array"}
STRING_MAP: Schema = {"type": "object", "additionalProperties": STRING}


def strict(properties: dict[str, Schema], required: tuple[str, ...] = ()) -> Schema:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


METADATA = strict(
    {
        "name": STRING,
        "namespace": STRING,
        "labels": STRING_MAP,
        "annotations": STRING_MAP,
    },
    ("name",),
)

ISSUER_REF = strict({"name": STRING, "kind": STRING, "group": STRING}, ("name",))

KEY_USAGES = [
    "signing",
    "digital signature",
    "content commitment",
    "key encipherment",
    "key agreement",
    "data encipherment",
    "cert sign",
    "crl sign",
    "encipher only",
    "decipher only",
    "any",
    "server auth",
    "client auth",
    "code signing",
    "email protection",
    "s/mime",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "timestamping",
    "ocsp signing",
    "microsoft sgc",
    "netscape sgc",
]

CERTIFICATE_SPEC = strict(
    {
        "secretName": STRING,
        "issuerRef": ISSUER_REF,
        "commonName": STRING,
        "dnsNames": STRINGS,
        "ipAddresses": STRINGS,
        "uris": STRINGS,
        "emailAddresses": STRINGS,
        "otherNames": LIST,
        "duration": {"type": "string", "pattern": "^([0-9]+(\\.[0-9]+)?(h|m|s|ms))+$"},
        "renewBefore": {"type": "string", "pattern": "^([0-9]+(\\.[0-9]+)?(h|m|s|ms))+$"},
        "renewBeforePercentage": INT,
        "isCA": BOOL,
        "usages": {"type": "array", "items": {"enum": KEY_USAGES}},
        "privateKey": strict(
            {
                "algorithm": {"enum": ["RSA", "ECDSA", "Ed25519"]},
                "size": INT,
                "encoding": {"enum": ["PKCS1", "PKCS8"]},
                "rotationPolicy": {"enum": ["Never", "Always"]},
            }
        ),
        "subject": OBJECT,
        "literalSubject": STRING,
        "secretTemplate": strict({"annotations": STRING_MAP, "labels": STRING_MAP}),
        "revisionHistoryLimit": INT,
        "keystores": OBJECT,
        "additionalOutputFormats": LIST,
        "nameConstraints": OBJECT,
        "encodeUsagesInRequest": BOOL,
        "signatureAlgorithm": STRING,
    },
    ("secretName", "issuerRef"),
)

ISSUER_SPEC: Schema = {
    **strict(
        {
            "selfSigned": strict({"crlDistributionPoints": STRINGS}),
            "ca": strict(
                {
                    "secretName": STRING,
                    "crlDistributionPoints": STRINGS,
                    "ocspServers": STRINGS,
                    "issuingCertificateURLs": STRINGS,
                },
                ("secretName",),
            ),
            "acme": OBJECT,
            "vault": OBJECT,
            "venafi": OBJECT,
        }
    ),
    "minProperties": 1,
    "maxProperties": 1,
}

SECRET_KEY_SELECTOR = strict({"name": STRING, "key": STRING, "optional": BOOL}, ("key",))

SAFE_TLS_CONFIG = strict(
    {
        "ca": strict({"secret": SECRET_KEY_SELECTOR, "configMap": SECRET_KEY_SELECTOR}),
        "cert": strict({"secret": SECRET_KEY_SELECTOR, "configMap": SECRET_KEY_SELECTOR}),
        "keySecret": SECRET_KEY_SELECTOR,
        "serverName": STRING,
        "insecureSkipVerify": BOOL,
        "caFile": STRING,
        "certFile": STRING,
        "keyFile": STRING,
        "minVersion": STRING,
        "maxVersion": STRING,
    }
)

DURATION = {
    "type": "string",
    "pattern": "^(0|"
    + "".join(f"(([0-9]+){unit})?" for unit in ("y", "w", "d", "h", "m", "s", "ms"))
    + ")$",
}

ENDPOINT = strict(
    {
        "port": STRING,
        "targetPort": {"anyOf": [STRING, INT]},
        "path": STRING,
        "scheme": {"enum": ["http", "https", "HTTP", "HTTPS"]},
        "params": OBJECT,
        "interval": DURATION,
        "scrapeTimeout": DURATION,
        "tlsConfig": SAFE_TLS_CONFIG,
        "bearerTokenFile": STRING,
        "bearerTokenSecret": OBJECT,
        "authorization": OBJECT,
        "basicAuth": OBJECT,
        "oauth2": OBJECT,
        "honorLabels": BOOL,
        "honorTimestamps": BOOL,
        "trackTimestampsStaleness": BOOL,
        "metricRelabelings": LIST,
        "relabelings": LIST,
        "proxyUrl": STRING,
        "noProxy": STRING,
        "proxyFromEnvironment": BOOL,
        "proxyConnectHeader": OBJECT,
        "followRedirects": BOOL,
        "enableHttp2": BOOL,
        "filterRunning": BOOL,
    }
)

LABEL_SELECTOR = strict({"matchLabels": STRING_MAP, "matchExpressions": LIST})

SERVICE_MONITOR_SPEC = strict(
    {
        "endpoints": {"type": "array", "items": ENDPOINT},
        "selector": LABEL_SELECTOR,
        "namespaceSelector": strict({"any": BOOL, "matchNames": STRINGS}),
        "jobLabel": STRING,
        "targetLabels": STRINGS,
        "podTargetLabels": STRINGS,
        "sampleLimit": INT,
        "targetLimit": INT,
        "labelLimit": INT,
        "labelNameLengthLimit": INT,
        "labelValueLengthLimit": INT,
        "keepDroppedTargets": INT,
        "attachMetadata": OBJECT,
        "scrapeProtocols": STRINGS,
        "fallbackScrapeProtocol": STRING,
        "scrapeClass": STRING,
        "bodySizeLimit": STRING,
        "scrapeClassicHistograms": BOOL,
        "nativeHistogramBucketLimit": INT,
        "nativeHistogramMinBucketFactor": {"anyOf": [STRING, {"type": "number"}]},
        "convertClassicHistogramsToNHCB": BOOL,
        "selectorMechanism": STRING,
        "serviceDiscoveryRole": STRING,
    },
    ("selector",),
)


def _resource(api_version: str, kind: str, spec: Schema) -> Schema:
    return strict(
        {
            "apiVersion": {"const": api_version},
            "kind": {"const": kind},
            "metadata": METADATA,
            "spec": spec,
        },
        ("apiVersion", "kind", "metadata", "spec"),
    )


CUSTOM_RESOURCES: dict[tuple[str, str], Schema] = {
    ("cert-manager.io/v1", "Certificate"): _resource(
        "cert-manager.io/v1", "Certificate", CERTIFICATE_SPEC
    ),
    ("cert-manager.io/v1", "Issuer"): _resource("cert-manager.io/v1", "Issuer", ISSUER_SPEC),
    ("monitoring.coreos.com/v1", "ServiceMonitor"): _resource(
        "monitoring.coreos.com/v1", "ServiceMonitor", SERVICE_MONITOR_SPEC
    ),
}


def is_custom(obj: dict[str, Any]) -> bool:
    return (obj.get("apiVersion"), obj.get("kind")) in CUSTOM_RESOURCES


def validate_custom(obj: dict[str, Any]) -> None:
    """Raises ``jsonschema.ValidationError`` naming the first problem."""
    jsonschema.Draft7Validator(CUSTOM_RESOURCES[(obj["apiVersion"], obj["kind"])]).validate(obj)
