"""The Grafana dashboard (`kuberay/grafana/ai-inference-dashboard.json`) stays honest.

Every query names either a metric a `metrics.py` module defines, under the name Ray's Prometheus
export gives it, or a Ray Serve metric found in Ray's installed source; it filters and groups by
labels that metric carries; and every metric we define has a panel. Fast: no Ray is started (the
metrics modules import only `serve_common.metrics`, and Ray's source is read, not imported).

Exported names (Ray 2.60; the OpenTelemetry exporter, the default, and the legacy OpenCensus one
agree): Ray prefixes `ray_`; Prometheus' client exposes a counter as `<name>_total`, stripping a
trailing `_total` first, so a name already ending in `_total` keeps a single one; a histogram is
exposed as `_bucket` (plus the `le` label), `_sum` and `_count`; a gauge as is.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from serve_common.metrics import _Metric

ROOT = Path(__file__).resolve().parents[1]
GRAFANA_DIR = ROOT / "kuberay" / "grafana"
DASHBOARD = GRAFANA_DIR / "ai-inference-dashboard.json"
README = GRAFANA_DIR / "README.md"
SRC_DIRS = sorted([*ROOT.glob("packages/*/src/*"), *ROOT.glob("apps/*/src/*")])

KINDS = {"Counter": "counter", "Gauge": "gauge", "Histogram": "histogram"}

# Metrics we define but deliberately show on no panel (exported family -> why). Empty: every
# metric has a panel. Add an entry only with a reason; a stale entry fails the test.
NO_PANEL: dict[str, str] = {}

# Ray Serve's own metrics the dashboard may use: the name Ray's source creates -> (kind, labels
# the dashboard may filter or group on). Each is looked up in Ray's installed source below: the
# name must be created there with that kind, and the labels must be among the tag keys it gets.
# `ray.serve.metrics` adds these tag keys to a metric created inside a replica: in these modules.
SERVE_CONTEXT_TAGS = ("deployment", "replica", "application")
SERVE_REPLICA_MODULES = frozenset({"serve/_private/replica.py", "serve/multiplex.py"})
SERVE_METRICS: dict[str, tuple[str, tuple[str, ...]]] = {
    # Proxy: RequestIngressMetrics' f"serve_num_{protocol_name}_requests" family, protocol HTTP.
    "serve_num_http_requests": ("counter", ("route", "method", "application", "status_code")),
    "serve_http_request_latency_ms": (
        "histogram",
        ("method", "route", "application", "status_code"),
    ),
    "serve_num_deployment_http_error_requests": (
        "counter",
        ("deployment", "error_code", "method", "route", "application"),
    ),
    "serve_num_ongoing_http_requests": ("gauge", ("node_id", "node_ip_address")),
    # Router (each handle): requests waiting for a replica slot.
    "serve_deployment_queued_queries": (
        "gauge",
        ("deployment", "application", "handle", "actor_id"),
    ),
    # Replica (ray.serve.metrics adds deployment, replica and application).
    "serve_replica_processing_queries": ("gauge", SERVE_CONTEXT_TAGS),
    "serve_deployment_replica_starts": ("counter", SERVE_CONTEXT_TAGS),
    # Controller: per deployment (and per replica with high-cardinality tags on).
    "serve_deployment_replica_healthy": ("gauge", ("deployment", "application")),
    "serve_health_check_failures_total": ("counter", ("deployment", "application")),
}

# Labels every scraped series may carry besides its tag keys: Ray's own and the scrape's.
COMMON_LABELS = frozenset(
    {"SessionName", "NodeAddress", "Component", "Version"}
    | {"instance", "job", "namespace", "pod", "container", "endpoint"}
)

PROMQL_FUNCTIONS = frozenset(
    {"sum", "avg", "max", "min", "count", "topk", "bottomk", "quantile"}
    | {"rate", "irate", "increase", "delta", "deriv", "histogram_quantile"}
    | {"clamp_min", "clamp_max", "abs", "vector", "label_values"}
    | {"avg_over_time", "max_over_time", "min_over_time", "sum_over_time"}
)
PROMQL_KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset"})


# ---- exported names ------------------------------------------------------------------------


@dataclass(frozen=True)
class Series:
    """One exported Prometheus series family: its name, the metric behind it, its labels."""

    name: str
    family: str  # the metric's exported base name (histograms: without the suffix)
    kind: str  # counter | gauge | histogram
    labels: frozenset[str]


def exported(name: str, kind: str, tag_keys: tuple[str, ...]) -> list[Series]:
    """The series Ray's Prometheus export gives a `ray.util.metrics` metric called `name`."""
    base = f"ray_{name}"
    labels = frozenset(tag_keys) | COMMON_LABELS
    if kind == "counter":
        full = base if base.endswith("_total") else f"{base}_total"
        return [Series(full, full, kind, labels)]
    if kind == "histogram":
        return [
            Series(f"{base}_bucket", base, kind, labels | {"le"}),
            Series(f"{base}_sum", base, kind, labels),
            Series(f"{base}_count", base, kind, labels),
        ]
    assert kind == "gauge", kind
    return [Series(base, base, kind, labels)]


