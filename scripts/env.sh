# Sourced by the scripts: puts Node.js 24 first on PATH (the one setup.sh installed, if any).
if [ -x /opt/bulkhead/node/bin/node ]; then export PATH=/opt/bulkhead/node/bin:$PATH; fi
