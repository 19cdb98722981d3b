#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# The built-in demo: a workload that keeps writing a few pages of a 64 MiB
# heap, tracked with async uffd-wp over three iterations, as a pre-copy
# migration would see it. Needs root (ptrace, pidfd_getfd) and Linux 6.7+.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
U=$BUILD/uffdwp

coproc WL { exec "$BUILD/test/memwl"; }
trap 'kill -9 $WL_PID 2>/dev/null; $U track stop -t $WL_PID >/dev/null 2>&1 || true' EXIT
ask() { echo "$1" >&"${WL[1]}"; read -r -u "${WL[0]}" ans; [[ $ans == ok* ]] || { echo "workload: $ans"; exit 1; }; }
read -r -u "${WL[0]}" ready
ask "map 1 anon 16384"
ask "write 1 0 16384 1"
echo "== demo workload $WL_PID: 64 MiB written once, one thread now writing 2000 random pages a second"
ask "spin 1 1 2000"

echo "== uffdwp track start"
$U track start -t "$WL_PID"
for i in 1 2 3; do
	sleep 1
	echo "== iteration $i: uffdwp track scan (what a pre-dump would copy)"
	$U track scan -t "$WL_PID"
done
echo "== uffdwp track status"
$U track status -t "$WL_PID"
$U track stop -t "$WL_PID"
echo "== uffdwp track rate: will iterative pre-copy converge?"
$U track rate -t "$WL_PID" --interval 0.5 --count 4