def test_exported_name_rules() -> None:
    assert [s.name for s in exported("ai_inference_requests_total", "counter", ())] == [
        "ray_ai_inference_requests_total"
    ]
    assert [s.name for s in exported("serve_num_http_requests", "counter", ())] == [
        "ray_serve_num_http_requests_total"
    ]
    assert [s.name for s in exported("x_ms", "histogram", ())] == [
        "ray_x_ms_bucket",
        "ray_x_ms_sum",
        "ray_x_ms_count",
    ]
    assert [s.name for s in exported("x", "gauge", ())] == ["ray_x"]


# ---- our metrics ---------------------------------------------------------------------------


def metric_modules() -> list[str]:
    return [f"{d.name}.metrics" for d in SRC_DIRS if (d / "metrics.py").is_file()]


@cache
def our_metrics() -> dict[str, _Metric]:
    """Every metric the `metrics.py` modules define, by its Ray name."""
    found: dict[str, _Metric] = {}
    for module_name in metric_modules():
        module = importlib.import_module(module_name)
        for value in vars(module).values():
            if isinstance(value, _Metric):
                other = found.setdefault(value.name, value)
                assert other is value or other.kind == value.kind, value.name
    return found


def test_metric_modules_found() -> None:
    modules = metric_modules()
    assert "serve_common.metrics" in modules and len(modules) >= 6, modules
    assert len(our_metrics()) >= 30
    for m in our_metrics().values():
        assert m.name.startswith("ai_inference_") and m.kind in KINDS.values(), m.name
        if m.kind == "counter":
            assert m.name.endswith("_total"), f"{m.name}: name counters `..._total`"


def _metric_aliases(tree: ast.Module) -> tuple[set[str], set[str]]:
    """Names bound to `serve_common.metrics`, and to its metric classes, in a module."""
    modules, classes = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "serve_common":
            modules |= {a.asname or a.name for a in node.names if a.name == "metrics"}
        elif isinstance(node, ast.ImportFrom) and node.module == "serve_common.metrics":
            classes |= {a.asname or a.name for a in node.names if a.name in KINDS}
        elif isinstance(node, ast.Import):
            modules |= {a.asname for a in node.names if a.name == "serve_common.metrics"} - {None}
    return modules, classes


def test_metrics_are_defined_only_in_metrics_modules() -> None:
    """A metric created elsewhere would escape `our_metrics()` and so the panel check."""
    offenders = []
    for src in SRC_DIRS:
        for path in src.rglob("*.py"):
            if path.name == "metrics.py":
                continue
            tree = ast.parse(path.read_text(), str(path))
            modules, classes = _metric_aliases(tree)
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call):
                    continue
                func = node.func
                if (
                    isinstance(func, ast.Attribute)
                    and func.attr in KINDS
                    and isinstance(func.value, ast.Name)
                    and func.value.id in modules
                ) or (isinstance(func, ast.Name) and func.id in classes):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, f"metrics created outside a metrics.py module: {offenders}"


