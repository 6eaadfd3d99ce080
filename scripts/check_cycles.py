#!/usr/bin/env python3
"""Fails when the modules of a crate import each other in a cycle.

Usage: scripts/check_cycles.py crates/lanes [crates/lanes-proto ...]

The graph: one node per module file of the library (src/lib.rs, then every `mod x;` it
declares, in `x.rs` or `x/mod.rs`, recursively). An edge A -> B when A's code names an item of
B: a `use crate::b::..`, `use super::..` or `use self::..` path, or such a path written out in
the code (`crate::b::f()`, `child::f()`). A path is followed through the imports of the modules
it goes through (`pub use` re-exports, and the private imports a child module may name), so
`use crate::Config` is an edge to the module that defines `Config`, not to the crate root. A
module's `pub use` of its own descendants (a facade such as `pub use request::RequestHead` in
`handshake/mod.rs`) is no edge; any other `use` is. `#[cfg(test)]` items (the `mod tests` at
the bottom of a file, test-only functions), comments, doc links, string literals and paths into
other crates are left out.

Prints each cycle (a strongly connected component of more than one module) with the lines
that make its edges, and exits 1 if there is one.
"""

import os
import re
import sys

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
ITEM_RE = re.compile(
    r"\b(?:struct|enum|union|trait|type|fn|const|static|mod)\s+(" + IDENT + r")"
    r"|\bmacro_rules!\s*(" + IDENT + r")"
)
USE_RE = re.compile(r"\b(pub(?:\s*\([^)]*\))?\s+)?use\s+([^;]+);")
RAW_RE = re.compile(r'r(#*)"')
PATH_RE = re.compile(r"(?<![\w:])((?:" + IDENT + r")(?:\s*::\s*" + IDENT + r")+)")


