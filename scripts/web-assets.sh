#!/usr/bin/env bash
# Fetch Leaflet from the npm registry (never a CDN) into node_modules/ and copy its dist files into the package's
# static folder, which git ignores. Offline machines that already ran this once keep working.
set -euo pipefail
dest=src/routewatch/web/static/vendor/leaflet
if [ -f "$dest/leaflet.js" ]; then exit 0; fi
if ! command -v npm >/dev/null 2>&1; then
  echo "npm is missing: run 'make system-deps' (Debian package npm) to install Leaflet for the dashboard" >&2
  exit 1
fi
npm install --no-audit --no-fund --silent --prefix . leaflet@1.9.4 >/dev/null
mkdir -p "$dest"
cp -r node_modules/leaflet/dist/. "$dest/"