# ---- Ray Serve's metrics, from Ray's installed source -------------------------------------


@dataclass(frozen=True)
class RayMetric:
    kind: str
    tag_keys: frozenset[str] | None  # None: not spelled out in the source
    path: str


def ray_serve_dir() -> Path:
    spec = importlib.util.find_spec("ray")  # locates the package without importing it
    assert spec is not None and spec.origin is not None, "ray is not installed"
    return Path(spec.origin).parent / "serve"


def _str_tuple(node: ast.AST | None) -> frozenset[str] | None:
    """The strings of a literal tuple (or of either branch of `a if c else b`), else None."""
    if isinstance(node, ast.Tuple | ast.List):
        values = [e.value for e in node.elts if isinstance(e, ast.Constant)]
        strings = [v for v in values if isinstance(v, str)]
        return frozenset(strings) if len(strings) == len(node.elts) else None
    if isinstance(node, ast.IfExp):
        body, orelse = _str_tuple(node.body), _str_tuple(node.orelse)
        return None if body is None or orelse is None else body | orelse
    return None


def _metric_name(node: ast.AST | None) -> str | None:
    """A literal name, or RequestIngressMetrics' f-string with `protocol_name` = "http"."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        parts = []
        for value in node.values:
            if isinstance(value, ast.Constant):
                parts.append(str(value.value))
            elif (
                isinstance(value, ast.FormattedValue)
                and isinstance(value.value, ast.Name)
                and value.value.id == "protocol_name"
            ):
                parts.append("http")
            else:
                return None
        return "".join(parts)
    return None


@cache
def ray_serve_metrics() -> dict[str, RayMetric]:
    """Every metric Ray Serve's source creates with `metrics.Counter/Gauge/Histogram(...)`."""
    serve = ray_serve_dir()
    found: dict[str, RayMetric] = {}
    for path in sorted(serve.rglob("*.py")):
        if "tests" in path.relative_to(serve).parts:
            continue
        text = path.read_text()
        if not any(f"{cls}(" in text for cls in KINDS):
            continue
        tree = ast.parse(text, str(path))
        rel = path.relative_to(serve.parent).as_posix()
        serve_context = rel in SERVE_REPLICA_MODULES and any(
            isinstance(n, ast.ImportFrom)
            and n.module == "ray.serve"
            and any(a.name == "metrics" and a.asname is None for a in n.names)
            for n in tree.body
        )
        # Tag keys passed through a variable: its literal value(s) in this module.
        assigned: dict[str, frozenset[str]] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                target, value = node.targets[0], _str_tuple(node.value)
                if isinstance(target, ast.Name) and value is not None:
                    assigned[target.id] = assigned.get(target.id, frozenset()) | value
        for node in ast.walk(tree):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in KINDS
                and isinstance(node.func.value, ast.Name)
            ):
                continue
            kwargs = {kw.arg: kw.value for kw in node.keywords}
            name = _metric_name(node.args[0] if node.args else kwargs.get("name"))
            if name is None or not name.startswith("serve_"):
                continue
            tags_node = kwargs.get("tag_keys")
            if tags_node is None:
                tags: frozenset[str] | None = frozenset()
            elif isinstance(tags_node, ast.Name):
                tags = assigned.get(tags_node.id)
            else:
                tags = _str_tuple(tags_node)
            if tags is not None and serve_context and node.func.value.id == "metrics":
                tags |= frozenset(SERVE_CONTEXT_TAGS)
            kind = KINDS[node.func.attr]
            previous = found.setdefault(name, RayMetric(kind, tags, rel))
            assert previous.kind == kind, f"{name}: {previous.kind} in {previous.path}, {kind}"
    return found


def test_http_protocol_name_in_ray_source() -> None:
    """The proxy's metric names are f-strings over `protocol.lower()`; HTTP's value is "HTTP"."""
    serve = ray_serve_dir()
    ingress = (serve / "_private" / "request_ingress_metrics.py").read_text()
    assert "protocol_name = protocol.lower()" in ingress
    common = (serve / "_private" / "common.py").read_text()
    assert re.search(r'class RequestProtocol\(str, Enum\):(?:\n    .*)*\n    HTTP = "HTTP"', common)


