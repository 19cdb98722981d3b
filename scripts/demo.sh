#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# The built-in demo: a workload that keeps writing a few pages of a 64 MiB
# heap, tracked with async uffd-wp over three iterations, as a pre-copy
# migration would see it; then a base snapshot and two deltas of it into a
# temporary directory, the chain's sizes, and a check of every checksum;
# then, with CRIU built (make setup), a live migration between two network
# namespaces (scripts/demo-migrate).
# Needs root (ptrace, pidfd_getfd) and Linux 6.7+: run by a user, it runs
# itself again under sudo.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
if [ "$(id -u)" != 0 ]; then
	command -v sudo >/dev/null || {
		echo "demo: tracking another process needs root, and there is no sudo" >&2
		exit 1
	}
	exec sudo env BUILD="$BUILD" ${CRIU:+CRIU="$CRIU"} "$PWD/scripts/demo.sh" "$@"
fi
U=$BUILD/uffdwp

SNAPS=$(mktemp -d "${TMPDIR:-/var/tmp}/uffdwp-demo.XXXXXX")
coproc WL { exec "$BUILD/test/memwl"; }
WLP=$WL_PID # bash unsets WL_PID once the coprocess is gone
trap 'kill -9 $WLP 2>/dev/null; wait $WLP 2>/dev/null || true; $U track stop -t $WLP >/dev/null 2>&1 || true; rm -rf "$SNAPS"' EXIT
ask() { echo "$1" >&"${WL[1]}"; read -r -u "${WL[0]}" ans; [[ $ans == ok* ]] || { echo "workload: $ans"; exit 1; }; }
read -r -u "${WL[0]}" ready
ask "map 1 anon 16384"
ask "write 1 0 16384 1"
echo "== demo workload $WL_PID: 64 MiB written once, one thread now writing 2000 random pages a second"
ask "spin 1 1 2000"

echo "== uffdwp track start: a holder process keeps the userfaultfd open between commands"
$U track start -t "$WL_PID"
echo "   (its scan 1 write-protected everything; the scans below count on from there)"
for i in 1 2 3; do
	sleep 1
	echo "== iteration $i: uffdwp track scan (what a pre-dump would copy)"
	[ "$i" = 1 ] && echo "   (written: since the last scan; pending: from a scan held and not committed, so" &&
		echo "   reported again; not dumped: a shared mapping of a file, which holds its data)"
	$U track scan -t "$WL_PID"
done
echo "== uffdwp track status"
$U track status -t "$WL_PID"
$U track stop -t "$WL_PID"
echo "== uffdwp track rate: will iterative pre-copy converge?"
$U track rate -t "$WL_PID" --interval 0.5 --count 4

echo "== uffdwp snap: a full snapshot, then two deltas a second apart, in $SNAPS"
echo "   (stored: data in the image; zero/fill: pages of one byte, no data; in parent: the"
echo "   parent's; re-read: written during the copy, read again while the tree was stopped)"
$U snap -t "$WL_PID" -D "$SNAPS/0"
for i in 1 2; do
	sleep 1
	$U snap -t "$WL_PID" -D "$SNAPS/$i" --parent "$SNAPS/$((i - 1))"
done
echo "== uffdwp img stats: the chain, newest first"
$U img stats "$SNAPS/2" | grep -v '^    '
echo "== uffdwp img verify: every checksum of the chain"
$U img verify "$SNAPS/2"

CRIU=${CRIU:-$BUILD/criu-uffdwp/sbin/criu}
if [ -x "$CRIU" ] && [ -f "$BUILD/uffdwp_plugin.so" ]; then
	echo "== uffdwp migrate: the main job, a live workload moved to another host with CRIU"
	CRIU=$CRIU scripts/demo-migrate --build "$BUILD" --lazy-restore
else
	echo "== uffdwp migrate: skipped, no CRIU with criu-patches/ at $CRIU ('make setup' builds it)"
fi
