# The mysqlsts image: the in-cluster verifier, controller and drills, and the
# static socat that the StatefulSet's install-tools init container copies for
# the clone listener (the stock MySQL, xtrabackup and MariaDB images lack it).
#
#   docker build -t mysqlsts/mysqlsts:dev .

# A static socat (musl), so it runs in any image it is copied into.
FROM alpine:3.20 AS socat
ARG SOCAT_VERSION=1.8.0.1
RUN apk add --no-cache build-base linux-headers curl
WORKDIR /src
# Superseded releases move to Archive/: try both, so a pinned version keeps building.
RUN for url in "http://www.dest-unreach.org/socat/download/Archive/socat-${SOCAT_VERSION}.tar.gz" \
               "http://www.dest-unreach.org/socat/download/socat-${SOCAT_VERSION}.tar.gz"; do \
      curl -fsSL -o socat.tar.gz "$url" && break; \
    done \
 && tar -xzf socat.tar.gz --strip-components=1 \
 && ./configure --disable-openssl --disable-readline --disable-libwrap LDFLAGS=-static \
 && make socat \
 && strip socat \
 && ./socat -V | head -n 2

FROM python:3.12-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY mysqlsts ./mysqlsts
COPY charts ./charts
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.12-slim-bookworm
COPY --from=socat /src/socat /usr/local/bin/socat
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels \
 && mysqlsts --version
# Non-root, and a read-only root filesystem in the pod: HOME on the /tmp emptyDir.
ENV HOME=/tmp PYTHONDONTWRITEBYTECODE=1
USER 65532:65532
ENTRYPOINT ["mysqlsts"]