@pytest.mark.parametrize("name", sorted(SERVE_METRICS))
def test_serve_metric_exists_in_ray_source(name: str) -> None:
    kind, labels = SERVE_METRICS[name]
    found = ray_serve_metrics().get(name)
    assert found is not None, f"Ray's installed Serve source creates no metric {name!r}"
    assert found.kind == kind, f"{name} is a {found.kind} in {found.path}"
    assert found.tag_keys is not None, f"{name}: tag keys in {found.path} not resolved"
    missing = set(labels) - found.tag_keys
    assert not missing, f"{name} ({found.path}) has no tag keys {missing}"


def test_ray_source_scan_sees_serve_metrics() -> None:
    assert len(ray_serve_metrics()) >= 30, sorted(ray_serve_metrics())


# ---- the dashboard -------------------------------------------------------------------------


@cache
def known_series() -> dict[str, Series]:
    series: dict[str, Series] = {}
    for m in our_metrics().values():
        series.update((s.name, s) for s in exported(m.name, m.kind, m.tag_keys))
    for name, (kind, labels) in SERVE_METRICS.items():
        series.update((s.name, s) for s in exported(name, kind, labels))
    return series


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def all_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # a collapsed row holds its panels


def query_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in all_panels(dashboard) if p["type"] != "row"]


def exprs(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in query_panels(dashboard) for t in p["targets"]]


STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
SELECTOR = re.compile(r"([A-Za-z_:][\w:]*)\s*\{([^}]*)\}")
MATCHER = re.compile(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)")
GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
RANGE = re.compile(r"\[[^\]]*\]")
IDENT = re.compile(r"(?<![\w$.])([A-Za-z_:][\w:]*)(\s*\()?")
RATE_BEFORE = re.compile(r"\b(?:rate|irate|increase)\(\s*$")


@dataclass
class Parsed:
    metrics: list[tuple[str, bool]]  # (series name, inside rate/irate/increase)
    selector_labels: list[tuple[str, str]]  # (series name, label)
    grouping_labels: set[str]
    functions: set[str]


def parse(expr: str) -> Parsed:
    """The series, labels and functions of a PromQL expression (the subset dashboards use)."""
    text = STRING.sub('""', expr)
    selector_labels = [
        (m[1], label) for m in SELECTOR.finditer(text) for label in MATCHER.findall(m[2])
    ]
    grouping = {label.strip() for m in GROUPING.finditer(text) for label in m[1].split(",")} - {""}
    bare = RANGE.sub("", GROUPING.sub(" ", SELECTOR.sub(r"\1", text)))
    metrics, functions = [], set()
    for m in IDENT.finditer(bare):
        if m[2]:
            functions.add(m[1])
        elif m[1] not in PROMQL_KEYWORDS:
            metrics.append((m[1], bool(RATE_BEFORE.search(bare[: m.start()]))))
    return Parsed(metrics, selector_labels, grouping, functions)


def test_parse() -> None:
    p = parse(
        'histogram_quantile(0.99, sum by (service, le) (rate(ray_a_bucket{service=~"$s",'
        ' x!="a,b}"}[$__rate_interval]))) / on() max(ray_b)'
    )
    assert p.metrics == [("ray_a_bucket", True), ("ray_b", False)]
    assert p.selector_labels == [("ray_a_bucket", "service"), ("ray_a_bucket", "x")]
    assert p.grouping_labels == {"service", "le"}
    assert p.functions == {"histogram_quantile", "sum", "rate", "max"}


