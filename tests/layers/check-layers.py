#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""No module of fs/ or lib/ calls into a module that calls back into it.

Usage: check-layers.py BUILDDIR    (the objects of fs/ and lib/ in it)
       check-layers.py OBJECT...

A module is a .c file; "A calls B" when A's object file has an undefined
function symbol that B's object defines (nm: U in A, T in B). Data symbols
(the driver tables, the file table, the options) are not calls: a table of
function pointers registered at start is how a lower module reaches a higher
one. The graph must have no cycle: prints every module with what it calls,
then each cycle found (a strongly connected set of modules); exits 1 if
there is one.
"""
import glob
import os
import subprocess
import sys


def module(path):
    name = os.path.basename(path)
    return name[:-len(".c.o")] if name.endswith(".c.o") else name


def symbols(path):
    out = subprocess.run(["nm", "--defined-only", "-g", path], check=True,
                         capture_output=True, text=True).stdout
    defined = {ln.split()[2] for ln in out.splitlines()
               if len(ln.split()) == 3 and ln.split()[1] == "T"}
    out = subprocess.run(["nm", "-u", path], check=True, capture_output=True,
                         text=True).stdout
    undefined = {ln.split()[-1] for ln in out.splitlines() if ln.strip()}
    return defined, undefined


def sccs(graph):
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def main(objs):
    owner, uses = {}, {}
    for o in objs:
        d, u = symbols(o)
        m = module(o)
        uses[m] = u
        for s in d:
            owner[s] = m
    graph = {m: sorted({owner[s] for s in u if s in owner} - {m})
             for m, u in uses.items()}
    for m in sorted(graph):
        print(f"{m}: {' '.join(graph[m]) or '-'}")
    cycles = [c for c in sccs(graph) if len(c) > 1]
    for c in cycles:
        print("CYCLE: " + " ".join(c))
        for m in c:
            back = [s for s in sorted(uses[m]) if owner.get(s) in c and
                    owner[s] != m]
            print(f"  {m} calls " + ", ".join(f"{s} ({owner[s]})"
                                             for s in back))
    return 1 if cycles else 0


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) == 1 and os.path.isdir(args[0]):
        args = sorted(glob.glob(os.path.join(args[0], "fs", "hvfs.p", "*.o")) +
                      glob.glob(os.path.join(args[0], "lib", "lib*.a.p",
                                             "*.c.o")))
        args = [a for a in args if "vrpc-protocol" not in a]
    if not args:
        sys.exit("no object files")
    sys.exit(main(args))
