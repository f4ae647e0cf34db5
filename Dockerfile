# Zpravodaj's image: the wheel and exactly the locked releases (requirements/),
# run as an unprivileged user. One image for every part; compose.yaml (and any
# orchestrator) picks the part by its command, the same commands the suite's
# wheel test runs (tests/test_wheel.py):
#   zpravodaj db upgrade | gunicorn --config python:service.gunicorn_conf
#   zpravodaj worker | zpravodaj bounces serve
# each started by deploy/container-entrypoint.sh, which first empties the
# container's own metrics directory (PROMETHEUS_MULTIPROC_DIR). A container is
# its own host for the metrics: the web's /metrics adds up its gunicorn
# processes; a worker or bounce container serves its own on METRICS_PORT.
# Workers run with PYTHONOPTIMIZE=2 (compose.yaml): the bytecode for that level is
# compiled here, for the standard library and the venv (service/bytecode.py).
ARG PYTHON=python:3.11-slim-bookworm

# --- build: the wheel, by the locked hatchling ----------------------------------------
FROM ${PYTHON} AS build
WORKDIR /src
COPY requirements/build.txt requirements/build.txt
RUN python -m pip install --no-cache-dir --require-hashes -r requirements/build.txt
COPY pyproject.toml README.md hatch_build.py babel.cfg ./
COPY service service
COPY workers workers
COPY templates templates
COPY static static
COPY migrations migrations
RUN python -m pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /dist .

# --- runtime: a venv with the locked dependencies and the wheel, nothing else --------
FROM ${PYTHON} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/zpravodaj/bin:$PATH \
    INSTANCE_PATH=/var/lib/zpravodaj \
    WEB_BIND=0.0.0.0:8000 \
    BOUNCE_SMTP_HOST=0.0.0.0 \
    PROMETHEUS_MULTIPROC_DIR=/run/zpravodaj-metrics
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/zpravodaj \
        --create-home --shell /usr/sbin/nologin zpravodaj \
    && install -d -o zpravodaj -g zpravodaj -m 0750 /run/zpravodaj-metrics
COPY deploy/container-entrypoint.sh /usr/local/bin/zpravodaj-entrypoint
COPY requirements/runtime.txt /tmp/runtime.txt
COPY --from=build /dist /tmp/dist
RUN python -m venv /opt/zpravodaj \
    && /opt/zpravodaj/bin/pip install --no-cache-dir --require-hashes -r /tmp/runtime.txt \
    && /opt/zpravodaj/bin/pip install --no-cache-dir --no-deps /tmp/dist/*.whl \
    && /opt/zpravodaj/bin/python -OO -P -m service.bytecode \
    && rm -rf /tmp/runtime.txt /tmp/dist
USER zpravodaj
WORKDIR /var/lib/zpravodaj
VOLUME /var/lib/zpravodaj
EXPOSE 8000 2525
ENTRYPOINT ["zpravodaj-entrypoint"]
CMD ["gunicorn", "--config", "python:service.gunicorn_conf"]
