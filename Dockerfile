# syntax=docker/dockerfile:1

# Stages:
#   train    torch (CPU wheel) and the `train` extra: runs `ranker train`, `ranker export` and `ranker up`.
#   wheel    builds the project wheel for the service stage.
#   service  the HTTP service only, without torch; the default target.
#
#   docker build --target train -t ranker-train .
#   docker build -t ranker .

FROM python:3.11-slim AS train

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /app

# Installed on its own first, for two reasons. PyPI's Linux torch wheel pulls in the CUDA libraries
# (several GB) while the PyTorch CPU index serves a wheel without them. This layer also stays cached
# while the project source changes.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

COPY pyproject.toml README.md ./
COPY service ./service
COPY training ./training
# DL3013 asks for pinned versions: the project's own pyproject.toml sets the version ranges.
# hadolint ignore=DL3013
RUN pip install ".[train]"

# Mount the relevance data at /data and a volume for bundles at /models.
ENV RANKER_DATA_DIR=/data \
    RANKER_MODELS_DIR=/models

EXPOSE 8000
CMD ["ranker", "up", "--host", "0.0.0.0"]


FROM python:3.11-slim AS wheel

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /src
COPY pyproject.toml README.md ./
COPY service ./service
COPY training ./training
RUN pip wheel --no-deps --wheel-dir /wheels .


FROM python:3.11-slim AS service

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# Without extras the wheel pulls in only the service dependencies (no torch).
COPY --from=wheel /wheels /tmp/wheels
RUN pip install /tmp/wheels/*.whl \
    && rm -rf /tmp/wheels \
    && groupadd --system --gid 10001 ranker \
    && useradd --system --uid 10001 --gid ranker --no-create-home --shell /usr/sbin/nologin ranker

ENV RANKER_MODELS_DIR=/models

# A numeric user lets Kubernetes' runAsNonRoot check verify that it is not root.
USER 10001:10001
EXPOSE 8000

# The slim image has no curl. urlopen raises on a refused connection, a timeout or a non-2xx status,
# so any failure exits non-zero.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('RANKER_PORT', '8000'), timeout=3)"]

CMD ["ranker", "serve", "--host", "0.0.0.0"]
