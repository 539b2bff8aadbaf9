# One image for the web server, the RQ worker and the migrations, chosen by command:
#   IMAGE                              gunicorn serving app:app on port 8000 (settings in gunicorn.conf.py)
#   IMAGE flask --app app worker       an RQ worker (as many as you like)
#   IMAGE flask --app app db upgrade   the migrations
# BASE_IMAGE: any Debian-based CPython 3.11 image with pip. Where no registry is reachable the testbed passes
# its own, made from Debian's packages (`make image`). RUN --mount needs BuildKit (Docker 23+) or buildah 1.24+.
ARG BASE_IMAGE=docker.io/library/python:3.11-slim

# Build stage: a wheel for every pin (an sdist is built here, never in the final stage). pip's cache lives in a
# cache mount, kept by the builder between builds and never part of a layer.
FROM ${BASE_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY requirements.txt .
RUN --mount=type=cache,target=/root/.cache/pip,sharing=locked \
    pip wheel --wheel-dir /wheels -r requirements.txt

FROM ${BASE_IMAGE}
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="portal" \
      org.opencontainers.image.description="Developer portal: web server (default), RQ worker and migrations by command" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
# GUNICORN_BIND: every interface inside the container; a gunicorn started in a checkout keeps to loopback.
# GUNICORN_PROMETHEUS_DIR: the folder where the web server's workers keep their Prometheus figures, so that
# /metrics adds them up (gunicorn.conf.py; the chart mounts an emptyDir there). Not PROMETHEUS_MULTIPROC_DIR
# image-wide: that could not be unset, and the worker and the migrations would fail on their first figure
# where /tmp is a fresh emptyDir without that folder.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GUNICORN_BIND=0.0.0.0:8000 \
    GUNICORN_PROMETHEUS_DIR=/tmp/prometheus
RUN groupadd --gid 10001 portal \
    && useradd --uid 10001 --gid 10001 --create-home --shell /usr/sbin/nologin --no-log-init portal
WORKDIR /app
# The wheels are bind-mounted from the build stage: installed with no index, and in no layer of this image.
COPY requirements.txt ./
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links /wheels -r requirements.txt
# What .dockerignore lets into the context: the application's code, migrations and scaffolds.
COPY . ./
# Compiled now, as the root file system may be read-only at run time. Writable by the user for a plain
# `docker run` (in Kubernetes, emptyDirs): instance/, the embedded setup's secret key and SQLite file, and the
# web server's Prometheus folder.
RUN python -m compileall -q app.py gunicorn.conf.py portal jobs integrations migrations scaffolds/__init__.py \
    && install -d -o 10001 -g 10001 -m 0700 instance "$GUNICORN_PROMETHEUS_DIR"
# Numeric, so that Kubernetes' runAsNonRoot can check it.
USER 10001:10001
EXPOSE 8000
CMD ["gunicorn", "--config", "gunicorn.conf.py", "app:app"]
