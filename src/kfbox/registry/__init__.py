"""kfbox registry subsystem."""
