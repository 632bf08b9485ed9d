# syntax=docker/dockerfile:1
# The swapper image: the admission webhook (`swapper serve`) and its certificate bootstrap
# (`swapper certs bootstrap`), which the Helm chart runs. Pure Python: every dependency ships
# manylinux wheels, so no compiler and no skopeo (swapper copies images itself).
#
#   docker build -t swapper:0.1.0 .
#
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
# is compiled here: the root filesystem is read-only at run time.
RUN /opt/swapper/bin/pip install --compile . \
    && /opt/swapper/bin/pip uninstall --yes pip \
    && /opt/swapper/bin/swapper --help >/dev/null

# -- runtime: the virtualenv on a clean slim base, as a numeric non-root user -------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="swapper" \
      org.opencontainers.image.description="Kubernetes admission webhook that mirrors pod images to your own registry" \
      org.opencontainers.image.licenses="Apache-2.0"
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
