#!/bin/sh
# Usage: scripts/need.sh PACKAGE...
# Installs the Debian packages that are missing (as root), or says how to (otherwise).
# Under make -j several of these run at once: one lock file makes them take turns, and
# apt-get waits for a dpkg lock held by anything else.
missing=""
for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ]; then
    echo "need.sh: installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt="apt-get -o DPkg::Lock::Timeout=600"
    exec 9>/var/lock/cb-need.lock && flock -w 900 9 ||
        { echo "need.sh: could not take /var/lock/cb-need.lock" >&2; exit 1; }
    $apt install -y --no-install-recommends $missing >/dev/null 2>&1 ||
        { $apt update >/dev/null 2>&1 && $apt install -y --no-install-recommends $missing >/dev/null; } ||
        { echo "need.sh: apt-get install failed for:$missing" >&2; exit 1; }
else
    echo "need.sh: missing Debian packages:$missing" >&2
    echo "need.sh: run as root, or: sudo apt-get install -y$missing" >&2
    exit 1
fi
