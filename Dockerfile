FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
COPY connectors ./connectors
RUN pip install . && useradd --system --uid 10001 --home /data roomlink \
    && mkdir -p /config /data && chown roomlink /data

USER roomlink
# /config holds roomlink.yaml (read-only is fine); /data holds SQLite stores
# (use store: sqlite:////data/<party>.db).
VOLUME ["/config", "/data"]
WORKDIR /data
ENTRYPOINT ["roomlink"]
CMD ["run", "-c", "/config/roomlink.yaml"]
