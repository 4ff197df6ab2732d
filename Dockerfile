# OpenTIM server image: `docker build -t opentim .`, then see docs/running.md#docker.
# (Written and linted with hadolint, not built on the machine this repository is developed
# on, which has no Docker engine; tests/test_ops.py checks what it refers to.)
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The package and its dependencies (every one has a wheel for linux/amd64 and arm64: no
# compiler needed). Only what the package needs is copied (.dockerignore keeps the rest out).
WORKDIR /build
COPY pyproject.toml README.md LICENSE ./
COPY src ./src
RUN pip install --no-cache-dir . \
    && rm -rf /build

# A user of its own, without a shell or a password; its home holds the SQLite file when no
# PostgreSQL is configured.
RUN groupadd --system --gid 10001 opentim \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/opentim --create-home \
        --shell /usr/sbin/nologin opentim
# (numeric: Kubernetes' runAsNonRoot can check it without the image's /etc/passwd)
USER 10001:10001
WORKDIR /var/lib/opentim
VOLUME ["/var/lib/opentim"]

# Listen on every interface of the container; the rest comes from OPENTIM_* variables or
# a config file (`serve --config /etc/opentim/opentim.toml`, mounted read-only).
ENV OPENTIM_HOST=0.0.0.0 \
    OPENTIM_PORT=8080 \
    OPENTIM_DB=sqlite:////var/lib/opentim/opentim.db
EXPOSE 8080

# /healthz: the process answers (readiness, with the database and Redis, is /readyz).
# python:3.11-slim has no curl: the check is the image's own Python.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('OPENTIM_PORT', '8080') + '/healthz', timeout=2)"]

# SIGTERM (docker stop) drains: in-flight calls finish, then connections close.
STOPSIGNAL SIGTERM
ENTRYPOINT ["opentim"]
CMD ["serve"]
