# SPDX-License-Identifier: GPL-2.0
#
# uffdwp: plain make. `make` builds the core library, the uffdwp command,
# the CRIU plugin and the test workloads into $(BUILD); nothing is written
# into the source tree.

BUILD      ?= build
PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
MANDIR     ?= $(PREFIX)/share/man
PLUGINDIR  ?= /usr/lib/criu
DESTDIR    ?=
PYTHON     ?= /usr/bin/python3
PYTEST_ARGS ?=
TESTS      ?= test

CC         ?= cc
PROTOC_C   ?= protoc-c
CFLAGS     ?= -O2 -g
WARNINGS   := -Wall -Wextra -Werror -Wno-unused-parameter -Wshadow -Wformat=2 \
	      -Wstrict-prototypes -Wmissing-prototypes
CPPFLAGS   += -D_GNU_SOURCE -Iplugin/include -Iplugin/lib -I$(BUILD)/images
ALL_CFLAGS := -std=gnu11 -fPIC -fvisibility=hidden $(WARNINGS) $(CFLAGS)
LDLIBS     += -lprotobuf-c -lzstd -lpthread
CLANG      ?= clang
BPFTOOL    ?= bpftool
# With libbpf, clang and bpftool the tracker watches shared objects for
# holes punched in them with BPF (plugin/lib/track/punchwatch.h); without
# them it builds anyway and treats such objects more coarsely.
HAVE_BPF   := $(and $(shell pkg-config --exists libbpf 2>/dev/null && echo y),\
		$(shell command -v $(CLANG) 2>/dev/null),$(shell command -v $(BPFTOOL) 2>/dev/null))
ifneq ($(HAVE_BPF),)
CPPFLAGS   += -DUFFDWP_HAVE_BPF
LDLIBS     += -lbpf
endif

ifeq ($(SANITIZE),1)
ALL_CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS    += -fsanitize=address,undefined
endif

PROTOS      := $(wildcard images/*.proto)
PROTO_SRCS  := $(patsubst images/%.proto,$(BUILD)/images/%.pb-c.c,$(PROTOS))
PROTO_HDRS  := $(PROTO_SRCS:.c=.h)
# The library, one room per subsystem (plugin/lib/ROOM/, README "Layout").
LIB_SRCS    := $(filter-out %.bpf.c,$(wildcard plugin/lib/*/*.c))
LIB_OBJS    := $(patsubst plugin/lib/%.c,$(BUILD)/lib/%.o,$(LIB_SRCS)) \
	       $(PROTO_SRCS:.c=.o)
