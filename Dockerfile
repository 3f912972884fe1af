# The abrollout worker image; starter.py and the example specs come along for
# `docker compose exec worker python starter.py ...`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    ABROLLOUT_DATA_DIR=/data

WORKDIR /app

# Dependencies first, in their own layer: a code change then rebuilds in seconds, not minutes.
COPY pyproject.toml README.md ./
RUN python -c "import subprocess, sys, tomllib; \
deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; \
subprocess.run([sys.executable, '-m', 'pip', 'install', '--no-cache-dir', *deps], check=True)"

COPY abrollout ./abrollout
COPY workflows ./workflows
COPY activities ./activities
COPY adapters ./adapters
COPY cli ./cli
COPY client ./client
COPY workers ./workers
COPY alert_receiver ./alert_receiver
COPY devserver ./devserver
COPY examples ./examples
COPY worker.py starter.py ./
RUN pip install --no-cache-dir --no-deps . \
    && rm -rf build ./*.egg-info \
    && useradd --create-home --uid 10001 abrollout \
    && mkdir /data \
    && chown abrollout /data

# The code stays root-owned and read-only to the worker; it writes only to /data.
USER abrollout
EXPOSE 9464
CMD ["python", "worker.py"]
