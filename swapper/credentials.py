"""The one credentials type: a username and a secret for one registry, wherever they came from.

A pull secret's entry (:mod:`swapper.access.keyring`), a ``source.registries`` password, a generic
target's credentials file, a token ECR or Artifact Registry issued: all are
:class:`Credentials`, handed unchanged from where they are found to the HTTP client that sends
them (:mod:`swapper.oci`), the access check that fingerprints them (:mod:`swapper.mirror`) and
the pull secret written into namespaces (:mod:`swapper.kube`). No field that holds a secret
appears in a ``repr``.

Imported by everything that handles credentials; imports nothing of swapper.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Credentials:
    """Credentials for one registry.

    ``identity_token`` is a docker config's ``identitytoken``, sent in place of a password.
    ``source`` names where they came from (a Secret's ``namespace/name``, never its content);
    ``expires_at`` when they stop working (a registry token), None when they do not expire.
    """

    username: str = field(default="", repr=False)
    password: str = field(default="", repr=False)
    identity_token: str = field(default="", repr=False)
    source: str = ""
    expires_at: datetime | None = None

    @property
    def anonymous(self) -> bool:
        return not (self.username or self.password or self.identity_token)

    @property
    def secret(self) -> str:
        """What is sent with the username: the password, else the identity token."""
        return self.password or self.identity_token

    def fingerprint(self) -> str:
        """SHA-256 of the secret material: a cache key that never holds the credentials."""
        material = "\0".join((self.username, self.password, self.identity_token))
        return hashlib.sha256(material.encode()).hexdigest()
