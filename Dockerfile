# syntax=docker/dockerfile:1
# The dgd operator image: `docker build -t dgd-operator:0.1.0 .`
# Two stages: the builder turns the checkout into a wheel and installs it, with the `operator`
# extra (kopf, prometheus-client, cryptography; no official Kubernetes client: the operator has its
# own), into a virtualenv; the final image carries only that venv on a clean python slim base and
# runs as an unprivileged user. Read-only root filesystems work: nothing is written outside /tmp at
# runtime. DGD_HEALTH_PORT below is the operator's default, set so the HEALTHCHECK knows it.
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/venv
# Metadata first, sources second: the layer order keeps rebuilds after a code change cheap.
COPY pyproject.toml README.md LICENSE ./
COPY operator/ operator/
COPY runtime/ runtime/
# Build the wheel (not an editable or source-tree install) so the image holds exactly what a
# `pip install dgd-platform[operator]` user would get; pip byte-compiles it on install.
RUN python -m pip wheel --no-deps --wheel-dir /dist . \
 && /opt/venv/bin/pip install "$(ls /dist/dgd_platform-*.whl)[operator]" \
 && /opt/venv/bin/dgd --help > /dev/null

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="dgd-operator" \
      org.opencontainers.image.description="Operator for disaggregated LLM inference graphs (DynamoGraphDeployment)" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DGD_HEALTH_PORT=8081 \
    DGD_METRICS_PORT=8080
# 65532 is the conventional "nonroot" uid/gid of distroless images; the Helm chart runs as it too.
RUN groupadd --system --gid 65532 nonroot \
 && useradd --system --uid 65532 --gid 65532 --home-dir /tmp --no-create-home \
      --shell /usr/sbin/nologin nonroot
COPY --from=builder /opt/venv /opt/venv
USER 65532:65532
WORKDIR /tmp
EXPOSE 8080 8081
# For plain `docker run`; Kubernetes ignores HEALTHCHECK and uses the chart's probes instead.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('DGD_HEALTH_PORT', '8081') + '/healthz', timeout=4)"]
ENTRYPOINT ["dgd", "operator"]
