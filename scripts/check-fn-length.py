#!/usr/bin/env python3
"""Fail when a Rust function in src/ is longer than the limit (default 80 lines).

Why: a reader should be able to hold a function in mind (ARCHITECTURE.md, "Functions a reader
can hold in mind"). CI runs this; `--list N` prints every function over N lines, longest first.

The scan is a small lexer, not a parser: it skips comments, strings, raw strings and char
literals, finds each `fn name` and counts lines from the `fn` line to the brace that closes its
body. Declarations without a body (trait methods ending in `;`) are ignored.
"""
import argparse
import pathlib
import re
import sys

FN = re.compile(r"\bfn\s+([A-Za-z_][A-Za-z0-9_]*)")


def strip_code(text):
    """Text with comments, strings and char literals blanked (newlines kept)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
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
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif re.match(r'b?r#*"', text[i:i + 10]):
            m = re.match(r'b?r(#*)"', text[i:])
            end = '"' + m.group(1)
            j = text.find(end, i + m.end())
            j = n if j < 0 else j + len(end)
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == '"' or text.startswith('b"', i):
            j = i + (2 if c == "b" else 1)
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            j += 1
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == "'":
            m = re.match(r"'(\\.|\\u\{[0-9a-fA-F]+\}|\\x[0-9a-fA-F]{2}|[^\\'])'", text[i:])
            if m:
                out.append(" " * m.end())
                i += m.end()
            else:  # a lifetime
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def functions(path):
    code = strip_code(path.read_text(encoding="utf-8"))
    for m in FN.finditer(code):
        j = m.end()
        # The body starts at the first `{` before any `;` (a `;` first means no body).
        while j < len(code) and code[j] not in "{;":
            j += 1
        if j >= len(code) or code[j] == ";":
            continue
        depth, k = 0, j
        while k < len(code):
            if code[k] == "{":
                depth += 1
            elif code[k] == "}":
                depth -= 1
                if depth == 0:
                    break
            k += 1
        start = code.count("\n", 0, m.start()) + 1
        end = code.count("\n", 0, k) + 1
        yield m.group(1), start, end - start + 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max", type=int, default=80, help="longest allowed function, in lines")
    ap.add_argument("--list", type=int, metavar="N", help="list every function over N lines and exit 0")
    ap.add_argument("root", nargs="?", default="src")
    args = ap.parse_args()
    found = []
    for p in sorted(pathlib.Path(args.root).rglob("*.rs")):
        for name, line, length in functions(p):
            found.append((length, f"{p}:{line}", name))
    found.sort(reverse=True)
    limit = args.list if args.list is not None else args.max
    over = [f for f in found if f[0] > limit]
    for length, where, name in over:
        print(f"{length:4} lines  {where}  fn {name}")
    if args.list is not None:
        return 0
    if over:
        print(f"{len(over)} function(s) over {args.max} lines: split them (see ARCHITECTURE.md)", file=sys.stderr)
        return 1
    print(f"function length: all {len(found)} functions in {args.root}/ have at most {args.max} lines")
    return 0


if __name__ == "__main__":
    sys.exit(main())
