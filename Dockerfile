# One image for every service of the project: python -m history | messaging | bff.
FROM python:3.11-slim

WORKDIR /app
ENV PYTHONUNBUFFERED=1 PYTHONFAULTHANDLER=1 PIP_DISABLE_PIP_VERSION_CHECK=1

# Dependencies first (pinned by constraints.txt), so code changes reuse this layer.
COPY pyproject.toml constraints.txt ./
RUN mkdir -p infra protos chatlib messaging history notifier bff config_service clients \
    && pip install --no-cache-dir -c constraints.txt . \
    && pip uninstall -y chat-backend

COPY protos ./protos
COPY chatlib ./chatlib
COPY messaging ./messaging
COPY history ./history
COPY notifier ./notifier
COPY bff ./bff
COPY config_service ./config_service
COPY clients ./clients
# The cluster's config renderer and logins (compose.cluster.yaml), shared with ./dev.
COPY infra ./infra

USER nobody
