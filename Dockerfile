# syntax=docker/dockerfile:1
# The callstorage operator image: `make image` builds it here without any registry (a
# Debian base made with mmdebstrap, then buildah on this file); `docker build .` works too.
# Two stages on the same base: the first builds our wheel and installs it with its pinned,
# hash-checked dependencies into a virtualenv; the second copies only that virtualenv, so
# no compiler, pip, build backend or source tree ships. Pin the base by digest in your own
# build (`python:3.11-slim-bookworm@sha256:...`); `make image` pins it by content.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# Build-time only (never in the final stage): a package index mirror, and the CA bundle a
# TLS-intercepting proxy needs (`make image` mounts the host's and passes its path).
ARG PIP_INDEX_URL
ARG PIP_CERT
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Only what the wheel needs (see .dockerignore): editing tests does not bust the cache.
# The locks pin every package, with hashes (`python -m testbed image --lock` refreshes them).
COPY hack/image/build-requirements.lock hack/image/requirements.lock ./
COPY pyproject.toml README.md ./
COPY operator ./operator
# A throwaway venv holds pip and the build backend; the shipped venv gets neither. Every
# module is compiled to .pyc here: the running container cannot write them (its root
# filesystem is read-only), so they must ship in the image. Hash-based .pyc files (not
# stamped with install times) keep the image reproducible; the image never changes, so
# they need no checking at import.
RUN python -m venv /opt/build \
 && /opt/build/bin/pip install --quiet --require-hashes --no-deps -r build-requirements.lock \
 && /opt/build/bin/pip wheel --quiet --no-deps --no-build-isolation --wheel-dir /wheels . \
 && python -m venv --without-pip /opt/callstorage \
 && /opt/build/bin/pip --python /opt/callstorage/bin/python install --quiet \
      --require-hashes --no-deps -r requirements.lock \
 && /opt/build/bin/pip --python /opt/callstorage/bin/python install --quiet --no-deps \
      /wheels/callstorage-*.whl \
 && /opt/callstorage/bin/python -m compileall -q -f --invalidation-mode unchecked-hash \
      /opt/callstorage \
 && /opt/callstorage/bin/python -c "import callstorage.runner" \
 && test -x /opt/callstorage/bin/callstorage

FROM ${PYTHON_IMAGE}
# A fixed non-root UID/GID, matching the chart's runAsUser so runAsNonRoot can verify it.
RUN groupadd --system --gid 10001 callstorage \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin callstorage
COPY --from=build /opt/callstorage /opt/callstorage
ENV PATH=/opt/callstorage/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
USER 10001:10001
# metrics (CALLSTORAGE_METRICS_PORT), health: /healthz, /readyz (CALLSTORAGE_HEALTH_PORT)
EXPOSE 8080 8081
ENTRYPOINT ["callstorage", "run"]
