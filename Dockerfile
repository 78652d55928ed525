# The graphrec REST API (uvicorn). Used by docker-compose.yml with the `neo4j` service.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY graphrec ./graphrec
COPY graph ./graph
COPY gnn ./gnn
COPY api ./api
COPY loaders ./loaders
RUN pip install --upgrade pip && pip install .

RUN useradd --create-home --uid 10001 graphrec && mkdir -p /data/graphrec && chown graphrec /data/graphrec
USER graphrec
EXPOSE 8000
# Factory: the app (settings, driver) is built at start-up, not at import time.
CMD ["uvicorn", "--factory", "api.main:app_factory", "--host", "0.0.0.0", "--port", "8000"]
