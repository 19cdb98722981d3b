# SPDX-License-Identifier: GPL-2.0
"""bench-criu's report: the summary of its runs, the targets
(frozen-time ratios and limits) with their verdicts, and the tables it prints."""
from benchlib import med, sizename

def summarize(bench, a, sizes):
    runs, out = bench.runs, {}
    main_pct = a.dirty[0]

    def pick(size, plain=False, predumps=None, pct=None):
        return [r for r in runs if r["size"] == size and r["plain"] == plain and
                (predumps is None or r["predumps"] == predumps) and
                (pct is None or r["dirty_pct"] == pct)]

    def frozen(rs):
        return med(r["dump"].get("frozen_time") for r in rs)

    def dlog(rs, key):
        return med(r["dump"]["log"].get(key) for r in rs)

    def frozen_excl_exit(rs):
        """CRIU's frozen time less the exit of the dumped tree that it counts."""
        return med(r["dump"].get("frozen_time") - r["dump"]["log"].get("after_unfreeze_ms", 0)
                   for r in rs if r["dump"].get("frozen_time") is not None)

    for s in sizes:
        n = sizename(s)
        e = {"plain_frozen_ms": frozen(pick(n, True)),
             "plain_exit_ms": dlog(pick(n, True), "after_unfreeze_ms"),
             "plain_memdump_ms": med(r["dump"].get("memdump_time") for r in pick(n, True)),
             "plain_memwrite_ms": med(r["dump"].get("memwrite_time") for r in pick(n, True)),
             "plain_du_bytes": med(r["chain_du_bytes"] for r in pick(n, True))}
        for P in a.predumps:
            rs = pick(n, predumps=P, pct=main_pct)
            if rs:
                e[f"P{P}"] = {
                    "frozen_ms": frozen(rs),
                    "scan_ms": dlog(rs, "scan_ms"), "commit_ms": dlog(rs, "commit_ms"),
                    "exit_ms": dlog(rs, "after_unfreeze_ms"),
                    "memdump_ms": med(r["dump"].get("memdump_time") for r in rs),
                    "memwrite_ms": med(r["dump"].get("memwrite_time") for r in rs),
                    "pages_written": med(r["dump"].get("pages_written") for r in rs),
                    "predump_wall_s": [med(r["predump"][i]["wall_s"] for r in rs)
                                       for i in range(P)],
                    "predump_frozen_ms": [med(r["predump"][i].get("frozen_time") for r in rs)
                                          for i in range(P)],
                    "chain_du_bytes": med(r["chain_du_bytes"] for r in rs),
                    "dump_du_bytes": med(r["chain"][-1]["du_bytes"] for r in rs)}
        for pct in a.dirty:
            rs = pick(n, predumps=1, pct=pct)
            if rs:
                e[f"P1_{pct:g}%"] = {"frozen_ms": frozen(rs), "batch_pages": rs[0]["batch_pages"],
                                     "frozen_excl_exit_ms": frozen_excl_exit(rs),
                                     "exit_ms": dlog(rs, "after_unfreeze_ms"),
                                     "pages_written": med(r["dump"].get("pages_written")
                                                          for r in rs)}
        out[n] = e

    targets = {}
    # (a) at 4 GiB, main dirty fraction: final dump frozen <= plain / 10, every P >= 1
    big = "4G" if "4G" in out else (sizename(max(sizes)) if sizes else None)
    if big and out[big].get("plain_frozen_ms"):
        e = out[big]
        worst = max((e[f"P{P}"]["frozen_ms"] for P in a.predumps
                     if P >= 1 and f"P{P}" in e), default=None)
        if worst is not None:
            ratio = worst / e["plain_frozen_ms"]
            targets["a"] = {
                "what": f"frozen time of the final dump at {big}, {main_pct:g} % written since "
                        "the last pre-dump (worst of 1-3 pre-dumps), at most a tenth of a plain "
                        "dump's",
                "value": ratio, "frozen_ms": worst, "plain_frozen_ms": e["plain_frozen_ms"],
                "size": big,
                "verdict": "PASS" if ratio <= 0.1 else "MISS"}
    # (b) same dirty count, 4x memory: little growth; 4x dirty, same memory: more growth
    low = min(a.dirty)

    def growth(key, measure):
        if not ("1G" in out and "4G" in out and len(a.dirty) > 1):
            return {"verdict": "N/A", "why": "needs 1G and 4G and two --dirty fractions"}
        one = out["1G"].get(f"P1_{main_pct:g}%", {})
        lo = out["4G"].get(f"P1_{low:g}%", {})
        hi = out["4G"].get(f"P1_{main_pct:g}%", {})
        f1, f4lo, f4hi = one.get(key), lo.get(key), hi.get(key)
        if not (f1 and f4lo and f4hi):
            return {"verdict": "N/A", "why": "a chain did not run"}
        same_count = one.get("batch_pages") == lo.get("batch_pages")
        mem_growth, dirty_growth = f4lo / f1, f4hi / f4lo
        return {"what": f"{measure}; same dirty count ({lo['batch_pages']} pages"
                        f"{'' if same_count else ', NOT equal'}): 1G at {main_pct:g} % vs "
                        f"4G at {low:g} %; same memory: 4G at {low:g} % vs {main_pct:g} %",
                "measure": measure,
                "frozen_1G_ms": f1, "frozen_4G_low_ms": f4lo, "frozen_4G_main_ms": f4hi,
                "growth_4x_memory": mem_growth, "growth_more_dirty": dirty_growth,
                "dirty_factor": main_pct / low,
                "criteria": "4x memory at the same dirty count adds at most 50 % to the "
                            "frozen time, and more dirty pages at the same memory add more "
                            "than 4x memory does",
                "verdict": "PASS" if same_count and mem_growth <= 1.5 and
                dirty_growth > mem_growth else "MISS"}

    targets["b"] = growth("frozen_ms", "CRIU's frozen time" +
                          (" (--leave-stopped)" if a.final_state == "stopped" else ""))
    if a.final_state == "dead":
        targets["b_excl_exit"] = growth("frozen_excl_exit_ms", "CRIU's frozen time less "
                                        "the exit of the dumped tree")
    return out, targets


