// SPDX-License-Identifier: GPL-2.0
/* The tracker benchmark's output: the table and the JSON (bench-track.h). */
#define LOG_PREFIX "bench-track: "
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include "base/log.h"
#include "bench-track.h"

void machine_read(struct machine *m)
{
	char line[256], *s, *e;
	struct utsname u;
	time_t now = time(NULL);
	struct tm tm;
	FILE *f;

	memset(m, 0, sizeof(*m));
	if (!uname(&u))
		snprintf(m->kernel, sizeof(m->kernel), "%s", u.release);
	snprintf(m->cpu, sizeof(m->cpu), "unknown");
	f = fopen("/proc/cpuinfo", "re");
	while (f && fgets(line, sizeof(line), f)) {
		if (strncmp(line, "model name", 10) || !(s = strchr(line, ':')))
			continue;
		for (s++; *s == ' ' || *s == '\t'; s++)
			;
		s[strcspn(s, "\n")] = '\0';
		snprintf(m->cpu, sizeof(m->cpu), "%s", s);
		break;
	}
	if (f)
		fclose(f);
	snprintf(m->thp, sizeof(m->thp), "absent");
	f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "re");
	if (f && fgets(line, sizeof(line), f) && (s = strchr(line, '[')) && (e = strchr(s, ']'))) {
		*e = '\0';
		snprintf(m->thp, sizeof(m->thp), "%s", s + 1);
	}
	if (f)
		fclose(f);
	m->cpus = sysconf(_SC_NPROCESSORS_ONLN);
	m->mem_total = (uint64_t)sysconf(_SC_PHYS_PAGES) * sysconf(_SC_PAGESIZE);
	gmtime_r(&now, &tm);
	strftime(m->date, sizeof(m->date), "%FT%TZ", &tm);
}

enum target_id { T_SCAN0, T_SCAN0_VS_PAGEMAP, T_ATTACH, T_MEM, T_HOLDER, NR_TARGETS };

static const struct {
	const char *key;
	const char *text;
	double limit;
	bool at_least;
} targets[NR_TARGETS] = {
    [T_SCAN0] = {"scan_0pct_ms_per_gib", "<= 1 ms/GiB", 1.0, false},
    [T_SCAN0_VS_PAGEMAP] = {"pagemap_over_scan_0pct", ">= 10x", 10.0, true},
    [T_ATTACH] = {"attach_ms_1gib", "<= 25 ms", 25.0, false},
    [T_MEM] = {"tracker_kib_per_gib", "<= 64 KiB/GiB", 64.0, false},
    [T_HOLDER] = {"holder_rss_mib", "<= 4 MiB", 4.0, false},
};

/* The value @r has for target @id; false when the target does not apply to it. */
static bool target_value(const struct result *r, enum target_id id, double *v)
{
	switch (id) {
	case T_SCAN0:
		*v = r->scan_ms[P0] / gib(r->size);
		return !r->thp; /* the target is about 4 KiB pages */
	case T_SCAN0_VS_PAGEMAP:
		*v = r->scan_ms[P0] > 0 ? r->pagemap_ms / r->scan_ms[P0] : 0;
		return !r->thp;
	case T_ATTACH:
		*v = r->attach_ms;
		return r->size == GIB;
	case T_MEM:
		*v = r->mem_committed_max / 1024.0 / gib(r->tracked_bytes);
		return true;
	case T_HOLDER:
		*v = r->holder_rss / 1048576.0;
		return r->holder_rss != 0;
	default:
		return false;
	}
}

static bool target_pass(enum target_id id, double v)
{
	return targets[id].at_least ? v >= targets[id].limit : v <= targets[id].limit;
}

static void json_pct(FILE *f, const char *key, const double *v, const char *fmt_end)
{
	int p;

	fprintf(f, "\"%s\": {", key);
	for (p = 0; p < NR_PCT; p++)
		fprintf(f, "%s\"%s\": %.4f", p ? ", " : "", pct_name[p], v[p]);
	fprintf(f, "}%s", fmt_end);
}

