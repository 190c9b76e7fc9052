#!/usr/bin/env bash
# Builds kube-apiserver and etcd for the real-API-server tests, or reuses
# the ones cached for the same versions and build inputs, and prints the
# folder that holds them (stdout, last line; progress goes to stderr).
#
#   dir=$(tools/kube/build.sh)
#   export EGRESS_XDS_KUBE_APISERVER=$dir/kube-apiserver EGRESS_XDS_ETCD=$dir/etcd
#
# Versions are those of tools/kube/go.mod: k8s.io/kubernetes (with every
# k8s.io staging module replaced by the matching v0.x release) and
# go.etcd.io/etcd/server/v3, the etcd that Kubernetes release is tested
# with. The cache is $EGRESS_XDS_KUBE_CACHE, default
# $HOME/.cache/egress-xds/kube, one folder per version and hash of the
# build inputs. A cold build takes about 4 minutes of 2 cores once the
# modules are downloaded (about 10 with a cold module cache); a cached one
# is instant.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"

kube_version=$(awk '$1 == "k8s.io/kubernetes" { print $2; exit }' go.mod)
etcd_version=$(awk '$1 == "go.etcd.io/etcd/server/v3" { print $2; exit }' go.mod)
inputs=$(cat go.mod go.sum build.sh tools.go | sha256sum | cut -c1-12)
cache="${EGRESS_XDS_KUBE_CACHE:-$HOME/.cache/egress-xds/kube}"
out="$cache/$kube_version-etcd$etcd_version-$inputs"

if [ -x "$out/kube-apiserver" ] && [ -x "$out/etcd" ]; then
  echo "kube test binaries: reusing $out" >&2
  echo "$out"
  exit 0
fi

echo "kube test binaries: building kube-apiserver $kube_version and etcd $etcd_version into $out" >&2
start=$(date +%s)
tmp="$out.tmp.$$"
rm -rf "$tmp"
mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT
# The tools module's own go.mod and go.sum are complete: read-only is
# enough, and the main module's GOFLAGS must not leak in.
export GOFLAGS=-mod=readonly GOWORK=off CGO_ENABLED=0
major=${kube_version#v}; major=${major%%.*}
minor=${kube_version#v*.}; minor=${minor%%.*}
go build -trimpath -ldflags "-s -w \
  -X k8s.io/component-base/version.gitVersion=$kube_version \
  -X k8s.io/component-base/version.gitMajor=$major \
  -X k8s.io/component-base/version.gitMinor=$minor \
  -X k8s.io/component-base/version.gitTreeState=clean" \
  -o "$tmp/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
go build -trimpath -ldflags "-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3
"$tmp/kube-apiserver" --version >&2
"$tmp/etcd" --version | head -1 >&2
rm -rf "$out"
mv "$tmp" "$out"
trap - EXIT
# Older builds of this cache are left alone: another checkout may use them.
echo "kube test binaries: built in $(( $(date +%s) - start ))s" >&2
echo "$out"
