# syntax=docker/dockerfile:1
# The callstorage operator image: `docker build -t callstorage/callstorage:0.1.0 .`
# Two stages on the same slim base: the first builds our wheel and installs it with its
# dependencies into a virtualenv; the second copies only that virtualenv, so no compiler,
# pip cache or source tree ships. The base is pinned by tag; pin it by digest as well in
# your own build (`python:3.11-slim-bookworm@sha256:...`) for reproducible images.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Only what the wheel needs (see .dockerignore): editing tests does not bust the cache.
COPY pyproject.toml README.md ./
COPY operator ./operator
# pip compiles every module to .pyc here: the running container cannot write them (its
# root filesystem is read-only), so they must ship in the image.
RUN python -m venv /opt/callstorage \
 && /opt/callstorage/bin/pip install --upgrade "pip>=24" \
 && /opt/callstorage/bin/pip wheel --no-deps --wheel-dir /wheels . \
 && /opt/callstorage/bin/pip install /wheels/callstorage-*.whl \
 && /opt/callstorage/bin/pip uninstall --yes pip \
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
# metrics (CALLSTORAGE_METRICS_PORT), kopf liveness /healthz (CALLSTORAGE_HEALTH_PORT)
EXPOSE 8080 8081
ENTRYPOINT ["callstorage", "run"]
