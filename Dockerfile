# The mysqlsts image: the in-cluster verifier, controller and drills, and the
# static socat that the StatefulSet's install-tools init container copies for
# the clone listener (the stock MySQL, xtrabackup and MariaDB images lack it).
#
#   docker build -t mysqlsts/mysqlsts:dev .
#
# Everything comes from Debian's signed packages and from PyPI pinned by hash
# (requirements.lock). BASE may be any Debian bookworm image: the kind scripts
# pass one made by debootstrap on machines with no image registry, and put
# the locked wheels in wheels/ (downloaded on the host) when containers cannot
# reach PyPI; with wheels/ empty, pip uses PyPI.
ARG BASE=debian:bookworm-slim

# A static socat (musl), built from Debian's source package, so it runs in any
# image it is copied into.
FROM ${BASE} AS socat
RUN set -eux; . /etc/os-release; \
    echo "deb-src http://deb.debian.org/debian $VERSION_CODENAME main" >/etc/apt/sources.list.d/mysqlsts-src.list; \
    apt-get update -q; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends dpkg-dev gcc make musl-tools linux-libc-dev; \
    mkdir /src; cd /src; apt-get source -q socat; cd socat-*/; \
    CC=musl-gcc CFLAGS="-Os -idirafter /usr/include -idirafter /usr/include/x86_64-linux-gnu" \
      ./configure --disable-openssl --disable-readline --disable-libwrap LDFLAGS=-static >/dev/null; \
    make socat >/dev/null; strip socat; ./socat -V | head -n 2; cp socat /socat

FROM ${BASE} AS python
RUN if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then \
      apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3 python3-venv \
      && rm -rf /var/lib/apt/lists/*; \
    fi

FROM python AS build
WORKDIR /src
COPY requirements.lock pyproject.toml README.md ./
COPY wheels ./wheels
RUN python3 -m venv /opt/mysqlsts \
 && if ls wheels/*.whl >/dev/null 2>&1; then set -- --no-index --find-links wheels; fi \
 && /opt/mysqlsts/bin/pip install --no-cache-dir --require-hashes "$@" -r requirements.lock
COPY mysqlsts ./mysqlsts
COPY charts ./charts
RUN if ls wheels/*.whl >/dev/null 2>&1; then set -- --no-index --find-links wheels; fi \
 && /opt/mysqlsts/bin/pip install --no-cache-dir --no-deps "$@" .

FROM python
COPY --from=socat /socat /usr/local/bin/socat
COPY --from=build /opt/mysqlsts /opt/mysqlsts
ENV PATH=/opt/mysqlsts/bin:$PATH
RUN mysqlsts --version
# Non-root, and a read-only root filesystem in the pod: HOME on the /tmp emptyDir.
ENV HOME=/tmp PYTHONDONTWRITEBYTECODE=1
USER 65532:65532
ENTRYPOINT ["mysqlsts"]