# Applications of the library (plugin/app/ROOM/), linked into the command.
APP_SRCS    := $(wildcard plugin/app/*/*.c)
APP_OBJS    := $(patsubst plugin/app/%.c,$(BUILD)/app/%.o,$(APP_SRCS))
CLI_SRCS    := $(wildcard plugin/cli/*.c)
CLI_OBJS    := $(patsubst plugin/cli/%.c,$(BUILD)/cli/%.o,$(CLI_SRCS)) $(APP_OBJS)
CRIU_SRCS   := $(wildcard plugin/criu/*.c)
CRIU_OBJS   := $(patsubst plugin/criu/%.c,$(BUILD)/criu/%.o,$(CRIU_SRCS))
WL_SRCS     := $(wildcard test/workloads/*.c)
WL_BINS     := $(patsubst test/workloads/%.c,$(BUILD)/test/%,$(WL_SRCS))

LIB         := $(BUILD)/libuffdwp.a
CLI         := $(BUILD)/uffdwp
# The CRIU plugin needs a criu-plugin.h with the memory tracking hooks, i.e.
# of a CRIU with criu-patches/ applied and installed: `make criu` builds one
# into $(CRIU_PREFIX) (scripts/build-criu), which is then used by default.
CRIU_PREFIX ?= $(BUILD)/criu-uffdwp
CRIU_INCLUDE ?= $(firstword $(wildcard $(CRIU_PREFIX)/include/criu /opt/criu/include/criu))
# The CRIU and CRIU source tree the tests use: $(CRIU) and $(CRIU_SRC) when
# set, else what `make criu` built.
BUILT_CRIU  := $(wildcard $(abspath $(CRIU_PREFIX))/sbin/criu)
BUILT_SRC   := $(wildcard $(abspath $(BUILD))/criu-src/criu/test/zdtm.py)
TEST_ENV    := $(if $(CRIU),,$(if $(BUILT_CRIU),CRIU=$(BUILT_CRIU))) \
	       $(if $(CRIU_SRC),,$(if $(BUILT_SRC),CRIU_SRC=$(abspath $(BUILD))/criu-src/criu))
# Tracking other processes needs root; a user with sudo gets it for the
# commands that need it.
SUDO        := $(if $(filter 0,$(shell id -u)),,sudo)
CRIU_CPPFLAGS := $(if $(CRIU_INCLUDE),-I$(CRIU_INCLUDE))
CRIU_HOOKS  := $(if $(CRIU_INCLUDE),$(shell grep -ls CR_PLUGIN_HOOK__MEM_DIRTY_RANGES \
		 $(CRIU_INCLUDE)/criu-plugin.h))
PLUGIN      := $(if $(and $(CRIU_SRCS),$(CRIU_HOOKS)),$(BUILD)/uffdwp_plugin.so)

.PHONY: all test lint install uninstall bench clean demo fuzz criu setup help distclean zdtm man \
	check-series
.DELETE_ON_ERROR:
# Generated protobuf-c sources are not intermediates to delete.
.SECONDARY: $(PROTO_SRCS) $(PROTO_HDRS)

MAN         := $(BUILD)/uffdwp.1

all: $(LIB) $(CLI) $(PLUGIN) $(WL_BINS) $(MAN)
	$(if $(PLUGIN),,@echo "note: CRIU plugin not built: no criu-plugin.h with memory tracking hooks in CRIU_INCLUDE='$(CRIU_INCLUDE)'; run 'make criu' (builds CRIU with criu-patches/), then make again")

$(BUILD)/images/%.pb-c.c $(BUILD)/images/%.pb-c.h: images/%.proto
	@mkdir -p $(@D)
	$(PROTOC_C) --proto_path=images --c_out=$(BUILD)/images $<

$(BUILD)/images/%.pb-c.o: $(BUILD)/images/%.pb-c.c
	$(CC) $(CPPFLAGS) -std=gnu11 -fPIC $(CFLAGS) -Wall -Werror -c -o $@ $<

$(BUILD)/lib/%.o: plugin/lib/%.c $(PROTO_HDRS)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/cli/%.o: plugin/cli/%.c $(PROTO_HDRS)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) -I$(BUILD)/cli -Iplugin/app $(ALL_CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/app/%.o: plugin/app/%.c $(PROTO_HDRS)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) -Iplugin/app $(ALL_CFLAGS) -MMD -MP -c -o $@ $<

# What `uffdwp --version` says: this tree's commit, the plugin ABI of the
# criu-plugin.h the plugin is built against, the series' CRIU commit.
# Rewritten only when it changes, so that nothing rebuilds for nothing.
VERSION     := $(or $(shell git describe --always --dirty 2>/dev/null),unknown)
CRIU_BASE   := $(shell head -1 criu-patches/BASE 2>/dev/null)
PLUGIN_ABI  := $(if $(PLUGIN),$(shell sed -n 's/^\#define CRIU_PLUGIN_VERSION_\(MAJOR\|MINOR\|SUBLEVEL\)[[:space:]]*\([0-9]*\).*/\2/p' \
		 $(CRIU_INCLUDE)/criu-plugin.h | paste -sd.))
$(BUILD)/cli/version.h: FORCE
	@mkdir -p $(@D)
	@printf '#define UFFDWP_VERSION "%s"\n#define UFFDWP_PLUGIN_ABI "%s"\n#define UFFDWP_CRIU_BASE "%s"\n' \
		'$(VERSION)' '$(PLUGIN_ABI)' '$(CRIU_BASE)' | cmp -s - $@ || \
	printf '#define UFFDWP_VERSION "%s"\n#define UFFDWP_PLUGIN_ABI "%s"\n#define UFFDWP_CRIU_BASE "%s"\n' \
		'$(VERSION)' '$(PLUGIN_ABI)' '$(CRIU_BASE)' > $@
$(BUILD)/cli/main.o: $(BUILD)/cli/version.h

# Which criu-plugin.h the plugin was built against: another CRIU_INCLUDE
# rebuilds it (the dependency files only name the old header).
CRIU_STAMP  := $(BUILD)/criu/criu-include.stamp
$(CRIU_STAMP): FORCE
	@mkdir -p $(@D)
	@echo '$(CRIU_INCLUDE)' | cmp -s - $@ || echo '$(CRIU_INCLUDE)' > $@

.PHONY: FORCE
FORCE:

$(BUILD)/criu/%.o: plugin/criu/%.c $(PROTO_HDRS) $(CRIU_STAMP)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CRIU_CPPFLAGS) $(ALL_CFLAGS) -MMD -MP -c -o $@ $<

