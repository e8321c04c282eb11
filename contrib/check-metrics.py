#!/usr/bin/env python3
"""Check that the monitoring files use only metrics a node exports.

    check-metrics.py [--cacert CA] [--insecure] SOURCE FILE...

SOURCE is a node's metrics URL (`http://127.0.0.1:9301/metrics`, or
`https://...` with `--certs-dir`: `--cacert ca.crt` to check it,
`--insecure` not to) or a file holding a scrape. Each FILE is a Grafana
dashboard (`.json`: every `expr` and every query variable) or Prometheus
rules (`.yml`/`.yaml`: every `expr`). Every metric name in their PromQL
expressions must be a sample name of the scrape; every label a selector
matches on must be on that metric (or be one Prometheus adds: `job`,
`instance`), and every `label="value"` must be a value the scrape has.
Names Prometheus makes itself (`up`, `scrape_*`, `ALERTS`) are allowed.
Scrape a node of a cluster: a single node has no peer links, so it exports
no `leasetso_peer_link_*` samples.

Exits 0 if all is found, 1 naming each metric or label that is not, 2 on
a usage or read error. Only the standard library: no PyYAML, no Prometheus
client; the rules file is read line by line for `expr:` keys (plain,
quoted, or `|`/`>` block scalars).
"""

import json
import re
import ssl
import sys
import urllib.request

# Series Prometheus makes itself, not the target.
SYNTHETIC = {"up", "ALERTS", "ALERTS_FOR_STATE", "scrape_duration_seconds", "scrape_samples_scraped",
             "scrape_samples_post_metric_relabeling", "scrape_series_added"}
# Labels Prometheus attaches to every scraped series.
TARGET_LABELS = {"job", "instance"}

KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
            "offset", "bool", "inf", "nan", "atan2", "start", "end"}

AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
                "bottomk", "topk", "quantile", "limitk", "limit_ratio"}


def usage(msg):
    print(f"check-metrics: {msg}", file=sys.stderr)
    print(__doc__.strip().splitlines()[2], file=sys.stderr)
    sys.exit(2)


def read_scrape(source, cacert, insecure):
    if source.startswith(("http://", "https://")):
        ctx = None
        if source.startswith("https://"):
            ctx = ssl.create_default_context(cafile=cacert)
            if insecure:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
        with urllib.request.urlopen(source, timeout=10, context=ctx) as r:
            return r.read().decode("utf-8")
    with open(source, encoding="utf-8") as f:
        return f.read()


SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+\S+')
LABEL_PAIR = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"')


def parse_scrape(text):
    """{metric name: {label name: {values}}} of every sample."""
    series = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        if not m:
            continue
        labels = series.setdefault(m.group(1), {})
        for k, v in LABEL_PAIR.findall(m.group(3) or ""):
            labels.setdefault(k, set()).add(v)
    return series


def dashboard_exprs(path):
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    out = []

    def walk(node, where):
        if isinstance(node, dict):
            title = node.get("title") or where
            for k, v in node.items():
                if k == "expr" and isinstance(v, str):
                    out.append((f"{path}: panel {title!r}", v))
                else:
                    walk(v, title)
        elif isinstance(node, list):
            for v in node:
                walk(v, where)

    walk(doc.get("panels", []), "?")
    for var in doc.get("templating", {}).get("list", []):
        if var.get("type") != "query":
            continue
        q = var.get("query")
        if isinstance(q, dict):
            q = q.get("query")
        if isinstance(q, str) and q:
            out.append((f"{path}: variable {var.get('name')!r}", q))
    return out


def rules_exprs(path):
    """The `expr:` values of a rules file, read line by line."""
    out = []
    lines = open(path, encoding="utf-8").read().splitlines()
    i = 0
    key = re.compile(r'^(\s*)(?:-\s+)?expr:\s*(.*?)\s*$')
    while i < len(lines):
        m = key.match(lines[i])
        i += 1
        if not m:
            continue
        indent, value = len(m.group(1)), m.group(2)
        name = next((re.sub(r'^\s*-?\s*(alert|record):\s*', '', l).strip()
                     for l in reversed(lines[:i]) if re.match(r'^\s*-?\s*(alert|record):', l)), "?")
        if value and value[0] in "|>":
            body = []
            while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent):
                body.append(lines[i])
                i += 1
            value = "\n".join(body)
        elif value[:1] in "'\"":
            value = value[1:-1]
        out.append((f"{path}: rule {name}", value))
    return out


def strip_comments(expr):
    return "\n".join(re.sub(r'#.*$', '', l) for l in expr.splitlines())


