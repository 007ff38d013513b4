# The production image: the bot's runtime only (no sandbox, no tests), reproducible from pins.
#
# Base image pinned by digest: python:3.11.10-slim-bookworm's multi-arch index as published on
# Docker Hub. Bump tag and digest together (`docker buildx imagetools inspect
# python:3.11-slim-bookworm` prints the current one; Renovate/Dependabot can do it).
ARG PYTHON_IMAGE=python:3.11.10-slim-bookworm@sha256:5148c0e4bbb64271bca1d3322360ebf4bfb7564507ae32dd639322e4952a6b16

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
# Dependencies first (cached layer): exact versions, every file checked against its hash.
COPY requirements.lock requirements-build.lock ./
RUN pip install --require-hashes --only-binary=:all: --prefix=/install -r requirements.lock \
 && pip install --require-hashes --only-binary=:all: -r requirements-build.lock
# The bot: only its runtime packages are copied, so the wheel holds bot/ and handlers/ (with the
# built-in catalog) and nothing of sandbox/ or tests/.
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY handlers ./handlers
RUN pip wheel --no-deps --no-build-isolation -w /wheels . \
 && pip install --no-deps --no-index --prefix=/install /wheels/*.whl

FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PORT=8080 \
    MPLCONFIGDIR=/opt/payflow/matplotlib
COPY --from=build /install /usr/local
RUN useradd --system --uid 10001 --user-group --no-create-home payflow \
 && python -c "import matplotlib; matplotlib.use('Agg'); import matplotlib.font_manager" \
 && test -n "$(ls "$MPLCONFIGDIR"/fontlist-*.json)" \
 && chown -R 10001:10001 "$MPLCONFIGDIR"
# The font cache is built above, at build time. With a read-only root filesystem the manifest
# copies it into its writable /tmp (deploy/kubernetes/payflow-bot.yaml).
USER 10001
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('PORT', '8080')}/healthz\", timeout=2)"]
ENTRYPOINT ["payflow-bot"]
CMD ["serve"]
