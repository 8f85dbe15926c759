#!/usr/bin/env bash
# Installs the Debian packages listed in scripts/system-packages.txt that are missing: all of them,
# or only those of the groups named as arguments (e.g. `install-system-packages.sh run demo`).
# Idempotent and quiet when everything is present; uses sudo only when not root.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
mapfile -t wanted < <(sed -e 's/#.*//' "$here/system-packages.txt" | awk -v groups="$*" '
    BEGIN { n = split(groups, names, " "); for (i = 1; i <= n; i++) chosen[names[i]] = 1 }
    NF > 0 && (n == 0 || ($2 in chosen)) { print $1 }')
[ ${#wanted[@]} -gt 0 ] || { echo "no packages in groups: $*" >&2; exit 2; }
missing=()
for pkg in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing Debian packages: ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