def strip_code(text):
    """Blanks comments, string and char literals (keeping line numbers)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append("\n" * text.count("\n", i, j))
            i = j
        elif c == "r" and RAW_RE.match(text, i) and not (i and re.match(r"\w", text[i - 1])):
            hashes = RAW_RE.match(text, i).group(1)
            end = text.find('"' + hashes, i + len(hashes) + 2)
            end = n if end < 0 else end + 1 + len(hashes)
            out.append('""' + "\n" * text.count("\n", i, end))
            i = end
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append('""' + "\n" * text.count("\n", i, j))
            i = j + 1
        elif c == "'":
            m = re.match(r"'(\\(x[0-9a-fA-F]{2}|u\{[0-9a-fA-F]+\}|.)|[^\\'])'", text[i:])
            if m:
                out.append("' '")
                i += len(m.group(0))
            else:  # a lifetime
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def drop_cfg_test(code):
    """Removes every `#[cfg(test)]` item: the `mod tests` block, test-only functions, imports."""
    pos = 0
    while True:
        m = re.compile(r"#\[cfg\(test\)\]").search(code, pos)
        if not m:
            return code
        # The item runs to the first `;` or the end of the first `{..}` block at depth 0.
        end, depth = m.end(), 0
        while end < len(code):
            ch = code[end]
            if ch in "([":
                depth += 1
            elif ch in ")]":
                depth -= 1
            elif ch == ";" and depth == 0:
                end += 1
                break
            elif ch == "{" and depth == 0:
                braces = 1
                end += 1
                while end < len(code) and braces:
                    braces += {"{": 1, "}": -1}.get(code[end], 0)
                    end += 1
                break
            end += 1
        code = code[: m.start()] + "\n" * code.count("\n", m.start(), end) + code[end:]
        pos = m.start()


def expand_use(tree):
    """`a::{b, c::{d as e, self}}` -> [(['a','b'], 'b'), (['a','c','d'], 'e'), (['a','c'], 'c')]."""
    tree = re.sub(r"\s+", " ", tree).strip()

    def parse(s, prefix):
        s = s.strip()
        if not s:
            return []
        parts, depth, start = [], 0, 0  # split at the top-level commas first
        for k, ch in enumerate(s):
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            elif ch == "," and depth == 0:
                parts.append(s[start:k])
                start = k + 1
        parts.append(s[start:])
        if len(parts) > 1:
            return [r for p in parts for r in parse(p, prefix)]
        s = parts[0].strip()
        brace = s.find("{")
        if brace >= 0:
            head = [x.strip() for x in s[:brace].split("::") if x.strip()]
            inner = s[brace + 1 : s.rfind("}")]
            return parse(inner, prefix + head)
        alias = None
        m = re.match(r"(.*)\sas\s+(\w+)$", s)
        if m:
            s, alias = m.group(1).strip(), m.group(2)
        segs = prefix + [x.strip() for x in s.split("::") if x.strip()]
        if segs and segs[-1] == "self":
            segs = segs[:-1]
        if not segs:
            return []
        return [(segs, alias or segs[-1])]

    return parse(tree, [])


class Module:
    def __init__(self, name, path, is_dir_owner):
        self.name = name  # '' for the crate root, else 'a::b'
        self.path = path
        self.is_dir_owner = is_dir_owner  # lib.rs / mod.rs: children live beside it
        self.children = {}
        self.code = ""
        self.items = set()
        self.imports = {}  # name -> segments, from every `use` (children see private ones)
        self.globs = []  # segments of `use x::*`
        self.uses = []  # (segments, line, is_pub)

    def parent(self):
        return self.name.rsplit("::", 1)[0] if "::" in self.name else ""


def load_crate(crate_dir):
    modules = {}
    src = os.path.join(crate_dir, "src")

    def visit(name, path, owner):
        with open(path, encoding="utf-8") as f:
            raw = f.read()
        mod = Module(name, path, owner)
        mod.code = drop_cfg_test(strip_code(raw))
        modules[name] = mod
        base = os.path.dirname(path) if owner else os.path.splitext(path)[0]
        for m in re.finditer(r"(?:pub(?:\s*\([^)]*\))?\s+)?\bmod\s+(" + IDENT + r")\s*;", mod.code):
            child = m.group(1)
            flat, nested = os.path.join(base, child + ".rs"), os.path.join(base, child, "mod.rs")
            child_name = f"{name}::{child}" if name else child
            if os.path.exists(flat):
                mod.children[child] = child_name
                visit(child_name, flat, False)
            elif os.path.exists(nested):
                mod.children[child] = child_name
                visit(child_name, nested, True)
        for m in ITEM_RE.finditer(mod.code):
            mod.items.add(m.group(1) or m.group(2))
        for m in USE_RE.finditer(mod.code):
            line = mod.code.count("\n", 0, m.start()) + 1
            is_pub = bool(m.group(1))
            for segs, alias in expand_use(m.group(2)):
                mod.uses.append((segs, line, is_pub))
                if alias == "*":
                    mod.globs.append(segs[:-1])
                else:
                    mod.imports[alias] = segs

    visit("", os.path.join(src, "lib.rs"), True)
    return modules


def resolve(modules, here, segs, depth=0):
    """The module that defines what `segs` (a path written in module `here`) names, or None
    for a path into another crate."""
    if depth > 16 or not segs:
        return None
    mod = modules[here]
    first = segs[0]
    if first == "crate":
        base, rest = "", segs[1:]
    elif first == "self":
        base, rest = here, segs[1:]
    elif first == "super":
        base, rest = here, segs
        while rest and rest[0] == "super":
            base, rest = modules[base].parent(), rest[1:]
    elif first in mod.children:
        base, rest = here, segs
    else:
        return None
    while rest and rest[0] in modules[base].children:
        base, rest = modules[base].children[rest[0]], rest[1:]
    if not rest or rest[0] == "*":
        return base
    name = rest[0]
    target = modules[base]
    if name in target.imports and name not in target.items:
        return resolve(modules, base, target.imports[name], depth + 1)
    if name not in target.items:
        for glob in target.globs:
            found = resolve(modules, base, glob + [name], depth + 1)
            if found is not None:
                return found
    return base


def is_descendant(child, parent):
    return parent == "" and child != "" or child.startswith(parent + "::")


def graph(modules):
    edges = {}  # (a, b) -> [line descriptions]

    def add(a, b, line, text):
        if b is None or a == b:
            return
        edges.setdefault((a, b), []).append(f"{modules[a].path}:{line}: {text}")

    for name, mod in modules.items():
        for segs, line, is_pub in mod.uses:
            target = resolve(modules, name, segs)
            if target is None:
                continue
            if is_pub and is_descendant(target, name):
                continue  # a facade re-exporting its own children
            add(name, target, line, "use " + "::".join(segs))
        # Paths written out in the code, outside `use` declarations.
        code = USE_RE.sub(lambda m: "\n" * m.group(0).count("\n"), mod.code)
        for m in PATH_RE.finditer(code):
            segs = [s.strip() for s in m.group(1).split("::")]
            if segs[0] not in ("crate", "self", "super") and segs[0] not in mod.children:
                continue
            line = code.count("\n", 0, m.start()) + 1
            add(name, resolve(modules, name, segs), line, "::".join(segs))
    return edges


def components(nodes, edges):
    """Tarjan's strongly connected components."""
    succ = {n: sorted({b for (a, b) in edges if a == n}) for n in nodes}
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in succ[v]:
            if w not in index:
                strong(w)
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

    sys.setrecursionlimit(10000)
    for n in sorted(nodes):
        if n not in index:
            strong(n)
    return [c for c in out if len(c) > 1]


def label(name):
    return name or "crate"


def check(crate_dir):
    modules = load_crate(crate_dir)
    edges = graph(modules)
    cycles = components(modules, edges)
    crate = os.path.basename(os.path.normpath(crate_dir))
    if not cycles:
        print(f"ok: {crate}: {len(modules)} modules, {len(edges)} edges, no cycle")
        return True
    print(f"{crate}: {len(cycles)} import cycle(s) among its modules")
    for comp in cycles:
        members = set(comp)
        print(f"\n  cycle: {', '.join(label(c) for c in comp)}")
        inside = {(a, b): why for (a, b), why in edges.items() if a in members and b in members}
        pairs = sorted((a, b) for (a, b) in inside if a < b and (b, a) in inside)
        if pairs:
            both = ", ".join(f"{label(a)} <-> {label(b)}" for a, b in pairs)
            print(f"  modules that use each other: {both}")
        for (a, b), why in sorted(inside.items()):
            more = f"; +{len(why) - 1} more" if len(why) > 1 else ""
            print(f"    {label(a)} -> {label(b)}   ({why[0]}{more})")
    return False


def main():
    if len(sys.argv) < 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    ok = True
    for crate_dir in sys.argv[1:]:
        ok = check(crate_dir) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
