# SitePulse: one image for every role (ingest, run-services, api, simulate).
FROM python:3.11.10-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY sitepulse ./sitepulse
COPY ingest ./ingest
COPY microservices ./microservices
COPY registry ./registry
COPY simulators ./simulators
RUN pip install . && useradd --system --uid 10001 --home-dir /app sitepulse
USER sitepulse
EXPOSE 8000
ENTRYPOINT ["sitepulse"]
CMD ["api"]
