# SitePulse: one image for every role (api, ingest, run-services, db upgrade, simulate).
# Build stage: a virtual environment with the package and its pinned-range dependencies.
FROM python:3.11.10-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/sitepulse
COPY pyproject.toml README.md ./
COPY sitepulse ./sitepulse
COPY ingest ./ingest
COPY microservices ./microservices
COPY registry ./registry
COPY simulators ./simulators
COPY decoders ./decoders
COPY stack ./stack
RUN /opt/sitepulse/bin/pip install --no-cache-dir .

# Runtime stage: the venv only, a non-root user, no compilers, no pip cache.
FROM python:3.11.10-slim-bookworm
# numba caches its compiled loops where it may write: the package is read-only for the service user
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/sitepulse/bin:$PATH \
    SITEPULSE_DATA_DIR=/tmp/sitepulse SITEPULSE_LOG_FORMAT=json NUMBA_CACHE_DIR=/tmp/numba
# WeasyPrint draws the shift reports' PDFs with Pango (registry/shift_reports/pdf.py); Debian bookworm's versions
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpango-1.0-0=1.50.12+ds-1 libpangoft2-1.0-0=1.50.12+ds-1 \
    fonts-dejavu-core=2.37-6 \
 && rm -rf /var/lib/apt/lists/*
RUN useradd --system --uid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin sitepulse
COPY --from=build /opt/sitepulse /opt/sitepulse
WORKDIR /tmp
USER 10001:10001
EXPOSE 8000
ENTRYPOINT ["sitepulse"]
CMD ["api"]
