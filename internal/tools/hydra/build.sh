#!/usr/bin/env bash
# Builds Ory Hydra (the OIDC provider the authn tests run against) from this
# tools module and caches the binary keyed by go.sum:
#
#   internal/tools/hydra/build.sh OUTDIR   # → OUTDIR/hydra-<first 16 hex of sha256(go.sum)>
#
# Nothing is done when that file already exists. It prints the binary's path.
# Needs gcc (the sqlite driver uses cgo). About 90 s cold on two cores.
set -euo pipefail

if [ $# -ne 1 ]; then
	echo "usage: $0 OUTDIR" >&2
	exit 2
fi
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mkdir -p "$1"
outdir="$(cd "$1" && pwd)"
hash="$(sha256sum "$here/go.sum" | cut -c1-16)"
bin="$outdir/hydra-$hash"

if [ ! -x "$bin" ]; then
	tmp="$bin.tmp.$$"
	trap 'rm -f "$tmp"' EXIT
	(cd "$here" && CGO_ENABLED=1 go build -trimpath -tags sqlite,sqlite_omit_load_extension \
		-o "$tmp" github.com/ory/hydra/v2)
	mv -f "$tmp" "$bin"
fi
echo "$bin"
