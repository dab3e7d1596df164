# syntax=docker/dockerfile:1

# Stages:
#   train        torch (CPU wheel) and the `train` extra: runs `ranker train`, `ranker export` and `ranker up`.
#   wheel        builds the project wheel for the service stages.
#   service-gpu  the HTTP service with onnxruntime-gpu on a CUDA runtime image, without torch.
#   service      the HTTP service on the CPU, without torch; the default target.
#
#   docker build --target train -t ranker-train .
#   docker build -t ranker .
#   docker build --target service-gpu -t ranker-gpu .
#   docker run --gpus all -v models:/models ranker-gpu       # needs the NVIDIA Container Toolkit

# The CUDA image must match what the onnxruntime-gpu wheel was built for: PyPI's onnxruntime-gpu
# 1.19 and newer needs CUDA 12 and cuDNN 9, which the "cudnn" runtime images of CUDA 12.4 and
# newer contain.
ARG CUDA_RUNTIME_IMAGE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04

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


FROM ${CUDA_RUNTIME_IMAGE} AS service-gpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/ranker/bin:$PATH

# Ubuntu 24.04's Python is 3.12, which the project supports (requires-python >= 3.11).
# DL3008 asks for pinned apt versions: the base image tag fixes the Ubuntu release, and pins of
# security-updated packages break the build when the archive drops the pinned version.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*

# The wheel depends on the CPU onnxruntime. Both wheels install the same `onnxruntime` module, so
# the CPU one is removed before onnxruntime-gpu goes in; removing it afterwards would delete
# files that the GPU wheel needs.
COPY --from=wheel /wheels /tmp/wheels
RUN python3 -m venv /opt/ranker \
    && pip install /tmp/wheels/*.whl \
    && pip uninstall -y onnxruntime \
    && pip install "onnxruntime-gpu>=1.19,<2" \
    && rm -rf /tmp/wheels \
    && groupadd --system --gid 10001 ranker \
    && useradd --system --uid 10001 --gid ranker --no-create-home --shell /usr/sbin/nologin ranker

# cuda makes start-up fail when ONNX Runtime offers no CUDA provider, instead of serving on the CPU
# unnoticed. /ready and ranker_execution_provider_info name the provider each session uses.
ENV RANKER_MODELS_DIR=/models \
    RANKER_DEVICE=cuda

USER 10001:10001
EXPOSE 8000

HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('RANKER_PORT', '8000'), timeout=3)"]

CMD ["ranker", "serve", "--host", "0.0.0.0"]


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
