#!/usr/bin/env bash
# Init container (mysqlsts image): copy socat, which the clone listener needs
# and the stock server and backup images lack, into the pod's shared tools
# volume (TOOLS_DIR, first on the PATH of every other container's scripts).
set -euo pipefail
: "${TOOLS_DIR:?}"

socat=$(command -v socat) || { echo "install-tools.sh: socat not found in this image" >&2; exit 1; }
mkdir -p "$TOOLS_DIR"
cp "$socat" "$TOOLS_DIR/socat.tmp"
mv -f "$TOOLS_DIR/socat.tmp" "$TOOLS_DIR/socat"
echo "install-tools.sh: installed $socat into $TOOLS_DIR" >&2
