#!/usr/bin/env bash
# make release: one tarball per platform in dist/ (the airlock binary,
# LICENSE, README.md and examples/), and dist/SHA256SUMS over them.
#
# The same commit gives the same bytes: the binary is built with -trimpath
# (no paths of this machine), -buildvcs (the commit is embedded) and the
# version stamped by -ldflags; the tarball's entries are sorted, owned by
# 0:0, with normalized modes and every mtime set to the commit time
# (SOURCE_DATE_EPOCH), and gzip stores no name or time.
#
# airlock links pg_query_go, which is C (cgo): each platform needs a C
# compiler for it. This machine's own platform uses gcc; another one needs a
# cross compiler, checked before anything is built:
#   linux/arm64  aarch64-linux-gnu-gcc  (Debian: gcc-aarch64-linux-gnu, libc6-dev-arm64-cross)
#   linux/amd64  x86_64-linux-gnu-gcc   (Debian: gcc-x86-64-linux-gnu, libc6-dev-amd64-cross)
# CC_FOR_<os>_<arch> (e.g. CC_FOR_linux_arm64) names another compiler.
#
# Environment: VERSION (required; the Makefile passes git describe), GO,
# PLATFORMS (default "linux/amd64 linux/arm64"), DIST (default dist),
# SOURCE_DATE_EPOCH (default: the commit time of HEAD).
set -euo pipefail
cd "$(dirname "$0")/.."

GO="${GO:-go}"
VERSION="${VERSION:?VERSION must be set (make release sets it from git describe)}"
PLATFORMS="${PLATFORMS:-linux/amd64 linux/arm64}"
DIST="${DIST:-dist}"

fail() { echo "make release: $*" >&2; exit 1; }

in_git=false
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then in_git=true; fi
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
  $in_git || fail "not a git checkout: set SOURCE_DATE_EPOCH (the release's timestamp, in seconds since 1970) and VERSION."
  SOURCE_DATE_EPOCH="$(git log -1 --format=%ct)"
fi
buildvcs=false
$in_git && buildvcs=true

host="$($GO env GOHOSTOS)/$($GO env GOHOSTARCH)"

# cc_for PLATFORM: the C compiler for PLATFORM, or fail with what to install.
cc_for() {
  local os="${1%/*}" arch="${1#*/}" var cc triplet pkg
  var="CC_FOR_${os}_${arch}"
  if [ -n "${!var:-}" ]; then
    cc="${!var}"
    command -v "$cc" >/dev/null 2>&1 || fail "$1: $var names $cc, which was not found."
    echo "$cc"; return
  fi
  if [ "$1" = "$host" ]; then echo "${CC:-gcc}"; return; fi
  case "$1" in
    linux/arm64) triplet=aarch64-linux-gnu pkg="gcc-aarch64-linux-gnu libc6-dev-arm64-cross" ;;
    linux/amd64) triplet=x86_64-linux-gnu pkg="gcc-x86-64-linux-gnu libc6-dev-amd64-cross" ;;
    *) fail "$1 is not a release platform (linux/amd64, linux/arm64)." ;;
  esac
  command -v "$triplet-gcc" >/dev/null 2>&1 ||
    fail "$1 needs a C cross compiler for pg_query_go (cgo), and $triplet-gcc was not found: install it (Debian: apt-get install $pkg), or build this machine's platform only with: make release PLATFORMS=$host"
  echo "$triplet-gcc"
}

# Check every platform before building any.
declare -A ccs
for p in $PLATFORMS; do ccs[$p]="$(cc_for "$p")"; done

# What goes into every tarball besides the binary: LICENSE, README.md and
# the files of examples/ that git tracks, so nothing git ignores ships
# (examples/demo/.state holds the demo's keys and admin password).
for f in LICENSE README.md; do [ -f "$f" ] || fail "$f is missing."; done
if $in_git; then
  mapfile -t examples < <(git ls-files -- examples)
else
  mapfile -t examples < <(find examples -type f ! -path '*/.state/*' ! -name '*.db*' | sort)
fi
extras=(LICENSE README.md "${examples[@]}")

mkdir -p "$DIST"
work="$(mktemp -d -t airlock-release.XXXXXX)"
trap 'rm -rf "$work"' EXIT

tarballs=()
for p in $PLATFORMS; do
  os="${p%/*}" arch="${p#*/}"
  name="airlock_${VERSION}_${os}_${arch}"
  stage="$work/$name"
  mkdir -p "$stage"
  echo "building $p (CC=${ccs[$p]})" >&2
  CGO_ENABLED=1 GOOS="$os" GOARCH="$arch" CC="${ccs[$p]}" \
    "$GO" build -trimpath -buildvcs="$buildvcs" -ldflags "-s -w -X main.version=$VERSION" \
    -o "$stage/airlock" ./cmd/airlock
  for f in "${extras[@]}"; do
    mkdir -p "$stage/$(dirname "$f")"
    cp "$f" "$stage/$f"
  done
  tar --format=gnu --sort=name --mtime="@$SOURCE_DATE_EPOCH" \
    --owner=0 --group=0 --numeric-owner --mode='u=rwX,go=rX' \
    -C "$work" -cf - "$name" | gzip -n -9 > "$DIST/$name.tar.gz"
  tarballs+=("$name.tar.gz")
done

(cd "$DIST" && sha256sum -- "${tarballs[@]}" > SHA256SUMS)
echo "wrote $(printf "$DIST/%s " "${tarballs[@]}")and $DIST/SHA256SUMS" >&2
