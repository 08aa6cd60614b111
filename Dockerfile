# syntax=docker/dockerfile:1
#
# One image for every role; the command picks it:
#   wfe serve | wfe worker | wfe beat | wfe gateway | wfe migrate
# deploy/compose.yaml and deploy/kubernetes/ run it that way.
#
# Build from the repository root:  docker build -t wfe:local .

# ---------------------------------------------------------------------------
# builder: a virtualenv at /opt/wfe with the pinned runtime dependencies and wfe
# ---------------------------------------------------------------------------
FROM python:3.11-slim-bookworm AS builder

RUN python -m venv /opt/wfe
ENV PATH=/opt/wfe/bin:$PATH

WORKDIR /src

# The lock first, on its own layer: source edits do not reinstall the dependencies.
# Runtime dependencies only (no test or lint tools); every one pinned.
COPY requirements-runtime.lock ./
RUN pip install --no-cache-dir --disable-pip-version-check -r requirements-runtime.lock

# Only what the package is built from (pyproject.toml names README.md as its readme).
COPY pyproject.toml README.md ./
COPY protos/ protos/
COPY foundation/ foundation/
COPY persistence/ persistence/
COPY tenancy/ tenancy/
COPY tiers/ tiers/
COPY engine/ engine/
COPY service/ service/
COPY workers/ workers/
COPY gateway/ gateway/
COPY cli/ cli/

# --no-deps: everything it needs came from the lock above; nothing unpinned sneaks in.
# `wfe --help` fails the build if the entry point or its imports are broken.
RUN pip install --no-cache-dir --disable-pip-version-check --no-deps . \
    && wfe --help > /dev/null

# ---------------------------------------------------------------------------
# runtime: the virtualenv alone, run by an unprivileged user
# ---------------------------------------------------------------------------
FROM python:3.11-slim-bookworm

LABEL org.opencontainers.image.title="wfe" \
      org.opencontainers.image.description="Multi-tenant workflow engine served over gRPC" \
      org.opencontainers.image.licenses="Apache-2.0"

# A fixed uid, so Kubernetes' runAsNonRoot can check it and volumes can be chowned to it.
# Its home is /tmp: the one writable place when the root filesystem is read-only.
RUN groupadd --system --gid 10001 wfe \
    && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home \
       --shell /usr/sbin/nologin wfe

# Same base image as the builder, so the venv's interpreter links stay valid.
COPY --from=builder /opt/wfe /opt/wfe

# Listen on every interface (the settings default to loopback, right for a laptop, not a
# container). WFE_DATA_DIR under /tmp: `wfe beat` keeps its schedule there, and /tmp is
# the emptyDir/tmpfs of a read-only root filesystem. Bytecode was compiled at install
# time, so nothing writes __pycache__ at run time.
ENV PATH=/opt/wfe/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    WFE_DATA_DIR=/tmp/wfe \
    WFE_LISTEN_ADDRESS=0.0.0.0:50051 \
    WFE_GATEWAY_LISTEN_ADDRESS=0.0.0.0:8080 \
    WFE_METRICS_ADDRESS=0.0.0.0:9464 \
    WFE_LOG_FORMAT=json

WORKDIR /tmp
USER 10001

# 50051 gRPC (wfe serve), 8080 HTTP (wfe gateway), 9464 Prometheus /metrics (every role).
EXPOSE 50051 8080 9464

# No HEALTHCHECK: what "healthy" means depends on the role, so each deployment declares
# its own (gRPC health for serve, /healthz for gateway, `wfe worker-ping` for worker).
ENTRYPOINT ["wfe"]
CMD ["serve"]
