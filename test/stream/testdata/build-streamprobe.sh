#!/bin/sh
# Builds the Go stream probe used by test/stream/go-client.test.ts: client-go's real SPDY exec and
# port-forward clients, compiled against the client-go vendored in cri-tools v1.26.1 (Debian's Go
# 1.19 is enough; no network needed). Usage: build-streamprobe.sh /path/to/cri-tools-v1.26.1 [out]
set -eu
src=${1:?path to a cri-tools v1.26.1 checkout (with vendor/)}
out=${2:-/tmp/streamprobe}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$src/cmd/streamprobe"
cp "$here/streamprobe/main.go" "$src/cmd/streamprobe/main.go"
cd "$src"
GOFLAGS=-mod=vendor GOPROXY=off go build -o "$out" ./cmd/streamprobe
echo "built $out"
