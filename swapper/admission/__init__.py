"""The admission half, run by every replica: the webhook the API server calls.

- :mod:`~swapper.admission.review`: the AdmissionReview wire types, parsing, and which
  containers a request may change;
- :mod:`~swapper.admission.app`: the FastAPI app and the admission handler;
- :mod:`~swapper.admission.answer` and :mod:`~swapper.admission.patches`: decisions turned into
  warnings, audit annotations, the deny message and the JSONPatch (pure);
- :mod:`~swapper.admission.server` and :mod:`~swapper.admission.connections`: uvicorn over TLS
  with swapper's connection limits.

It stands on the shared domain (pods, mutation, mirror, targets, kube) and never imports the
controller half (:mod:`swapper.controller`); :mod:`swapper.serve` puts the two together.
"""
