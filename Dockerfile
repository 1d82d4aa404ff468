# syntax=docker/dockerfile:1
# ufbd container image: `docker build -t ufbd .` (or podman, see docker/smoke-test.sh).
#
# Two stages on debian:bookworm-slim: the build stage compiles build/ufbd and build/ufb with
# the Makefile; the runtime stage holds only the runtime libraries, the two binaries and the
# models. It runs as uid 10001, writes nothing (works with a read-only root filesystem) and is
# configured through UFBD_* environment variables (see README.md, "Configuration").

FROM debian:bookworm-slim AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        build-essential libmicrohttpd-dev libjansson-dev libopenblas-dev xxd \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . /src
# models/ may not exist in the build context (the trained default model is optional);
# make sure it does so the runtime stage can copy it unconditionally.
# Model files must be readable by the non-root runtime user whatever their mode in the context.
RUN mkdir -p /src/models \
 && chmod -R a+rX /src/models /src/tests/fixtures/bert_text \
 && make -j"$(nproc)" build/ufbd build/ufb

FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        libmicrohttpd12 libjansson4 libopenblas0-pthread \
 && apt-get clean && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 ufbd \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin ufbd
COPY --from=build /src/build/ufbd /src/build/ufb /usr/local/bin/
COPY --from=build /src/models /opt/ufbd/models
# A tiny model with random weights (the test fixture), so the image can be tried without the
# trained model: -e UFBD_MODEL=/opt/ufbd/models/fixture-bert-text
COPY --from=build /src/tests/fixtures/bert_text /opt/ufbd/models/fixture-bert-text
WORKDIR /opt/ufbd
ENV UFBD_HOST=0.0.0.0 \
    UFBD_PORT=8080 \
    UFBD_MODEL=/opt/ufbd/models/sst2-minilm-fff
USER 10001:10001
EXPOSE 8080
# No curl/wget in the slim image: bash's /dev/tcp sends a plain HTTP/1.0 GET to /health/live
# and the check passes on a "200" status line. /health/live answers while the model loads too;
# readiness (/health/ready) is for load balancers and Kubernetes probes.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${UFBD_PORT:-8080} && printf 'GET /health/live HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && read -r _ code _ <&3 && [ \"$code\" = 200 ]"]
# SIGTERM: readiness turns 503, accepted requests are answered within UFBD_DRAIN_TIMEOUT_S
# (default 30 s), exit 0. Give `docker stop -t` more than that.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/ufbd"]
