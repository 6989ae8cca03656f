"""kfbox ui subsystem."""