# BPF programs: compiled for the kernel, embedded in a libbpf skeleton.
$(BUILD)/bpf/%.bpf.o: plugin/lib/track/%.bpf.c plugin/lib/track/punch_key.h
	@mkdir -p $(@D)
	$(CLANG) -O2 -g -target bpf -Wall -Werror -Iplugin/lib \
		-idirafter /usr/include/$(shell $(CC) -print-multiarch 2>/dev/null) -c -o $@ $<

$(BUILD)/bpf/%.skel.h: $(BUILD)/bpf/%.bpf.o
	$(BPFTOOL) gen skeleton $< name uffdwp_$* > $@

ifneq ($(HAVE_BPF),)
$(BUILD)/lib/track/punchwatch.o: $(BUILD)/bpf/punch.skel.h
$(BUILD)/lib/track/punchwatch.o: CPPFLAGS += -I$(BUILD)/bpf
endif

# Made anew: a member of a file moved or removed must not linger.
$(LIB): $(LIB_OBJS)
	@rm -f $@
	$(AR) rcs $@ $^

$(CLI): $(CLI_OBJS) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $(CLI_OBJS) $(LIB) $(LDLIBS)

# The manual comes from the same tables as --help (plugin/cli/doc.c).
man: $(MAN)
$(MAN): $(CLI)
	$(CLI) --help-man > $@

$(BUILD)/uffdwp_plugin.so: $(CRIU_OBJS) $(LIB) plugin/criu/uffdwp_plugin.map
	$(CC) $(LDFLAGS) -shared -Wl,--version-script=plugin/criu/uffdwp_plugin.map \
		-o $@ $(CRIU_OBJS) $(LIB) $(LDLIBS)

# Workloads are test programs: same warnings, no library.
$(BUILD)/test/%: test/workloads/%.c test/workloads/workload.h
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) -Itest/workloads -std=gnu11 $(WARNINGS) $(CFLAGS) $(WL_LDFLAGS) -o $@ $< -lpthread

# rt_wl runs as a container's init in a root that has no C library.
$(BUILD)/test/rt_wl: WL_LDFLAGS := -static

test: all
	$(SUDO) env UFFDWP_BUILD=$(abspath $(BUILD)) $(TEST_ENV) $(PYTHON) -m pytest -ra $(TESTS) $(PYTEST_ARGS)

demo: all
	$(SUDO) env BUILD=$(BUILD) $(if $(BUILT_CRIU),CRIU=$(BUILT_CRIU)) scripts/demo.sh

# CRIU at criu-patches/BASE with the series, into $(CRIU_PREFIX); quick when
# nothing changed. The plugin is then built against it.
criu:
	scripts/build-criu --prefix $(CRIU_PREFIX) --work $(BUILD)/criu-src
	$(MAKE) all

# Every zdtm/static test the uns flavour accepts, plainly and in both tracked
# modes: a table in $(BUILD)/zdtm/zdtm.md. Hours; ZDTM_ARGS=--resume goes on
# after an interruption, ZDTM_ARGS="-t maps00 -t shm" runs a few.
zdtm: all
	$(SUDO) env $(TEST_ENV) scripts/zdtm-table --build $(abspath $(BUILD)) $(ZDTM_ARGS)

# The series patch by patch: each builds, and zdtm's memory tests pass on it
# (plainly, and tracked from the patch that gives zdtm the mode). About an
# hour; a table in $(BUILD)/series/series.md.
check-series: all
	$(SUDO) env $(TEST_ENV) scripts/check-series --zdtm --build $(abspath $(BUILD)) $(SERIES_ARGS)

# A fresh machine: Debian packages, CRIU with the series, everything built.
setup:
	scripts/install-deps.sh
	$(MAKE) criu

$(BUILD)/bench-track-tool: scripts/bench-track-tool.c scripts/bench-track-child.c scripts/bench-track-out.c \
			   scripts/bench-track.h $(LIB)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $(filter %.c,$^) $(LIB) $(LDLIBS)

bench: all $(BUILD)/bench-track-tool
	scripts/bench-track --out $(BUILD)/bench-track.json
	scripts/bench-img --build $(BUILD) --out $(BUILD)/bench-img.json

