"""kfbox's load generator (``kfbox loadtest``): client code, so it lives outside serving."""
