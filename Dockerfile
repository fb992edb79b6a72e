# feedbot: `feedbot run` in a small image, as a non-root user, state on /data.
#
#   docker build -t feedbot .
#   docker run -p 8080:8080 -v "$PWD/examples/archive:/archive:ro" -v feedbot-data:/data feedbot
#
# The default config is /etc/feedbot/feedbot.toml (archive at /archive, SQLite at
# /data/feedbot.db); override any key with FEEDBOT_<SECTION>__<KEY>, e.g.
# FEEDBOT_STORE__URL=postgresql://feedbot:feedbot@postgres/feedbot.
#
# BASE_IMAGE is any Debian-like image with python3 (3.11+) and its venv module:
# python:3.11-slim from Docker Hub by default. Without Docker Hub, build on a local
# base (README, "The container", shows one made with debootstrap, as
# tests/container/run.sh does). Both stages use the same base, so the virtual
# environment built in the first runs in the second.
ARG BASE_IMAGE=python:3.11-slim

# --- builder: build the wheel, install it with its pinned dependencies ---------
FROM ${BASE_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
COPY pyproject.toml ./

# The pinned dependencies first, in a layer of their own that is rebuilt only
# when pyproject.toml changes (python3 >= 3.11 has tomllib).
RUN python3 -m venv /opt/venv \
    && python3 -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" > /tmp/requirements.txt \
    && /opt/venv/bin/pip install --requirement /tmp/requirements.txt

COPY README.md ./
COPY templates ./templates
COPY feedbot ./feedbot

# The wheel carries the templates as package data (feedbot/templates). The
# runtime stage gets the installed wheel only (no source tree, no build tools),
# and no pip or setuptools either: nothing is installed at run time.
RUN /opt/venv/bin/pip wheel --no-deps --wheel-dir /dist . \
    && /opt/venv/bin/pip install --no-deps /dist/feedbot-*.whl \
    && /opt/venv/bin/pip check \
    && /opt/venv/bin/python -m pip uninstall --yes pip setuptools \
    && /opt/venv/bin/feedbot --version

# --- runtime -------------------------------------------------------------------
FROM ${BASE_IMAGE}

ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="feedbot" \
      org.opencontainers.image.description="Per-topic Atom feeds and durable webhook alerts for news-event archives" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT"

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    FEEDBOT_CONFIG=/etc/feedbot/feedbot.toml

# A fixed uid/gid so a bind-mounted /data can be chowned to it from the host.
RUN groupadd --gid 10001 feedbot \
    && useradd --no-log-init --uid 10001 --gid feedbot --no-create-home \
       --home-dir /data --shell /usr/sbin/nologin feedbot \
    && mkdir -p /data /archive \
    && chown feedbot:feedbot /data

COPY --from=builder /opt/venv /opt/venv
COPY config/feedbot.toml /etc/feedbot/feedbot.toml

# Numeric, so an orchestrator can tell it is not root (runAsNonRoot).
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080

# Liveness only; /readyz tells whether the store and archive are reachable.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python3", "-c", "import os, sys, urllib.request; port = os.environ.get('FEEDBOT_SERVER__PORT', '8080'); sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4).status == 200 else 1)"]

# Exec form: feedbot is PID 1 and receives SIGTERM itself (graceful shutdown).
ENTRYPOINT ["feedbot"]
CMD ["run"]
