# syntax=docker/dockerfile:1
# The swapper image: the admission webhook (`swapper serve`) and its certificate bootstrap
# (`swapper certs bootstrap`), which the Helm chart runs. Pure Python: every dependency ships
# manylinux wheels, so no compiler and no skopeo (swapper copies images itself).
#
#   docker build -t swapper:0.1.0 .
#
# Without a Docker daemon, `make image` builds this file with buildah (see docs/image.md).
# Pin the base by digest in production: --build-arg PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:…
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# -- build: a virtualenv with swapper and its dependencies ---------------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ONLY_BINARY=:all:
RUN python -m venv /opt/swapper
WORKDIR /src
COPY pyproject.toml README.md ./
COPY swapper ./swapper
# Dependencies as wheels only (PIP_ONLY_BINARY), swapper itself built from this source. Byte-code
# is compiled here: the root filesystem is read-only at run time. Then what the runtime does not
# need goes: pip and setuptools (installers, not used by swapper), the asyncio copy of the
# Kubernetes client (kubernetes.aio, 68 MB; swapper uses the synchronous client, which never
# imports it) and the tests shipped inside dependencies. The last line proves the rest imports.
RUN /opt/swapper/bin/pip install --compile . \
    && /opt/swapper/bin/pip uninstall --yes setuptools pip \
    && cd /opt/swapper/lib/python3.*/site-packages \
    && rm -rf kubernetes/aio websocket/tests certifi/tests \
    && /opt/swapper/bin/python -c "import kubernetes.client, kubernetes.config, kubernetes.watch" \
    && /opt/swapper/bin/swapper --help >/dev/null

# -- runtime: the virtualenv on a clean slim base, as a numeric non-root user -------------------
FROM ${PYTHON_IMAGE} AS runtime
# The one version is pyproject.toml's; `make image` passes it (tests/chart/test_dockerfile.py
# keeps this default equal to it). SOURCE: where this source lives, for the source label.
ARG VERSION=0.1.0
ARG SOURCE=https://git.internal.example.org/platform/swapper
LABEL org.opencontainers.image.title="swapper" \
      org.opencontainers.image.description="Kubernetes admission webhook that mirrors pod images to your own registry" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0"
# The base's own installers go too (the slim image's system pip and setuptools, ensurepip's
# bundled wheels on either base): nothing in the image can install packages.
RUN if python -m pip --version >/dev/null 2>&1; then \
      python -m pip uninstall --yes --no-cache-dir pip setuptools wheel; \
    fi \
    && rm -rf /usr/share/python-wheels /usr/local/lib/python3.*/ensurepip/_bundled \
              /usr/lib/python3.*/ensurepip/_bundled
COPY --from=build /opt/swapper /opt/swapper
ENV PATH=/opt/swapper/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# 65532: the conventional "nonroot" uid/gid; numeric, so runAsNonRoot can verify it.
USER 65532:65532
WORKDIR /tmp
EXPOSE 8443
ENTRYPOINT ["swapper"]
CMD ["--help"]
