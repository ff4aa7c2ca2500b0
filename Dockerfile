FROM python:3.11-slim

LABEL org.opencontainers.image.title="roomlink" \
      org.opencontainers.image.description="Chat-bridging relay daemon: links rooms across platforms; every party keeps its own copy of the conversation." \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="0.1.0"

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
COPY connectors ./connectors
RUN pip install . && useradd --system --uid 10001 --home /data roomlink \
    && mkdir -p /config /data && chown roomlink /data
# the image's own config: two API rooms and the admin server on 127.0.0.1:9090
COPY docker/roomlink.yaml /config/roomlink.yaml

USER roomlink
# /config holds roomlink.yaml (read-only is fine); /data holds SQLite stores
# (use store: sqlite:////data/<party>.db).
VOLUME ["/config", "/data"]
# the API connector's port in the examples; publish yours with -p, and have the
# connector listen on 0.0.0.0:PORT inside the container
EXPOSE 8081
WORKDIR /data
# asks the admin server's /healthz (keep `admin: {listen: "127.0.0.1:9090"}` in your
# config, or set ROOMLINK_HEALTH_URL); /healthz never wants the admin token
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD ["python", "-m", "roomlink.admin.healthcheck"]
ENTRYPOINT ["roomlink"]
CMD ["run", "-c", "/config/roomlink.yaml"]
