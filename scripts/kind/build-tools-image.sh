#!/usr/bin/env bash
# Build the mysqlsts image ($MYSQLSTS_IMAGE) from the Dockerfile on BASE (a
# Debian bookworm image). On the built path, containers may not reach PyPI (a
# TLS-intercepting proxy whose CA only the host trusts): the host downloads the
# locked wheels into wheels/ and the build installs them offline.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# shellcheck source=SCRIPTDIR/lib.sh
source scripts/kind/lib.sh
base=${1:?usage: build-tools-image.sh BASE_IMAGE}
if [[ $(kind_images_mode) == built ]]; then
  python3 -m pip download -q --disable-pip-version-check --only-binary=:all: --require-hashes \
    -r requirements.lock -d wheels
  python3 -m pip download -q --disable-pip-version-check --only-binary=:all: -d wheels 'hatchling>=1.24'
fi
docker build -q --build-arg "BASE=$base" -t "$MYSQLSTS_IMAGE" . >/dev/null