def demo_target(demo, why=None):
    """(c): the demo workload's image chain at least 3 times smaller compressed
    than in CRIU's raw images (whole image directories, apparent bytes)."""
    if demo is None:
        return {"verdict": "N/A", "why": why or "--no-demo"}
    if "skipped" in demo:
        return {"verdict": "N/A", "why": demo["skipped"]}
    raw, z = demo["raw"], demo["compressed"]
    t = {"what": "the demo workload's chain (2 pre-dumps + dump, 1 s apart) at least 3x "
                 "smaller compressed (--plugin-pages, default levels) than in CRIU's raw "
                 "images: whole image directories, apparent bytes",
         "raw_bytes": raw["bytes"], "compressed_bytes": z["bytes"],
         "raw_du_bytes": raw["du_bytes"], "compressed_du_bytes": z["du_bytes"],
         "raw_data_bytes": raw["data_bytes"], "compressed_data_bytes": z["data_bytes"],
         "ratio": raw["bytes"] / z["bytes"], "ratio_du": raw["du_bytes"] / z["du_bytes"],
         "ratio_data": raw["data_bytes"] / z["data_bytes"],
         "layers": [{"action": r["action"],
                     "raw_data_bytes": r["stats"]["data_bytes"],
                     "compressed_data_bytes": c["stats"]["data_bytes"],
                     "raw_bytes": r["stats"]["bytes"], "compressed_bytes": c["stats"]["bytes"],
                     "raw_pages_written": r["stats"].get("pages_written"),
                     "compressed_pages_written": c["stats"].get("pages_written")}
                    for r, c in zip(raw["layers"], z["layers"])],
         "restore": "ok" if z.get("restore", {}).get("ok") else "not checked"}
    # The two chains come from two runs of the workload: their layers hold
    # slightly different page counts. Bytes per page written, for comparison.
    for L in t["layers"]:
        rp, cp = L["raw_pages_written"], L["compressed_pages_written"]
        if rp and cp:
            L["ratio_data_per_page"] = ((L["raw_data_bytes"] / rp) /
                                        (L["compressed_data_bytes"] / cp))
    rp = sum(L["raw_pages_written"] or 0 for L in t["layers"])
    cp = sum(L["compressed_pages_written"] or 0 for L in t["layers"])
    if rp and cp:
        t["ratio_data_per_page"] = (t["raw_data_bytes"] / rp) / (t["compressed_data_bytes"] / cp)
    t["verdict"] = "PASS" if t["ratio"] >= 3 else "MISS"
    return t


def print_demo(t):
    """The per-layer table of target (c)."""
    if "layers" not in t:
        return

    def mb(v):
        return f"{v / 1e6:.2f}"
    rows = [["demo chain (MB = 10^6 B)", "raw data", "zst data", "ratio", "raw dir",
             "zst dir", "ratio", "pages raw/zst", "per page"]]
    for L in t["layers"]:
        rows.append([L["action"], mb(L["raw_data_bytes"]), mb(L["compressed_data_bytes"]),
                     f"{L['raw_data_bytes'] / L['compressed_data_bytes']:.2f}",
                     mb(L["raw_bytes"]), mb(L["compressed_bytes"]),
                     f"{L['raw_bytes'] / L['compressed_bytes']:.2f}",
                     f"{L['raw_pages_written']}/{L['compressed_pages_written']}",
                     f"{L['ratio_data_per_page']:.2f}" if "ratio_data_per_page" in L else "-"])
    rows.append(["chain", mb(t["raw_data_bytes"]), mb(t["compressed_data_bytes"]),
                 f"{t['ratio_data']:.2f}", mb(t["raw_bytes"]), mb(t["compressed_bytes"]),
                 f"{t['ratio']:.2f}", "",
                 f"{t['ratio_data_per_page']:.2f}" if "ratio_data_per_page" in t else "-"])
    w0 = max(len(r[0]) for r in rows)
    ws = [max(len(r[i]) for r in rows) for i in range(1, len(rows[0]))]
    print()
    for r in rows:
        print(r[0].ljust(w0) + "  " + "  ".join(v.rjust(w) for v, w in zip(r[1:], ws)))


