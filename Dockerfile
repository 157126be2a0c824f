# The mysqlsts image: the StatefulSet pods' agent container (mysqlsts agent),
# the in-cluster verifier, controller and drills, and the
# static socat (with TLS) that the StatefulSet's install-tools init container
# copies for the clone listener and client (the stock MySQL, xtrabackup and
# MariaDB images lack it).
#
#   docker build -t mysqlsts/mysqlsts:dev .
#
# Everything comes from Debian's signed packages and from PyPI pinned by hash
# (requirements.lock). BASE may be any Debian bookworm image: the kind scripts
# pass one made by debootstrap on machines with no image registry, and put
# the locked wheels in wheels/ (downloaded on the host) when containers cannot
# reach PyPI; with wheels/ empty, pip uses PyPI.
ARG BASE=debian:bookworm-slim

# A static socat (musl), built from Debian's source packages, so it runs in any
# image it is copied into. The clone stream is TLS (OPENSSL-LISTEN/OPENSSL
# addresses), so socat links a static OpenSSL, built with musl from Debian's
# openssl source: Debian ships OpenSSL for glibc only, and a glibc-static
# socat would load the target image's NSS modules to resolve pod names.
FROM ${BASE} AS socat
RUN set -eux; . /etc/os-release; \
    echo "deb-src http://deb.debian.org/debian $VERSION_CODENAME main" >/etc/apt/sources.list.d/mysqlsts-src.list; \
    apt-get update -q; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends dpkg-dev gcc make perl musl-tools linux-libc-dev; \
    mkdir /src; cd /src; apt-get source -q openssl socat; \
    export CC=musl-gcc CFLAGS="-Os -idirafter /usr/include -idirafter /usr/include/$(gcc -print-multiarch)"; \
    cd /src/openssl-*/; \
    ./config no-shared no-dso no-async no-engine no-afalgeng no-tests --prefix=/opt/ssl --libdir=lib \
      --openssldir=/etc/ssl >/dev/null; \
    make -j"$(nproc)" build_libs >/dev/null; make install_dev >/dev/null; \
    cd /src/socat-*/; \
    ./configure --disable-readline --disable-libwrap CPPFLAGS=-I/opt/ssl/include \
      LDFLAGS="-static -L/opt/ssl/lib" LIBS="-lssl -lcrypto" >/dev/null; \
    make socat >/dev/null; strip socat; ./socat -V | head -n 2; \
    ./socat -V | grep -q 'define WITH_OPENSSL 1'; cp socat /socat

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
