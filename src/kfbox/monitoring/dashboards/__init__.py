"""kfbox Grafana dashboards (JSON), package data; see kfbox.monitoring.grafana."""
