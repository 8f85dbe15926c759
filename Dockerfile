# syntax=docker/dockerfile:1
# spoofwatch detection daemon, CPU image (onnxruntime). GPU image: Dockerfile.gpu.
#
#   docker build -t spoofwatch .
#   docker run --rm spoofwatch demo                       # the demo, inside the container
#   docker run -d --name spoofwatch --stop-timeout 30 -p 5555:5555 -p 5556:5556 -p 8080:8080 \
#       -v /etc/spoofwatch/tokens.txt:/etc/spoofwatch/tokens.txt:ro \
#       -v /etc/spoofwatch/zmq:/etc/spoofwatch/zmq:ro spoofwatch
#
# The default command is `spoofwatch serve --config /etc/spoofwatch/daemon.toml` (deploy/daemon.toml:
# every listener on 0.0.0.0, so authentication is on and the tokens and keys must be mounted).
# docs/operations.md, "Deploying", has the rest.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: a virtual environment with the daemon and its run-time dependencies only ----
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 DEBIAN_FRONTEND=noninteractive
# gcc compiles StreamBuffer's per-message path (setup.py; the image's Python has its headers);
# only this stage has it. apt versions unpinned: the base image tag fixes the release.
# hadolint ignore=DL3008
RUN apt-get update -qq \
    && apt-get install -y -qq --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY daemon/ daemon/
COPY clients/ clients/
COPY streaming_models/ streaming_models/
# the `cpu` extra is onnxruntime; no `train` extra, so no torch: the daemon runs the exported ONNX model
RUN python -m venv /opt/spoofwatch/venv \
    && /opt/spoofwatch/venv/bin/pip install --no-cache-dir ".[cpu,triton]"

# ---- run ----
FROM ${PYTHON_IMAGE}
COPY scripts/install-system-packages.sh scripts/system-packages.txt /tmp/packages/
# the daemon's and the demo's Debian packages (libsndfile1, espeak-ng); not the corpus builder's
RUN bash /tmp/packages/install-system-packages.sh run demo \
    && rm -rf /var/lib/apt/lists/* /tmp/packages \
    && groupadd --system --gid 10001 spoofwatch \
    && useradd --system --uid 10001 --gid spoofwatch --home-dir /var/lib/spoofwatch --create-home \
       --shell /usr/sbin/nologin spoofwatch
COPY --from=build /opt/spoofwatch/venv /opt/spoofwatch/venv
COPY deploy/daemon.toml /etc/spoofwatch/daemon.toml
ENV PATH=/opt/spoofwatch/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SPOOFWATCH_HEALTHZ_URL=http://127.0.0.1:8080/healthz
# the spoofwatch user created above, by number: Kubernetes' runAsNonRoot can check it
USER 10001:10001
WORKDIR /var/lib/spoofwatch
# ZeroMQ ingest, ZeroMQ results, HTTP (WHIP, Twilio, audio-fork, console, /metrics, /healthz), AudioSocket
EXPOSE 5555 5556 8080 9019
# SIGTERM drains every stream and exits 0, within shutdown.drain_wait_s + webhooks.timeout_s (webhooks on)
# + shutdown.timeout_s + 4 s (14 s with deploy/daemon.toml). `docker stop` sends SIGKILL after 10 s:
# run with --stop-timeout 30 (or compose's stop_grace_period: 30s, deploy/compose.yaml)
STOPSIGNAL SIGTERM
# /healthz: the event-loop lag watchdog (503 while the loop lags; a blocked loop times out)
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['SPOOFWATCH_HEALTHZ_URL'], timeout=2)"]
ENTRYPOINT ["spoofwatch"]
CMD ["serve", "--config", "/etc/spoofwatch/daemon.toml"]
