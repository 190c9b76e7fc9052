#!/usr/bin/env bash
# Builds the envoyproxy/ratelimit service (src/service_cmd) for the global
# rate limit tests, or reuses the one cached for the same version and build
# inputs, and prints the path of the binary (stdout, last line; progress
# goes to stderr).
#
#   export EGRESS_XDS_RATELIMIT_BIN=$(tools/ratelimit/build.sh)
#
# The version is the one of tools/ratelimit/go.mod (the module proxy serves
# it; the project tags no releases, so it is a pseudo-version of a commit
# on main). The cache is $EGRESS_XDS_RATELIMIT_CACHE, default
# $HOME/.cache/egress-xds/ratelimit, one folder per version and hash of
# the build inputs. A cold build takes about a minute of 2 cores once the
# modules are downloaded; a cached one is instant.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"

version=$(awk '{ for (i = 1; i < NF; i++) if ($i == "github.com/envoyproxy/ratelimit") { print $(i + 1); exit } }' go.mod)
inputs=$(cat go.mod go.sum build.sh tools.go | sha256sum | cut -c1-12)
cache="${EGRESS_XDS_RATELIMIT_CACHE:-$HOME/.cache/egress-xds/ratelimit}"
out="$cache/$version-$inputs"

if [ -x "$out/ratelimit" ]; then
  echo "ratelimit service: reusing $out/ratelimit" >&2
  echo "$out/ratelimit"
  exit 0
fi

echo "ratelimit service: building github.com/envoyproxy/ratelimit $version into $out" >&2
start=$(date +%s)
tmp="$out.tmp.$$"
rm -rf "$tmp"
mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT
# The tools module's own go.mod and go.sum are complete: read-only is
# enough, and the main module's GOFLAGS must not leak in.
export GOFLAGS=-mod=readonly GOWORK=off CGO_ENABLED=0
go build -trimpath -ldflags "-s -w" -o "$tmp/ratelimit" github.com/envoyproxy/ratelimit/src/service_cmd
rm -rf "$out"
mv "$tmp" "$out"
trap - EXIT
# Older builds of this cache are left alone: another checkout may use them.
echo "ratelimit service: built in $(( $(date +%s) - start ))s" >&2
echo "$out/ratelimit"
