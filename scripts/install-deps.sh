#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Installs what uffdwp needs to build and test, from Debian's packages only.
#   build-essential      the C compiler and make
#   libzstd-dev          page data compression
#   libprotobuf-c-dev,
#   protobuf-c-compiler  image index records (images/*.proto)
#   libnl-3-dev          CRIU's plugin headers include it
#   python3-pytest, python3-pytest-timeout   the test suite (Debian's /usr/bin/python3)
#   python3-protobuf     CRIU's zdtm and crit need it
#   liblz4-dev, lz4      the benchmark compares against lz4
#   clang, clang-format, cppcheck   fuzzing and `make lint`
#   libbpf-dev, bpftool  (with clang) the tracker's BPF watch for holes
#                        punched in shared memory (plugin/lib/track/punch.bpf.c)
#   runc                 the runc tests (test_runtimes.py): checkpoint, restore
#   podman               the podman tests; runs containers through runc
#   busybox-static       the root of the test containers (with test/workloads/rt_wl)
#   redis-server, redis-tools   the redis migration tests (test_redis.py):
#                        the server, and redis-benchmark to fill it
set -eu
SUDO=
[ "$(id -u)" = 0 ] || SUDO=sudo
# Another apt (unattended-upgrades, say) may hold the dpkg lock: wait for it.
# sudo resets the environment: the frontend goes on apt-get's command line.
APT="$SUDO env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600"
$APT update -q
$APT install -y -q --no-install-recommends \
	build-essential pkg-config git \
	libzstd-dev zstd libprotobuf-c-dev protobuf-c-compiler libnl-3-dev \
	python3 python3-pytest python3-pytest-timeout python3-protobuf \
	liblz4-dev lz4 clang clang-format cppcheck libbpf-dev bpftool \
	runc podman busybox-static redis-server redis-tools
