# The base is a build argument: any image with Python >= 3.11 and its venv module.
# Where Docker Hub cannot be reached, build on a local one (scripts/test-container makes
# a stand-in from Debian's packages): podman build --build-arg BASE=IMAGE ...
ARG BASE=python:3.11-slim

# --- deps: a virtual environment in /opt/roomlink with the dependencies alone ---
FROM ${BASE} AS deps
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Read from pyproject.toml alone: an edit of the code leaves this layer (and the image's
# layer with the environment) cached instead of installing them all again.
COPY pyproject.toml ./
RUN python3 -m venv /opt/roomlink \
    && python3 -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"], sep="\n")' > requirements.txt \
    && /opt/roomlink/bin/pip install -q -r requirements.txt "setuptools>=68" wheel \
    && /opt/roomlink/bin/python -c 'import pathlib, sysconfig; pathlib.Path(sysconfig.get_path("purelib"), "roomlink-app.pth").write_text("/opt/roomlink-app\n")'

# --- build: roomlink itself in /opt/roomlink-app, which the .pth above puts on the path ---
FROM deps AS build
COPY README.md ./
COPY src ./src
COPY connectors ./connectors
# a regular (not editable) install: the build/ folder and the egg-info stay in /src,
# which the image does not take
RUN /opt/roomlink/bin/pip install -q --no-deps --no-build-isolation --target /opt/roomlink-app .

# --- the image: the environment, the entrypoint and the image's own config ---
FROM ${BASE}
LABEL org.opencontainers.image.title="roomlink" \
      org.opencontainers.image.description="Chat-bridging relay daemon: links rooms across platforms; every party keeps its own copy of the conversation." \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="0.1.0"
ENV PATH=/opt/roomlink-app/bin:/opt/roomlink/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
# uid 10001: the owner a host folder mounted on /data needs (the entrypoint says so)
RUN useradd --system --uid 10001 --user-group --home-dir /data --no-create-home roomlink \
    && mkdir -p /config /data && chown roomlink:roomlink /data
COPY --from=deps /opt/roomlink /opt/roomlink
COPY --from=build /opt/roomlink-app /opt/roomlink-app
COPY docker/entrypoint /usr/local/bin/roomlink-entrypoint
# the image's own config: API rooms on 8081 and 8082 that want the tokens
# AGENCY_API_TOKEN and ACME_API_TOKEN (it refuses to start without them), the admin
# server inside the container only. Mount a folder with your roomlink.yaml on /config.
COPY docker/roomlink.yaml /config/roomlink.yaml

USER 10001:10001
# SQLite stores (store: sqlite:////data/NAME.db); mount a named volume or a folder
# owned by uid 10001. /config is no volume: it is mounted or the image's own.
VOLUME ["/data"]
# the image's own config's API ports; publish yours with -p
EXPOSE 8081 8082
WORKDIR /data
# Asks the admin server's /healthz (127.0.0.1:9090 in the image's config; set
# ROOMLINK_HEALTH_URL for another), which never wants the admin token. Every 3 s, so
# that a fresh container is healthy a few seconds after it starts. podman keeps a
# HEALTHCHECK only in images built with --format docker.
HEALTHCHECK --interval=3s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-m", "roomlink.admin.healthcheck"]
ENTRYPOINT ["roomlink-entrypoint"]
CMD ["run", "-c", "/config/roomlink.yaml"]