def label_values_query(expr):
    """Grafana's `label_values(selector, label)`: the selector, then the label."""
    m = re.match(r'^\s*label_values\s*\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*$', expr, re.S)
    if m:
        return m.group(1), m.group(2)
    m = re.match(r'^\s*(?:label_values|metrics|query_result)\s*\((.*)\)\s*$', expr, re.S)
    if m:
        return m.group(1), None
    return expr, None


TOKEN = re.compile(r'''
    (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<var>\$\{[^}]*\}|\$[a-zA-Z_][a-zA-Z0-9_]*|\[\[[^\]]*\]\])
  | (?P<range>\[[^\]]*\])
  | (?P<sel>\{[^}]*\})
  | (?P<num>\d+(?:\.\d+)?(?:e[+-]?\d+)?[smhdwy]?)
  | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
  | (?P<other>.)
''', re.X | re.S)

MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\')')


def selectors(expr):
    """(metric name, [(label, op, value)]) of every vector selector in expr."""
    toks = [(m.lastgroup, m.group()) for m in TOKEN.finditer(expr) if not m.group().isspace()]
    out = []
    i = 0
    while i < len(toks):
        kind, text = toks[i]
        nxt = toks[i + 1] if i + 1 < len(toks) else (None, None)
        if kind == "ident":
            if text in KEYWORDS and nxt[1] != "(":
                i += 1
                continue
            if text in AGGREGATIONS and nxt[1] in ("by", "without"):
                i += 1
                continue
            if nxt[1] == "(":
                # A function, or an aggregation's/matching's label list.
                if text in ("by", "without", "on", "ignoring", "group_left", "group_right"):
                    depth, i = 0, i + 1
                    while i < len(toks):
                        depth += toks[i][1] == "("
                        depth -= toks[i][1] == ")"
                        i += 1
                        if depth == 0:
                            break
                    continue
                i += 1
                continue
            matchers = []
            if nxt[0] == "sel":
                matchers = MATCHER.findall(nxt[1])
                i += 1
            out.append((text, matchers))
        elif kind == "sel":  # {__name__="..."} alone
            matchers = MATCHER.findall(text)
            names = [v for (k, op, v) in matchers if k == "__name__" and op == "="]
            if names:
                out.append((names[0][1:-1], [m for m in matchers if m[0] != "__name__"]))
        i += 1
    return out


def check(where, expr, series):
    problems = []
    expr = strip_comments(expr)
    expr, var_label = label_values_query(expr)
    for name, matchers in selectors(expr):
        if name in SYNTHETIC or name.startswith("scrape_"):
            continue
        if name not in series:
            problems.append(f"{where}: metric {name} is not in the scrape")
            continue
        labels = series[name]
        for label, op, value in matchers:
            value = value[1:-1]
            if label in TARGET_LABELS:
                continue
            if label not in labels:
                problems.append(f"{where}: metric {name} has no label {label}")
            elif op == "=" and "$" not in value and value not in labels[label]:
                problems.append(f"{where}: metric {name} has no {label}=\"{value}\" "
                                f"(it has {', '.join(sorted(labels[label]))})")
        if var_label and var_label not in labels and var_label not in TARGET_LABELS:
            problems.append(f"{where}: metric {name} has no label {var_label}")
    return problems


def main(argv):
    cacert, insecure, args = None, False, []
    it = iter(argv)
    for a in it:
        if a == "--cacert":
            cacert = next(it, None) or usage("--cacert needs a file")
        elif a == "--insecure":
            insecure = True
        elif a in ("-h", "--help"):
            print(__doc__.strip())
            return 0
        else:
            args.append(a)
    if len(args) < 2:
        usage("need a metrics URL (or scrape file) and at least one file to check")
    try:
        series = parse_scrape(read_scrape(args[0], cacert, insecure))
    except (OSError, ValueError) as e:
        print(f"check-metrics: cannot read {args[0]}: {e}", file=sys.stderr)
        return 2
    if not series:
        print(f"check-metrics: {args[0]} has no samples", file=sys.stderr)
        return 2
    problems, checked, names = [], 0, set()
    for path in args[1:]:
        try:
            exprs = dashboard_exprs(path) if path.endswith(".json") else rules_exprs(path)
        except (OSError, ValueError) as e:
            print(f"check-metrics: cannot read {path}: {e}", file=sys.stderr)
            return 2
        if not exprs:
            problems.append(f"{path}: no expressions found")
        for where, expr in exprs:
            checked += 1
            names.update(n for n, _ in selectors(label_values_query(strip_comments(expr))[0]))
            problems += check(where, expr, series)
    for p in problems:
        print(p)
    if problems:
        print(f"check-metrics: {len(problems)} problem(s) in {checked} expressions", file=sys.stderr)
        return 1
    print(f"check-metrics: ok: {checked} expressions, {len(names)} metric names, all in the scrape")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
