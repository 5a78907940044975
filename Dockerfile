# One image for every Loom process; docker-compose.yml (or a Procfile runner) picks the command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LOOM_DATA_DIR=/data \
    LOOM_LOG_FORMAT=json

# git: agents work in git worktrees of each project's repository.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 1000 --shell /usr/sbin/nologin loom \
    && mkdir -p /data \
    && chown loom:loom /data

WORKDIR /srv/loom
COPY pyproject.toml README.md ./
COPY app ./app
COPY workers ./workers
COPY beat_schedule.py gunicorn.conf.py Procfile ./
COPY migrations ./migrations
COPY templates ./templates
COPY static ./static
# Installed in place (-e), as `make` does: the factory serves templates/ and static/ and migrates from
# migrations/ beside the package, which a wheel would leave behind; one copy of the code, no shadowing.
RUN pip install -e . \
    && python -c "import app.factory, workers.loop, flower, gunicorn"

USER loom
VOLUME ["/data"]
EXPOSE 8080 5555
CMD ["gunicorn", "-c", "gunicorn.conf.py", "app.wsgi:app"]
