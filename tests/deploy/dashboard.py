"""Read the Grafana dashboard's PromQL queries, for the static and the Prometheus tests."""

import json
from dataclasses import dataclass

from tests.conftest import REPO_ROOT

DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "dashboards" / "ranker.json"


@dataclass(frozen=True)
class DashboardQuery:
    panel: str
    ref_id: str
    expr: str

    def promql(self, rate_interval: str) -> str:
        """Return the expression as Prometheus receives it: Grafana's $__rate_interval replaced."""
        return self.expr.replace("$__rate_interval", rate_interval)


def load_dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def dashboard_queries(dashboard: dict) -> list[DashboardQuery]:
    queries = []
    for panel in dashboard["panels"]:
        # A collapsed row keeps its panels inside it; an open row has none.
        for inner in [panel, *panel.get("panels", [])]:
            for target in inner.get("targets", []):
                queries.append(DashboardQuery(inner["title"], target["refId"], target["expr"]))
    return queries
