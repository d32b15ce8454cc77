# Multi-stage build on Debian 12 with the same packages as scripts/lib.sh.
FROM debian:12 AS build
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential cmake pkg-config libcpp-httplib-dev libssl-dev nlohmann-json3-dev \
      libhiredis-dev libpqxx-dev libgtest-dev libjemalloc-dev libhowardhinnant-date-dev ca-certificates \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    && cmake --build build -j"$(nproc)" --target tollgate tollgate-sim

FROM debian:12-slim
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libcpp-httplib0.11 libssl3 libhiredis0.14 libpqxx-6.4 libjemalloc2 libdate-tz3 tzdata ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home /nonexistent --shell /usr/sbin/nologin tollgate \
    && mkdir -p /var/lib/tollgate/spool && chown tollgate /var/lib/tollgate/spool
COPY --from=build /src/build/tollgate /src/build/tollgate-sim /usr/local/bin/
COPY config/tollgate.json config/pricing.json /etc/tollgate/
ENV TOLLGATE_CONFIG=/etc/tollgate/tollgate.json \
    TOLLGATE_LISTEN=0.0.0.0:8080 \
    TOLLGATE_ADMIN_LISTEN=0.0.0.0:8081 \
    TOLLGATE_LEDGER_SPOOL_DIR=/var/lib/tollgate/spool
VOLUME /var/lib/tollgate/spool
USER tollgate
# The side port listens on all of the container's interfaces so that a mapping reaches it,
# and is not EXPOSEd: `docker run -P` would publish it on all of the host's. Publish it on
# the loopback yourself: -p 127.0.0.1:8081:8081 (README.md).
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s CMD curl -fsS http://127.0.0.1:8081/healthz || exit 1
ENTRYPOINT ["/usr/local/bin/tollgate"]
CMD ["serve"]