static void json_pct_u64(FILE *f, const char *key, const uint64_t *v, const char *fmt_end)
{
	int p;

	fprintf(f, "\"%s\": {", key);
	for (p = 0; p < NR_PCT; p++)
		fprintf(f, "%s\"%s\": %" PRIu64, p ? ", " : "", pct_name[p], v[p]);
	fprintf(f, "}%s", fmt_end);
}

static void json_result(FILE *f, const struct opts *o, const struct result *r)
{
	double per_gib[NR_PCT];
	unsigned int i;
	int p;

	for (p = 0; p < NR_PCT; p++)
		per_gib[p] = r->scan_ms[p] / gib(r->size);
	fprintf(f, "    {\"name\": \"%s\", \"size_bytes\": %" PRIu64 ", \"kind\": \"%s\",\n",
		r->name, r->size, r->thp ? "thp" : "4k");
	fprintf(f,
		"     \"anon_huge_bytes\": {\"start\": %" PRIu64 ", \"attached\": %" PRIu64
		", \"end\": %" PRIu64 "},\n",
		r->huge_start, r->huge_attached, r->huge_end);
	fprintf(f, "     \"probe_ms\": %.4f, \"attach_ms\": %.4f, \"stop_ms\": %.4f,\n",
		r->probe_ms, r->attach_ms, r->stop_ms);
	fprintf(f, "     \"attach_runs_ms\": [");
	for (i = 0; i < r->nr_attach; i++)
		fprintf(f, "%s%.4f", i ? ", " : "", r->attach_runs[i]);
	fprintf(f, "],\n");
	fprintf(f, "     ");
	json_pct(f, "scan_ms", r->scan_ms, ",\n     ");
	json_pct(f, "scan_ms_per_gib", per_gib, ",\n     ");
	fprintf(f, "\"scan_runs_ms\": {");
	for (p = 0; p < NR_PCT; p++) {
		fprintf(f, "%s\"%s\": [", p ? ", " : "", pct_name[p]);
		for (i = 0; i < o->runs; i++)
			fprintf(f, "%s%.4f", i ? ", " : "", r->scan_runs[p][i]);
		fprintf(f, "]");
	}
	fprintf(f, "},\n     ");
	json_pct_u64(f, "written_pages", r->written_pages, ",\n     ");
	json_pct_u64(f, "reported_pages_min", r->reported_min, ",\n     ");
	json_pct_u64(f, "reported_pages_max", r->reported_max, ",\n");
	fprintf(f, "     \"pagemap_read_ms\": %.4f, \"pagemap_over_scan_0pct\": %.2f,\n",
		r->pagemap_ms, r->scan_ms[P0] > 0 ? r->pagemap_ms / r->scan_ms[P0] : 0);
	fprintf(f,
		"     \"scan_0pct_breakdown_ms\": {\"maps\": %.4f, "
		"\"pagemap_scan_not_wpallowed\": %.4f, \"pagemap_scan_written_readonly\": %.4f},\n",
		r->bd.maps_ms, r->bd.wpallowed_ms, r->bd.written_ro_ms);
	fprintf(f,
		"     \"write_ns_per_page\": {\"untracked\": %.2f, \"first_after_protect\": %.2f, "
		"\"after_scan_reprotect\": %.2f}, \"write_pages\": %" PRIu64 ",\n",
		r->write_untracked_ns, r->write_first_ns, r->write_rescan_ns, r->fault_pages);
	fprintf(f,
		"     \"tracker_mem_bytes\": {\"after_attach\": %" PRIu64
		", \"committed_max\": %" PRIu64 ", \"pending_peak\": %" PRIu64 "},\n",
		r->mem_attach, r->mem_committed_max, r->mem_pending_peak);
	fprintf(f, "     \"tracked_bytes\": %" PRIu64 ", \"tracker_kib_per_gib\": %.3f,\n",
		r->tracked_bytes, r->mem_committed_max / 1024.0 / gib(r->tracked_bytes));
	fprintf(f,
		"     \"holder\": {\"rss_bytes\": %" PRIu64 ", \"rss_anon_bytes\": %" PRIu64
		", \"rss_file_bytes\": %" PRIu64 ", \"tracker_mem_bytes\": %" PRIu64 "}}",
		r->holder_rss, r->holder_rss_anon, r->holder_rss_file, r->holder_tracker_mem);
}

