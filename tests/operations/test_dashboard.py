"""deploy/grafana/zpravodaj.json: every query names a metric that /metrics serves."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "zpravodaj.json"
METRIC_NAME = re.compile(r"\bzpravodaj_[a-z0-9_]+")
SERIES_OF = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "gauge": ("",),
}


def _family(series: str) -> str:
    return re.sub(r"_(total|bucket|sum|count)$", "", series)


def served_series(client) -> set[str]:
    """Every series name /metrics can serve, from the families it describes."""
    response = client.get("/metrics")
    assert response.status_code == 200
    return {
        family.name + suffix
        for family in text_string_to_metric_families(response.get_data(as_text=True))
        for suffix in SERIES_OF[family.type]
    }


def test_every_dashboard_query_names_a_served_metric(client):
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    assert len(exprs) >= 14
    served = served_series(client)
    named = {name for expr in exprs for name in METRIC_NAME.findall(expr)}
    assert named, exprs
    assert named <= served, f"not served: {sorted(named - served)}"
    # And every metric of the service is on some panel.
    assert {_family(name) for name in served} <= {_family(name) for name in named}


def test_the_dashboard_is_importable_grafana_json():
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["uid"] == "zpravodaj"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}"
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"])
