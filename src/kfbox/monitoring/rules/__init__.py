"""kfbox alerting rules (Prometheus rule-file YAML), package data."""