int json_write(const char *path, const struct opts *o, const struct machine *m,
	       const struct result *res, size_t nr)
{
	bool first = true;
	size_t i;
	int id, err = 0;
	FILE *f;

	f = fopen(path, "we");
	if (!f) {
		err = -errno;
		pr_perror("cannot write %s", path);
		return err;
	}
	fprintf(f, "{\n  \"bench\": \"track\",\n  \"machine\": {\"kernel\": ");
	uffdwp_json_str(f, m->kernel);
	fprintf(f, ", \"cpu\": ");
	uffdwp_json_str(f, m->cpu);
	fprintf(f, ", \"cpus\": %ld, \"mem_total_bytes\": %" PRIu64 ", \"thp\": ", m->cpus,
		m->mem_total);
	uffdwp_json_str(f, m->thp);
	fprintf(f, ", \"date\": \"%s\"},\n", m->date);
	fprintf(f, "  \"params\": {\"runs\": %u, \"write_pages\": %" PRIu64 ", \"quick\": %s},\n",
		o->runs, o->fault_pages, o->quick ? "true" : "false");
	fprintf(f, "  \"results\": [\n");
	for (i = 0; i < nr; i++) {
		json_result(f, o, &res[i]);
		fprintf(f, "%s\n", i + 1 < nr ? "," : "");
	}
	fprintf(f, "  ],\n  \"targets\": [");
	for (id = 0; id < NR_TARGETS; id++) {
		for (i = 0; i < nr; i++) {
			double v;

			if (!target_value(&res[i], id, &v))
				continue;
			fprintf(f,
				"%s\n    {\"name\": \"%s\", \"target\": \"%s\", \"limit\": %.1f, "
				"\"where\": \"%s\", \"value\": %.4f, \"pass\": %s}",
				first ? "" : ",", targets[id].key, targets[id].text,
				targets[id].limit, res[i].name, v,
				target_pass(id, v) ? "true" : "false");
			first = false;
		}
	}
	fprintf(f, "\n  ]\n}\n");
	if (fclose(f)) {
		err = -errno;
		pr_perror("cannot write %s", path);
	}
	return err;
}

#define LABEL_W 40
#define COL_W	10

/* One row of the table: a value per configuration, then target and verdict. */
static void table_row(const char *label, const struct result *res, size_t nr,
		      double (*get)(const struct result *), int prec, int target)
{
	char cell[32], verdict[96] = "";
	bool any = false, miss = false;
	size_t i;

	printf("%-*s", LABEL_W, label);
	for (i = 0; i < nr; i++) {
		double v = get(&res[i]), tv;
		bool applies = target >= 0 && target_value(&res[i], target, &tv);

		snprintf(cell, sizeof(cell), "%.*f", prec, v);
		if (applies && !target_pass(target, tv)) {
			strcat(cell, "*");
			if (!miss)
				snprintf(verdict, sizeof(verdict), "MISS (%s", res[i].name);
			else if (strlen(verdict) + strlen(res[i].name) + 4 < sizeof(verdict))
				strcat(strcat(verdict, ", "), res[i].name);
			miss = true;
		}
		any |= applies;
		printf("%*s", COL_W, cell);
	}
	if (target >= 0) {
		if (miss)
			strcat(verdict, ")");
		else
			snprintf(verdict, sizeof(verdict), "%s", any ? "PASS" : "n/a here");
		printf("  %-14s %s", targets[target].text, verdict);
	}
	printf("\n");
}

static double get_attach(const struct result *r)
{
	return r->attach_ms;
}

static double get_scan0(const struct result *r)
{
	return r->scan_ms[P0];
}