def test_dashboard_shape(dashboard: dict[str, Any]) -> None:
    assert dashboard["schemaVersion"] == 39
    assert dashboard["uid"] and dashboard["title"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("service", "model"):
        assert variables[name]["type"] == "query"
        assert variables[name]["query"]["query"].startswith("label_values(")


def test_panels_have_ids_titles_and_queries(dashboard: dict[str, Any]) -> None:
    panels = list(all_panels(dashboard))
    ids = [p.get("id") for p in panels]
    assert all(isinstance(i, int) for i in ids), ids
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {ids}"
    for panel in panels:
        assert isinstance(panel.get("title"), str) and panel["title"].strip(), panel
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
    titles = [p["title"] for p in query_panels(dashboard)]
    assert len(titles) == len(set(titles)), "duplicate panel titles"
    for panel in query_panels(dashboard):
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        targets = panel.get("targets")
        assert targets, f"{panel['title']}: no targets"
        ref_ids = [t["refId"] for t in targets]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in targets:
            assert isinstance(target.get("expr"), str) and target["expr"].strip(), panel["title"]
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]


def test_queries_use_exported_metrics_and_their_labels(dashboard: dict[str, Any]) -> None:
    series = known_series()
    problems = []
    for title, expr in exprs(dashboard):
        p = parse(expr)
        names = [name for name, _ in p.metrics]
        if not names:
            problems.append(f"{title}: no metric in {expr!r}")
        unknown_functions = p.functions - PROMQL_FUNCTIONS
        if unknown_functions:
            problems.append(f"{title}: unknown functions {unknown_functions}")
        for name, in_rate in p.metrics:
            s = series.get(name)
            if s is None:
                problems.append(f"{title}: {name} is not an exported metric")
                continue
            cumulative = s.kind in ("counter", "histogram")
            if cumulative != in_rate:
                verb = "needs" if cumulative else "must not be in"
                problems.append(f"{title}: {name} ({s.kind}) {verb} rate()/increase()")
        for name, label in p.selector_labels:
            if name in series and label not in series[name].labels:
                problems.append(f"{title}: {name} has no label {label!r}")
        for label in p.grouping_labels:
            lacking = [n for n in names if n in series and label not in series[n].labels]
            if lacking:
                problems.append(f"{title}: grouping by {label!r}, which {lacking} lack")
        quantile_ok = "le" in p.grouping_labels and all(n.endswith("_bucket") for n in names)
        if "histogram_quantile" in p.functions and not quantile_ok:
            problems.append(f"{title}: histogram_quantile needs _bucket series by le")
    assert not problems, "\n".join(problems)


def test_template_variables_use_exported_metrics(dashboard: dict[str, Any]) -> None:
    series = known_series()
    for var in dashboard["templating"]["list"]:
        if var["type"] != "query":
            continue
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        m = re.fullmatch(r"label_values\((\w+)(\{[^}]*\})?,\s*(\w+)\)", query)
        assert m, f"{var['name']}: unexpected query {query!r}"
        assert m[1] in series, f"{var['name']}: {m[1]} is not an exported metric"
        assert m[3] in series[m[1]].labels, f"{var['name']}: {m[1]} has no label {m[3]!r}"
        for _, label in parse(f"{m[1]}{m[2] or ''}").selector_labels:
            assert label in series[m[1]].labels, f"{var['name']}: {m[1]} has no {label!r}"
        assert var.get("definition", query) == query


def test_every_metric_has_a_panel(dashboard: dict[str, Any]) -> None:
    series = known_series()
    used = {
        series[name].family
        for _, expr in exprs(dashboard)
        for name, _ in parse(expr).metrics
        if name in series
    }
    ours = {s.family for m in our_metrics().values() for s in exported(m.name, m.kind, ())}
    assert not set(NO_PANEL) - ours, f"stale NO_PANEL entries: {set(NO_PANEL) - ours}"
    missing = ours - used - set(NO_PANEL)
    assert not missing, f"metrics without a panel (add one, or to NO_PANEL): {sorted(missing)}"
    serve = {s.family for n, (k, _) in SERVE_METRICS.items() for s in exported(n, k, ())}
    assert not serve - used, f"allow-listed Serve metrics no panel uses: {serve - used}"


def test_readme_lists_every_panel(dashboard: dict[str, Any]) -> None:
    readme = README.read_text()
    missing = [p["title"] for p in query_panels(dashboard) if p["title"] not in readme]
    assert not missing, f"panels missing from kuberay/grafana/README.md: {missing}"
