#!/usr/bin/env python3
"""Independent reference for tests/test_msa.c: parses the alignments here the way AlphaFold's
parsers do (parse_a3m, parse_stockholm with the query's gap columns dropped), de-duplicates rows
and prints the values the tests hold the C library to. Run once by hand: python3 expected_values.py
"""
import string

ORDER = "ARNDCQEGHILKMFPSTWYV"
ALIAS = {"B": "D", "Z": "E", "U": "C"}


def token(ch):
    if ch == "-":
        return 21
    ch = ALIAS.get(ch, ch)
    return ORDER.index(ch) if ch in ORDER else 20


def parse_a3m(text):
    records, seq = [], None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith(">"):
            if seq is not None:
                records.append(seq)
            seq = ""
        elif line and seq is not None:
            seq += line
    records.append(seq)
    rows, dels = [], []
    for s in records:
        count, row, d = 0, "", []
        for ch in s:
            if ch.islower():
                count += 1
            elif ch == ".":
                continue
            else:
                row += ch
                d.append(count)
                count = 0
        rows.append(row)
        dels.append(d)
    return rows, dels


def parse_stockholm(text):
    seqs = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or line == "//":
            continue
        name, s = line.split()
        seqs[name] = seqs.get(name, "") + s
    query = list(seqs.values())[0]
    keep = [i for i, q in enumerate(query) if q not in "-."]
    rows, dels = [], []
    for s in seqs.values():
        row = "".join("-" if s[i] in "-." else s[i].upper() for i in keep)
        d, count = [], 0
        for r, q in zip(s, query):
            if q in "-.":
                count += r not in "-."
            else:
                d.append(count)
                count = 0
        rows.append(row)
        dels.append(d)
    return rows, dels


def features(alignments):
    seen, rows, dels = set(), [], []
    for r, d in alignments:
        for row, drow in zip(r, d):
            if row in seen:
                continue
            seen.add(row)
            rows.append(row)
            dels.append(drow)
    return rows, dels


def report(name, alignments):
    rows, dels = features(alignments)
    depth, length = len(rows), len(rows[0])
    print(f"{name}: depth {depth} length {length}")
    nonzero = [(r, c, dels[r][c]) for r in range(depth) for c in range(length) if dels[r][c]]
    print(f"  nonzero deletions {len(nonzero)}, first {nonzero[:3]}, largest {max(nonzero, key=lambda x: x[2]) if nonzero else None}")
    for c in (0, length // 2, length - 1):
        counts = [0] * 22
        for row in rows:
            counts[token(row[c])] += 1
        dsum = sum(d[c] for d in dels)
        print(f"  column {c}: counts {[(k, n) for k, n in enumerate(counts) if n]} of {depth}, deletion sum {dsum}")


bfd = parse_a3m(open("bfd_uniclust_hits.a3m").read())
sto = parse_stockholm(open("mgnify_hits.sto").read())
small = parse_a3m(open("2q2k_A_bfd_uniclust_hits.a3m").read())
report("bfd_uniclust_hits.a3m", [bfd])
report("mgnify_hits.sto", [sto])
report("bfd + mgnify", [bfd, sto])
report("2q2k_A", [small])