static double get_scan0_gib(const struct result *r)
{
	return r->scan_ms[P0] / gib(r->size);
}

static double get_scan1(const struct result *r)
{
	return r->scan_ms[P1];
}

static double get_scan10(const struct result *r)
{
	return r->scan_ms[P10];
}

static double get_pagemap(const struct result *r)
{
	return r->pagemap_ms;
}

static double get_ratio(const struct result *r)
{
	return r->scan_ms[P0] > 0 ? r->pagemap_ms / r->scan_ms[P0] : 0;
}

static double get_bd_maps(const struct result *r)
{
	return r->bd.maps_ms;
}

static double get_bd_wpa(const struct result *r)
{
	return r->bd.wpallowed_ms;
}

static double get_bd_wr(const struct result *r)
{
	return r->bd.written_ro_ms;
}

static double get_w_first(const struct result *r)
{
	return r->write_first_ns;
}

static double get_w_rescan(const struct result *r)
{
	return r->write_rescan_ns;
}

static double get_w_untracked(const struct result *r)
{
	return r->write_untracked_ns;
}

static double get_stop(const struct result *r)
{
	return r->stop_ms;
}

static double get_mem(const struct result *r)
{
	return r->mem_committed_max / 1024.0 / gib(r->tracked_bytes);
}

static double get_mem_pending(const struct result *r)
{
	return r->mem_pending_peak / 1024.0;
}

static double get_holder(const struct result *r)
{
	return r->holder_rss / 1048576.0;
}

static double get_huge(const struct result *r)
{
	return 100.0 * r->huge_attached / r->size;
}

void table_print(const struct opts *o, const struct machine *m, const struct result *res, size_t nr)
{
	size_t i;

	printf("uffdwp tracker benchmark: Linux %s, %s, %ld CPUs, %.0f GiB, THP %s, %s\n",
	       m->kernel, m->cpu, m->cpus, gib(m->mem_total), m->thp, m->date);
	printf("median of %u runs; ms unless said; * = target missed\n\n", o->runs);
	printf("%-*s", LABEL_W, "");
	for (i = 0; i < nr; i++)
		printf("%*s", COL_W, res[i].name);
	printf("  %-14s %s\n", "target", "verdict");
	table_row("huge pages at attach, %", res, nr, get_huge, 0, -1);
	table_row("attach (inject, register, protect)", res, nr, get_attach, 2, T_ATTACH);
	table_row("scan + commit, 0 % written", res, nr, get_scan0, 3, -1);
	table_row("  per GiB", res, nr, get_scan0_gib, 3, T_SCAN0);
	table_row("scan + commit, 1 % written", res, nr, get_scan1, 2, -1);
	table_row("scan + commit, 10 % written", res, nr, get_scan10, 2, -1);
	table_row("read /proc/PID/pagemap (soft-dirty)", res, nr, get_pagemap, 2, -1);
	table_row("  pagemap / scan 0 %, x", res, nr, get_ratio, 1, T_SCAN0_VS_PAGEMAP);
	table_row("scan 0 % parts: read maps", res, nr, get_bd_maps, 3, -1);
	table_row("  PAGEMAP_SCAN not WPALLOWED", res, nr, get_bd_wpa, 3, -1);
	table_row("  PAGEMAP_SCAN WRITTEN (no wp)", res, nr, get_bd_wr, 3, -1);
	table_row("write after attach's protect, ns/page", res, nr, get_w_first, 0, -1);
	table_row("write after a scan's protect, ns/page", res, nr, get_w_rescan, 0, -1);
	table_row("write untracked, ns/page", res, nr, get_w_untracked, 1, -1);
	table_row("stop (drop all protection)", res, nr, get_stop, 2, -1);
	table_row("tracker memory, KiB per GiB", res, nr, get_mem, 2, T_MEM);
	table_row("  peak before commit (10 %), KiB", res, nr, get_mem_pending, 0, -1);
	table_row("holder RSS, MiB", res, nr, get_holder, 2, T_HOLDER);
}