def target_line(key, t, main_pct):
    if key == "a":
        detail = (f"at {t['size']}: {t['frozen_ms']:.1f} ms vs {t['plain_frozen_ms']:.0f} ms plain: "
                  f"{t['value']:.3f}x")
    elif key.startswith("b") and t["verdict"] != "N/A":
        detail = (f"{t['measure']}: 1G@{main_pct:g}% {t['frozen_1G_ms']:.1f} ms -> 4G same count "
                  f"{t['frozen_4G_low_ms']:.1f} ms ({t['growth_4x_memory']:.2f}x for 4x "
                  f"memory); 4G {t['dirty_factor']:g}x the dirty pages "
                  f"{t['frozen_4G_main_ms']:.1f} ms ({t['growth_more_dirty']:.2f}x)")
    elif key == "c" and "ratio" in t:
        detail = (f"demo chain {t['raw_bytes']} B in CRIU's raw images, {t['compressed_bytes']} B "
                  f"compressed: {t['ratio']:.2f}x (>= 3x wanted; page data alone "
                  f"{t['raw_data_bytes']} -> {t['compressed_data_bytes']} B, "
                  f"{t['ratio_data']:.2f}x; du {t['ratio_du']:.2f}x); restore {t['restore']}")
    else:
        detail = t.get("why", "")
    return f"({key}) {t['verdict']}: {detail}"


def print_report(bench, a, sizes, summary, targets):
    def ms(v):
        return "-" if v is None else (f"{v:.0f}" if v >= 100 else f"{v:.1f}")

    def mib(v):
        return "-" if v is None else f"{v / 2**20:.0f}" if v >= 10 << 20 else f"{v / 2**20:.1f}"

    main_pct = a.dirty[0]
    names = [sizename(s) for s in sizes]
    rows = [[""] + names]
    rows.append(["plain `criu dump`: frozen ms"] + [ms(summary[n]["plain_frozen_ms"])
                                                    for n in names])
    rows.append(["  of which exit of the dumped tree"] + [ms(summary[n]["plain_exit_ms"])
                                                         for n in names])
    rows.append(["  images, MiB"] + [mib(summary[n]["plain_du_bytes"]) for n in names])
    for P in a.predumps:
        key = f"P{P}"
        if not any(key in summary[n] for n in names):
            continue
        rows.append([f"{P} pre-dump(s), {main_pct:g} %: pre-dump s"] +
                    [" / ".join(f"{x:.2f}" for x in summary[n][key]["predump_wall_s"]) or "-"
                     if key in summary[n] else "-" for n in names])
        rows.append(["  pre-dump frozen ms"] +
                    [" / ".join(ms(x) for x in summary[n][key]["predump_frozen_ms"]) or "-"
                     if key in summary[n] else "-" for n in names])
        rows.append(["  final dump frozen ms"] +
                    [ms(summary[n][key]["frozen_ms"]) if key in summary[n] else "-"
                     for n in names])
        rows.append(["  of which scan / commit / exit"] +
                    [" / ".join(ms(summary[n][key][k]) for k in ("scan_ms", "commit_ms",
                                                                   "exit_ms"))
                     if key in summary[n] else "-" for n in names])
        rows.append(["  pages written by the dump"] +
                    [str(summary[n][key]["pages_written"]) if key in summary[n] else "-"
                     for n in names])
        rows.append(["  chain MiB (last dump)"] +
                    [f"{mib(summary[n][key]['chain_du_bytes'])} "
                     f"({mib(summary[n][key]['dump_du_bytes'])})" if key in summary[n] else "-"
                     for n in names])
    for pct in a.dirty:
        key = f"P1_{pct:g}%"
        rows.append([f"1 pre-dump, {pct:g} %: final frozen ms (less exit)"] +
                    [f"{ms(summary[n][key]['frozen_ms'])} "
                     f"({ms(summary[n][key]['frozen_excl_exit_ms'])})"
                     if key in summary[n] else "-" for n in names])
    rs = {n: [r for r in bench.restores if r["size"] == n] for n in names}
    rows.append(["restore s / workload check"] +
                [(f"{med(r['restore_wall_s'] for r in rs[n]):.1f} / " +
                  ("ok" if all(r["ok"] for r in rs[n]) else "BAD") +
                  (f" ({len(rs[n])})" if len(rs[n]) > 1 else "")) if rs[n] else "-"
                 for n in names])
    w0 = max(len(r[0]) for r in rows)
    ws = [max(len(r[i]) for r in rows) for i in range(1, len(rows[0]))]
    print()
    for r in rows:
        print(r[0].ljust(w0) + "  " + "  ".join(v.rjust(w) for v, w in zip(r[1:], ws)))
    if "c" in targets:
        print_demo(targets["c"])
    print()
    for key in ("a", "b", "b_excl_exit", "c"):
        t = targets.get(key)
        if t:
            print(target_line(key, t, main_pct))
