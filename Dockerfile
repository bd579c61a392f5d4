# syntax=docker/dockerfile:1
#
# One image for the three services (keys, audit, usage). It runs none of them by itself:
# docker-compose.yml picks one per container, e.g. `python -m services.keys`.
#
#   docker build -t instagen-keys-platform .
#   docker run --rm instagen-keys-platform python -m services.keys   # plus its env vars

ARG PYTHON_IMAGE=python:3.11-slim

# --- build: a virtualenv holding the project and its runtime dependencies (no dev extras) ---
FROM ${PYTHON_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src

# Dependencies first, from pyproject.toml alone, so a code change does not reinstall them.
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; open('/tmp/requirements.txt', 'w').write('\n'.join(deps) + '\n')" \
    && pip install -r /tmp/requirements.txt

# Then the project itself (the packages hatch builds: contracts, servicekit, services, devstack).
COPY contracts ./contracts
COPY servicekit ./servicekit
COPY services ./services
COPY devstack ./devstack
RUN pip install --no-deps . \
    && python -P -c "import services.keys.bootstrap, services.audit.bootstrap, services.usage.bootstrap"

# --- runtime: the virtualenv only, run by an unprivileged user ---
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="instagen-keys-platform" \
      org.opencontainers.image.description="InstaGen access-key services: keys, audit, usage" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HTTP_HOST=0.0.0.0

RUN groupadd --system --gid 10001 instagen \
    && useradd --system --uid 10001 --gid instagen --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin instagen

COPY --from=build /opt/venv /opt/venv

# No source tree here: the services import from the installed package.
WORKDIR /tmp
USER 10001:10001

# keys, audit, usage (each container publishes only its own)
EXPOSE 8000 8001 8002

CMD ["python", "-c", "import sys; sys.exit('choose a service: python -m services.keys | services.audit | services.usage (see docker-compose.yml)')"]
