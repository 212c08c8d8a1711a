# One image for controllers and workers: `chronoraft controller` / `chronoraft worker`.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY common ./common
COPY controller ./controller
COPY worker ./worker
COPY proto ./proto
RUN pip install . && useradd --create-home chronoraft && mkdir -p /data && chown chronoraft /data
USER chronoraft
ENV CHRONORAFT_DATA_DIR=/data
ENTRYPOINT ["chronoraft"]
