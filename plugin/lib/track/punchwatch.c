// SPDX-License-Identifier: GPL-2.0
/* Counting holes punched in shared objects with BPF (punchwatch.h). */
#include <errno.h>
#include <stdlib.h>
#include <sys/sysmacros.h>

#include "track/punchwatch.h"

#ifdef UFFDWP_HAVE_BPF
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "track/punch_key.h"
#include "punch.skel.h"

struct uffdwp_punchwatch {
	struct uffdwp_punch *skel;
	int map_fd, lost_fd;
};

static int quiet_libbpf(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	return 0;
}

/* /proc and stat() give dev_t in glibc's encoding; the kernel keeps its own. */
static struct uffdwp_punch_key key_of(const struct uffdwp_obj_id *id)
{
	struct uffdwp_punch_key k = {
	    .dev = ((uint64_t)major(id->dev) << 20) | minor(id->dev),
	    .ino = id->ino,
	};

	return k;
}

int uffdwp_punchwatch__new(struct uffdwp_punchwatch **out)
{
	libbpf_print_fn_t old_print;
	struct uffdwp_punchwatch *pw;
	int err;

	pw = calloc(1, sizeof(*pw));
	if (!pw)
		return -ENOMEM;
	/* Its reasons come back as errno; the print function is the process's. */
	old_print = libbpf_set_print(quiet_libbpf);
	pw->skel = uffdwp_punch__open_and_load();
	err = pw->skel ? 0 : errno ? -errno : -EINVAL;
	libbpf_set_print(old_print);
	if (err)
		goto err;
	err = uffdwp_punch__attach(pw->skel);
	if (err)
		goto err;
	pw->map_fd = bpf_map__fd(pw->skel->maps.watched);
	pw->lost_fd = bpf_map__fd(pw->skel->maps.lost);
	*out = pw;
	return 0;
err:
	uffdwp_punchwatch__free(pw);
	return err < 0 ? err : -EINVAL;
}

void uffdwp_punchwatch__free(struct uffdwp_punchwatch *pw)
{
	if (!pw)
		return;
	uffdwp_punch__destroy(pw->skel);
	free(pw);
}

int uffdwp_punchwatch__watch(struct uffdwp_punchwatch *pw, const struct uffdwp_obj_id *id)
{
	struct uffdwp_punch_key k = key_of(id);
	uint64_t zero = 0;

	if (!bpf_map_update_elem(pw->map_fd, &k, &zero, BPF_NOEXIST) || errno == EEXIST)
		return 0;
	return -errno;
}

void uffdwp_punchwatch__unwatch(struct uffdwp_punchwatch *pw, const struct uffdwp_obj_id *id)
{
	struct uffdwp_punch_key k = key_of(id);

	bpf_map_delete_elem(pw->map_fd, &k);
}

int uffdwp_punchwatch__count(struct uffdwp_punchwatch *pw, const struct uffdwp_obj_id *id,
			     uint64_t *n)
{
	struct uffdwp_punch_key k = key_of(id);

	return bpf_map_lookup_elem(pw->map_fd, &k, n) ? -errno : 0;
}

int uffdwp_punchwatch__lost(struct uffdwp_punchwatch *pw, uint64_t *n)
{
	uint32_t zero = 0;

	return bpf_map_lookup_elem(pw->lost_fd, &zero, n) ? -errno : 0;
}

#else /* !UFFDWP_HAVE_BPF */

int uffdwp_punchwatch__new(struct uffdwp_punchwatch **out)
{
	return -EOPNOTSUPP;
}

void uffdwp_punchwatch__free(struct uffdwp_punchwatch *pw)
{
}

int uffdwp_punchwatch__watch(struct uffdwp_punchwatch *pw, const struct uffdwp_obj_id *id)
{
	return -EOPNOTSUPP;
}

void uffdwp_punchwatch__unwatch(struct uffdwp_punchwatch *pw, const struct uffdwp_obj_id *id)
{
}

int uffdwp_punchwatch__count(struct uffdwp_punchwatch *pw, const struct uffdwp_obj_id *id,
			     uint64_t *n)
{
	return -EOPNOTSUPP;
}

int uffdwp_punchwatch__lost(struct uffdwp_punchwatch *pw, uint64_t *n)
{
	return -EOPNOTSUPP;
}

#endif
