#!/usr/bin/env python3
"""Sums `perf sched timehist` by thread kind for one process: time running, time runnable but
waiting for a core (scheduling delay), time blocked (asleep until woken), and switches."""
import re, sys, collections

pid = sys.argv[2]
line_re = re.compile(r"^\s*(\d+\.\d+)\s+\[(\d+)\]\s+(.+?)\[(\d+)(?:/(\d+))?\]\s+(\d+\.\d+)\s+(\d+\.\d+)\s+(\d+\.\d+)")
kinds = collections.defaultdict(lambda: [0.0, 0.0, 0.0, 0, []])
other_run = 0.0
idle = 0.0
first = last = None
for line in open(sys.argv[1]):
    m = line_re.match(line)
    if not m:
        if "<idle>" in line:
            parts = line.split()
            try:
                idle += float(parts[-1])
            except ValueError:
                pass
        continue
    t, cpu, comm, tid, tgid, wait, delay, run = m.groups()
    t = float(t)
    first = t if first is None else first
    last = t
    wait, delay, run = float(wait), float(delay), float(run)
    if (tgid or tid) != pid:
        other_run += run
        continue
    kind = re.sub(r"[-_]?\d+$", "", comm.strip())
    k = kinds[kind]
    k[0] += run; k[1] += delay; k[2] += wait; k[3] += 1; k[4].append(delay)

span = (last - first) * 1000 if first is not None else 0
print(f"window {span/1000:.2f} s on 2 cores; idle {idle:.0f} ms, other processes ran {other_run:.0f} ms")
print("| threads | ran ms | runnable, waiting for a core ms | blocked ms | switches | scheduling delay per switch: mean / p50 / p99 ms |")
print("|---|---:|---:|---:|---:|---|")
tot = [0.0, 0.0, 0.0, 0]
for kind, (run, delay, wait, n, delays) in sorted(kinds.items(), key=lambda kv: -kv[1][0]):
    delays.sort()
    p = lambda q: delays[min(len(delays) - 1, int(q * len(delays)))] if delays else 0
    print(f"| {kind} | {run:.0f} | {delay:.0f} | {wait:.0f} | {n} | {delay/max(n,1):.3f} / {p(0.5):.3f} / {p(0.99):.3f} |")
    tot[0] += run; tot[1] += delay; tot[2] += wait; tot[3] += n
print(f"| all of the process | {tot[0]:.0f} | {tot[1]:.0f} | {tot[2]:.0f} | {tot[3]} | {tot[1]/max(tot[3],1):.3f} mean |")
