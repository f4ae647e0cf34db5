#!/bin/sh
# The image's entrypoint (Dockerfile): runs the part's command given as its
# arguments, after emptying this container's Prometheus multiprocess directory.
#
# In a container the processes this command starts are the only ones that write
# to PROMETHEUS_MULTIPROC_DIR, so its start is the one safe moment to empty it:
# files a previous run of the container left (a restart keeps the container's
# files) would add dead processes' counts to the new ones'. (On a systemd host
# the directory is shared by several units; zpravodaj-metrics-dir.service does
# this there.) tests/test_deploy.py runs this file as the Dockerfile does.
set -eu
if [ -n "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
    mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
    find "$PROMETHEUS_MULTIPROC_DIR" -mindepth 1 -delete
fi
exec "$@"
