#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# CRIU's log lint rules: no "\n" in pr_perror, no "%m", other pr_* lines end with "\n".
status=0
for f in "$@"; do
	case "$f" in *.c|*.h) ;; *) continue ;; esac
	if grep -n 'pr_perror(.*\\n"' "$f"; then
		echo "$f: pr_perror adds the newline itself" >&2; status=1
	fi
	if grep -n '%m' "$f"; then
		echo "$f: use pr_perror or uffdwp_strerror, not %m" >&2; status=1
	fi
	if grep -nE '\bpr_(err|warn|info|debug)\("([^"\\]|\\.)*[^n]"\s*[,)]' "$f" | grep -v '\\n"'; then
		echo "$f: pr_* messages end with \\n" >&2; status=1
	fi
done
exit $status