# CRIU migration with --uffd-wp-track (issue 4): needs root, a CRIU with
# criu-patches/ and the plugin built against it, else it says why and skips.
# About 5 minutes and 10 GB of disk; add 16 GiB by hand: --sizes 1G,4G,16G.
.PHONY: bench-criu
bench-criu: all
	scripts/bench-criu --build $(BUILD) --out $(BUILD)/bench-criu.json

# Lazy restore of a whole chain (issue 11): 4 GiB bench_wl and ~1 GiB redis,
# eager against lazy; root, a CRIU with criu-patches/, ~15 GB of disk.
.PHONY: bench-lazy
bench-lazy: all
	scripts/bench-lazy --build $(BUILD) --out $(BUILD)/bench-lazy.json

# The image readers under libFuzzer (clang); the tests run it for 30 s,
# run it longer by hand: build/fuzz/fuzz_img -max_total_time=600 build/fuzz/corpus
fuzz: all
	$(MAKE) -C test/fuzz BUILD=$(abspath $(BUILD))

C_FILES = $(shell git ls-files '*.c' '*.h' 2>/dev/null)

lint:
	clang-format --dry-run -Werror $(C_FILES)
	scripts/lint-log.sh $(C_FILES)
	cppcheck --quiet --error-exitcode=1 --enable=warning,portability \
		--suppress=missingIncludeSystem --inline-suppr \
		-D_GNU_SOURCE -Iplugin/include -Iplugin/lib -Iplugin/app \
		$(filter-out %.bpf.c,$(filter %.c,$(C_FILES)))

install: all
	install -D -m 0755 $(CLI) $(DESTDIR)$(BINDIR)/uffdwp
	install -D -m 0644 $(MAN) $(DESTDIR)$(MANDIR)/man1/uffdwp.1
	$(if $(PLUGIN),install -D -m 0644 $(PLUGIN) $(DESTDIR)$(PLUGINDIR)/uffdwp_plugin.so)

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/uffdwp $(DESTDIR)$(PLUGINDIR)/uffdwp_plugin.so \
		$(DESTDIR)$(MANDIR)/man1/uffdwp.1

# clean keeps the CRIU that `make criu` built (two minutes to redo);
# distclean removes it too.
clean:
	find $(BUILD) -mindepth 1 -maxdepth 1 ! -name criu-uffdwp ! -name criu-src \
		-exec rm -rf {} + 2>/dev/null || true

distclean:
	rm -rf $(BUILD)

help:
	@echo 'make              build the library, the uffdwp command, the CRIU plugin'
	@echo '                  (when a CRIU with criu-patches/ is found) and the test workloads'
	@echo 'make setup        a fresh machine: Debian packages, CRIU with the series'
	@echo '                  into $(CRIU_PREFIX), then everything built'
	@echo 'make criu         only CRIU with the series (scripts/build-criu --help)'
	@echo 'make demo         the demo: track, snapshot and migrate a live workload (root or sudo)'
	@echo 'make test         the test suite (root or sudo; PYTEST_ARGS=... passes on)'
	@echo 'make zdtm         CRIU zdtm/static in three modes, a table (hours; by hand)'
	@echo 'make check-series each CRIU patch built, zdtm memory tests on it (an hour)'
	@echo 'make lint         clang-format, the log-message rules, cppcheck'
	@echo 'make bench        tracker and image benchmarks (JSON in $(BUILD)/)'
	@echo 'make bench-criu   CRIU migration benchmark (root, about 10 minutes)'
	@echo 'make bench-lazy   lazy restore of whole chains, bench_wl and redis (root)'
	@echo 'make fuzz         the image readers under libFuzzer'
	@echo 'make man          the manual page, $(MAN), from the tables --help uses'
	@echo 'make install      uffdwp into $(BINDIR), its manual into $(MANDIR)/man1,'
	@echo '                  the plugin into $(PLUGINDIR)'
	@echo 'make clean        remove build outputs but CRIU; distclean removes all'
	@echo 'Variables: BUILD=$(BUILD) CRIU_INCLUDE=$(CRIU_INCLUDE) PREFIX=$(PREFIX) MANDIR=$(MANDIR)'
	@echo '           PLUGINDIR=$(PLUGINDIR) SANITIZE=1 (ASan/UBSan) CRIU=... CRIU_SRC=...'

-include $(wildcard $(BUILD)/*/*.d $(BUILD)/app/*/*.d)
